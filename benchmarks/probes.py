"""What the benchmark measures besides SIP: CPU and memory from /proc, the app's event-loop
lag from its /metrics, and the statements the app sends to PostgreSQL.

Every probe reads a counter before and after a load segment; the difference is what the
segment cost. Nothing here needs the processes' cooperation except /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from ari_app.services import routing

log = logging.getLogger(__name__)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.5  # RSS polls (/proc, costs the app nothing)
# After Asterisk's last channel of a segment: a call's end may wait routing.CARRY_S for
# the app's next start or end to carry it, and is written on its own after that. The
# segment's costs are read once these have landed, not in the next segment's window.
# (Waited, not polled: a poll of the app's database would be counted as its statements.)
ENDS_SETTLE_S = routing.CARRY_S + 0.5


async def drained(channels: Callable[[], Awaitable[int]], timeout: float = 20.0) -> bool:
    """Until `channels()` (Asterisk's channels, counted by ARI) is 0 and the app's last
    ends are stored (ENDS_SETTLE_S later); False when channels were left at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await channels() == 0:
            await asyncio.sleep(ENDS_SETTLE_S)
            return True
        await asyncio.sleep(0.1)
    return False


# /metrics scrapes: the app's lag peak gauge covers its last 10 s (web/metrics.py
# LAG_WINDOW_S), so a scrape every 2 s sees every peak. A scrape costs the app a DB read of
# its stats (15 to 25 ms with a benchmark's calls table): scraping every 0.5 s made a
# quarter of the app's CPU in a segment the benchmark's own, and the idle baseline that
# nets it out noisy.
SCRAPE_S = 2.0
_LAG = re.compile(r"^hotline_event_loop_lag_max_seconds\s+([0-9.eE+-]+)\s*$", re.M)


# ---- /proc ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the command name may contain spaces


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU of a process (all its threads); with the children it has reaped."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (PostgreSQL: postmaster and its backends);
    children that exited are in the parent's cutime/cstime."""
    total = 0.0
    with contextlib.suppress(OSError):
        total = cpu_seconds(pid, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue
        if fields[1] == str(pid):  # ppid
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / (
                CLK_TCK
            )
    return total


def loadavg_1m() -> float:
    """The machine's 1-minute load average (other work on the machine shows here)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def reaped_children_cpu() -> float:
    """CPU of this process's children that have exited (the sipp processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """A line of /proc/<pid>/status in kB (VmRSS now, VmHWM peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (Linux >= 4.0, needs the right to write clear_refs); False if not."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---- the app's /metrics ------------------------------------------------------------------


def parse_loop_lag(text: str) -> float | None:
    match = _LAG.search(text)
    return float(match.group(1)) if match else None


_ARI_REQUESTS = re.compile(r"^hotline_ari_requests_total\s+([0-9.eE+-]+)\s*$", re.M)


async def ari_requests(metrics_urls: Sequence[str]) -> int:
    """ARI requests the app's processes sent since they started (their /metrics counter)."""
    total = 0
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for url in metrics_urls:
            try:
                async with http.get(url) as resp:
                    match = _ARI_REQUESTS.search(await resp.text())
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("metrics scrape failed: %s", exc)
                continue
            if match:
                total += int(float(match.group(1)))
    return total


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (the workers of `hotline serve --workers N`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue
        if fields[1] == str(pid):
            found.append(int(entry.name))
    return sorted(found)


class Background:
    """A probe that samples in a task of its own while its `async with` block runs;
    subclasses implement `_run()` (a loop until cancelled)."""

    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class Sampler(Background):
    """While running: polls the RSS of the app's processes (the largest one: RSS per
    worker) every SAMPLE_S and their event-loop lag peak gauges every SCRAPE_S (and once
    more at the end), and keeps the maxima. Scraping /metrics costs the app a DB read; the
    idle baseline that is subtracted from every segment scrapes at the same pace."""

    def __init__(self, app_pids: Sequence[int], metrics_urls: Sequence[str]) -> None:
        self.app_pids = list(app_pids)
        self.metrics_urls = list(metrics_urls)
        self.max_rss_kb = 0
        self.max_lag_s = 0.0
        self.scrapes = 0
        self.scrape_errors = 0

    async def _run(self) -> None:
        scraped = 0.0
        while True:
            started = time.monotonic()
            for pid in self.app_pids:
                with contextlib.suppress(OSError, KeyError):
                    self.max_rss_kb = max(self.max_rss_kb, memory_kb(pid))
            if started - scraped >= SCRAPE_S:
                scraped = started
                await self._scrape()
            await asyncio.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started)))

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        await self._scrape()  # the peaks of the seconds since the last scrape

    async def _scrape(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for url in self.metrics_urls:
                try:
                    async with http.get(url) as resp:
                        lag = parse_loop_lag(await resp.text())
                    self.scrapes += 1
                    if lag is not None:
                        self.max_lag_s = max(self.max_lag_s, lag)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.scrape_errors += 1
                    log.debug("metrics scrape failed: %s", exc)


class Profiler:
    """py-spy sampling the app while in use (collapsed stacks, for flame graphs or
    `python -m benchmarks.profile`). py-spy is not a dependency: install it into the venv
    to use --profile. Profiled segments cost more than measured ones: not for figures."""

    def __init__(self, pid: int, out: Path, *, enabled: bool = True) -> None:
        self.pid = pid
        self.out = out
        self.enabled = enabled
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profiler:
        if not self.enabled:
            return self
        binary = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if binary is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            binary, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "200",
            "--nonblocking", "--subprocesses", "--output", str(self.out),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# ---- PostgreSQL --------------------------------------------------------------------------


@dataclass(frozen=True)
class DbCount:
    # Every statement incl. BEGIN/COMMIT/ROLLBACK, one round trip each. Not counted: the
    # empty query `;` of SQLAlchemy's pre-ping (pg_stat_statements ignores it), one per
    # connection checkout, between a BEGIN and a ROLLBACK that are counted.
    statements: int
    # Committed and rolled back transactions of the database (pg_stat_database), explicit
    # ones and the implicit transaction of a statement sent outside BEGIN ... COMMIT alike.
    # A busy backend reports them at most once a second: the figure of a segment may be
    # off by about a second of traffic.
    transactions: int
    # Of `statements`: the phones' presence writes of their own (the hotline_device_*
    # functions, ari_app/device_presence.py), driven by device states, at most 4 a second
    # per PBX; under load the app's calls' starts and ends carry the changes instead
    # (counted there, in `call_statements`).
    device_statements: int = 0
    # Of `statements`: the call path's (services/routing.py's SQL functions: a call's
    # start, a waiting caller's reservation, a connection, an end), each sent on its own
    # and so its own transaction; only calls cause them (nothing idle to subtract).
    call_statements: int = 0


# The call path's SQL functions (services/routing.py), as its statements call them.
_CALL_PATH = r"(FROM|SELECT) hotline_(start|enqueue|reserve|connect|finish)"
_COUNT_SQL = """
SELECT coalesce(sum(s.calls), 0)::bigint,
       (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1),
       coalesce(sum(s.calls) FILTER (WHERE s.query LIKE '%hotline_device_%'), 0)::bigint,
       coalesce(sum(s.calls) FILTER (WHERE s.query ~ $2), 0)::bigint
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = $1
"""


class DbCounter:
    """Statement counts of one database from pg_stat_statements (updated as statements
    finish, unlike pg_stat_database which a backend may flush seconds later). Reads from
    the `postgres` database, so its own queries are not counted."""

    def __init__(self, admin_dsn: str, dbname: str) -> None:
        self.admin_dsn = admin_dsn
        self.dbname = dbname
        self._conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self._conn = await asyncpg.connect(self.admin_dsn)
        await self._conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def read(self) -> DbCount:
        assert self._conn is not None, "open() first"
        row = await self._conn.fetchrow(_COUNT_SQL, self.dbname, _CALL_PATH)
        assert row is not None
        return DbCount(
            statements=int(row[0]),
            transactions=int(row[1]),
            device_statements=int(row[2]),
            call_statements=int(row[3]),
        )
