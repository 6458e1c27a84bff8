"""The system under test: a private PostgreSQL, a private Asterisk with agent endpoints and
app_queue queues, the app's database seeded with the equivalent hotlines, and the real
`hotline serve` as a process of its own (so its CPU and memory are its own).

Both sides are reached from the trunk the same way, differ only in the number dialled:

- A (the app): number ``5xx`` -> ``[hotline-inbound]`` -> ``Stasis(hotline,inbound,5xx)``;
  the app answers, starts music on hold and originates to the agent it reserved.
- B (app_queue): number ``6xx`` -> ``Answer()`` then ``Queue(bench-xx)`` with the same
  members, the equivalent strategy, ring timeout 15 s, no wrap-up, no announcements.

Every agent endpoint's contact is one sipp UAS (one address and port): one process
answers every agent call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ari_app.db import migrate
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.services import admin, agents
from benchmarks import probes
from devenv.asterisk import Phone, PrivateAsterisk
from devenv.ports import free_port, free_port_on_all, free_port_range
from devenv.postgres import PrivatePostgres
from devenv.procs import terminate

log = logging.getLogger(__name__)

AGENT_ADDRESS = "127.0.0.60"
TRUNK_IN_ADDRESS = "127.0.0.50"
DBNAME = "hotline"
HOTLINE_CLI = str(Path(sys.executable).with_name("hotline"))
RING_TIMEOUT_S = 15
RETRY_S = 1  # app_queue's `retry` cannot be 0; the hotline gets the same
# app strategy -> app_queue strategy
QUEUE_STRATEGY = {"longest_idle": "leastrecent", "ring_all": "ringall"}
# Asterisk's `full` log without verbose lines: the same (small) cost on both sides.
LOGGER_CONF = """[general]
dateformat = %F %T.%3q
[logfiles]
full => notice,warning,error
console => error
"""


@dataclass(frozen=True)
class Line:
    """One pair of equivalent targets: hotline `a_number` and queue `queue` on `b_number`,
    both with the first `agents` agents."""

    key: str
    a_number: str
    b_number: str
    agents: int

    @property
    def queue(self) -> str:
        return f"bench-{self.key}"


def agent_ext(index: int) -> str:
    return str(8001 + index)


def queues_conf(lines: Sequence[Line], strategy: str) -> str:
    out = ["[general]", "autofill = yes", "shared_lastcall = yes", ""]
    for line in lines:
        out += [
            f"[{line.queue}]",
            f"strategy = {QUEUE_STRATEGY[strategy]}",
            f"timeout = {RING_TIMEOUT_S}",
            f"retry = {RETRY_S}",
            "wrapuptime = 0",
            "ringinuse = no",
            "autopause = no",
            "maxlen = 0",
            "joinempty = yes",
            "leavewhenempty = no",
            "musicclass = default",
            "announce-frequency = 0",
            "periodic-announce-frequency = 0",
            "announce-holdtime = no",
            "announce-position = no",
            "reportholdtime = no",
            "memberdelay = 0",
            *(f"member => PJSIP/{agent_ext(i)}" for i in range(line.agents)),
            "",
        ]
    return "\n".join(out)


def extensions_conf(lines: Sequence[Line]) -> str:
    # Merged into the trunk's context (pbx_config adds to a context of the same name);
    # an exact number wins over [hotline-inbound]'s _X. pattern.
    out = ["[hotline-pstn-in]"]
    for line in lines:
        out += [
            f"exten => {line.b_number},1,Answer()",
            f" same => n,Queue({line.queue},,,,)",
            " same => n,Hangup()",
        ]
    return "\n".join(out) + "\n"


async def seed(url: str, lines: Sequence[Line], strategy: str) -> None:
    """Hotlines equivalent to the queues, agents on PJSIP/80xx, all logged in."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            hotlines = [
                await admin.create_hotline(
                    session,
                    line.a_number,
                    f"Bench {line.key}",
                    strategy=strategy,
                    ring_timeout_s=RING_TIMEOUT_S,
                    retry_delay_s=RETRY_S,
                    wrapup_s=0,
                    max_wait_s=600,
                    max_queue_len=10000,
                    announce_frequency_s=0,
                    no_answer_limit=0,
                    caller_id_to_agent="caller",
                )
                for line in lines
            ]
            for index in range(max(line.agents for line in lines)):
                agent = await admin.create_agent(
                    session,
                    str(3001 + index),
                    f"Agent {index + 1}",
                    device=f"PJSIP/{agent_ext(index)}",
                )
                for line, hotline in zip(lines, hotlines, strict=True):
                    if index < line.agents:
                        await admin.add_member(session, hotline, agent)
                await agents.login(session, agent, target=None, path="cli", actor="bench")
    finally:
        await engine.dispose()


class ServeProcess:
    """`hotline serve` as a child process; its log goes to `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                HOTLINE_CLI,
                "serve",
                "--grace",
                "5",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, offset: int = 0) -> str:
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    async def stop(self, timeout: float = 15.0) -> None:
        await terminate(self.proc, timeout)


class World:
    """Postgres + Asterisk + hotline serve for one benchmark run, under `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        lines: Sequence[Line],
        strategy: str,
        *,
        app_log_level: str = "INFO",
        app_path: Path | None = None,
        workers: int = 1,
    ) -> None:
        self.run_dir = run_dir
        self.workers = workers
        self.app_log_level = app_log_level
        # A folder holding a patched copy of `ari_app` to measure a proposed change with;
        # it goes first on the serve process's PYTHONPATH.
        self.app_path = app_path
        self.lines = tuple(lines)
        self.strategy = strategy
        self.agent_count = max(line.agents for line in lines)
        # Every segment starts the agents' sipp again on this port, which Asterisk knows
        # as the phones' contact: it comes from below the kernel's ephemeral range, so no
        # socket the kernel numbers itself (a resolver's, a sipp's) takes it in between.
        self.agent_port = free_port_on_all((AGENT_ADDRESS,), "udp")
        phones = [
            Phone(ext=agent_ext(i), address=AGENT_ADDRESS, port=self.agent_port, name=f"Agent {i}")
            for i in range(self.agent_count)
        ]
        self.pg = PrivatePostgres(
            run_dir / "postgres",
            settings={"shared_preload_libraries": "pg_stat_statements", "max_connections": "100"},
        )
        self.pbx = PrivateAsterisk(
            run_dir / "asterisk",
            phones=phones,
            trunk_in_address=TRUNK_IN_ADDRESS,
            rtp_ports=free_port_range(4000, avoid=[self.agent_port]),
            extra_configs={
                "queues.conf": queues_conf(self.lines, strategy),
                "extensions_extra.conf": extensions_conf(self.lines),
                "logger.conf": LOGGER_CONF,
            },
        )
        # Worker k of `hotline serve --workers N` listens on the panel port + k.
        self.panel_port = free_port("127.0.0.1", "tcp")
        self.serve: ServeProcess | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.panel_port}/metrics"

    @property
    def metrics_urls(self) -> list[str]:
        """Every worker's /metrics."""
        return [f"http://127.0.0.1:{self.panel_port + k}/metrics" for k in range(self.workers)]

    @property
    def app_pids(self) -> list[int]:
        """The processes that serve calls: `hotline serve` itself, or its workers."""
        if self.workers == 1:
            return [self.app_pid]
        return probes.children(self.app_pid) or [self.app_pid]

    @property
    def database_url(self) -> str:
        return self.pg.url(DBNAME)

    @property
    def app_pid(self) -> int:
        assert self.serve is not None
        return self.serve.pid

    @property
    def asterisk_pid(self) -> int:
        pid = self.pbx.pid
        assert pid is not None, "Asterisk is not running"
        return pid

    @property
    def postgres_pid(self) -> int:
        pid = self.pg.pid
        assert pid is not None, "PostgreSQL is not running"
        return pid

    async def start(self) -> None:
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.pg.drop_database, DBNAME)
        await asyncio.to_thread(self.pg.create_database, DBNAME)
        await asyncio.to_thread(migrate.upgrade, self.database_url)
        await seed(self.database_url, self.lines, self.strategy)
        await self.pbx.start()
        await self._check_dialplan()
        env = {
            **os.environ,
            **self.pbx.env(),
            "HOTLINE_DATABASE_URL": self.database_url,
            "HOTLINE_PANEL_LISTEN": f"127.0.0.1:{self.panel_port}",
            "HOTLINE_LOG_LEVEL": self.app_log_level,
            "HOTLINE_WORKERS": str(self.workers),
        }
        if self.app_path is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.app_path), os.environ.get("PYTHONPATH", "")) if p
            )
        self.serve = ServeProcess(env, self.run_dir / "serve.log")
        await self.serve.start()
        await self._wait_app_ready()

    async def _check_dialplan(self) -> None:
        for line in self.lines:
            shown = await self.pbx.rx(f"dialplan show {line.b_number}@hotline-pstn-in")
            if "Queue(" not in shown:
                raise RuntimeError(f"queue number {line.b_number} not in the dialplan: {shown}")
        queues = await self.pbx.rx("queue show")
        missing = [line.queue for line in self.lines if line.queue not in queues]
        if missing:
            raise RuntimeError(f"app_queue did not load queues {missing}: {queues[:500]}")

    async def _wait_app_ready(self, timeout: float = 30.0) -> None:
        """Until the app's Stasis app is registered and its /metrics answers."""
        assert self.serve is not None
        deadline = time.monotonic() + timeout
        app_url = f"{self.pbx.ari_url}/ari/applications/{self.pbx.app_name}"
        async with aiohttp.ClientSession(headers=self.pbx.ari_headers()) as http:
            while time.monotonic() < deadline:
                if self.serve.exited():
                    raise RuntimeError(f"hotline serve exited:\n{self.serve.log_text()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(app_url) as resp:
                        registered = resp.status == 200
                    async with http.get(self.metrics_url) as resp:
                        if registered and resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"hotline serve not ready in {timeout:.0f}s")

    async def channel_count(self) -> int:
        async with (
            aiohttp.ClientSession(headers=self.pbx.ari_headers()) as http,
            http.get(f"{self.pbx.ari_url}/ari/channels") as resp,
        ):
            return len(await resp.json())

    async def wait_idle(self, timeout: float = 20.0) -> bool:
        """Until Asterisk has no channel left (the segment's calls are all over) and the
        app's last ends are stored."""
        return await probes.drained(self.channel_count, timeout)

    async def stop(self) -> None:
        if self.serve is not None:
            with contextlib.suppress(Exception):
                await self.serve.stop()
        with contextlib.suppress(Exception):
            await self.pbx.stop()
        await asyncio.to_thread(self.pg.stop)
