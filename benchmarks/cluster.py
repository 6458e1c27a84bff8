"""Cluster benchmark (issue 12): what each component of the cluster costs per routed call,
the highest zero-failure rate of the cluster, and what N nodes would carry.

    .venv/bin/python -m benchmarks.cluster            # or `make bench BENCH_ARGS=--cluster`
    .venv/bin/python -m benchmarks.cluster --smoke    # a few calls, to see it works

Starts the topology of `make run-cluster` (devenv/cluster.py: Kamailio's dispatcher, two
Asterisk nodes with a `hotline serve` each, one PostgreSQL, here with pg_stat_statements)
with every agent on one sipp UAS, and sends sipp callers to Kamailio:

1. idle: what the cluster costs doing nothing (subtracted from every figure);
2. fixed rate: R calls/s for D seconds; per routed call, the CPU of Kamailio, of each
   Asterisk and each app (all its processes), of PostgreSQL (postmaster and backends) and
   the database's statements and transactions (pg_stat_statements, pg_stat_database);
3. step mode: rates from --step-rates until the first rate whose every attempt had a
   failed call; the highest rate without a failure is the cluster's figure.

A call fails as in benchmarks/run.py (benchmarks/load.py classify): no 200 OK, no agent
offered the call within the establishment threshold, or no hang-up from the agent.
From the per-call costs, `project` computes the capacity of N nodes: a node carries
cores / (its Asterisk's + its app's CPU per call) calls/s; Kamailio and PostgreSQL are
shared, each given one core, so they cap the cluster at the rate that saturates it. A full
run writes the cluster section of benchmarks/RESULTS.md (the rest of the file is
benchmarks/run.py's and stays as it is).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import update

from ari_app.db.models import Hotline, Strategy
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.services.demo import DEMO_HOTLINE
from benchmarks import probes
from benchmarks.load import Callers, CallRecord, agent_invites, agents_uas, classify, summary_ms
from benchmarks.run import RESULTS_DIR, RESULTS_MD, _machine, until_sigterm
from benchmarks.world import RETRY_S, RING_TIMEOUT_S, TRUNK_IN_ADDRESS
from devenv.asterisk import Phone
from devenv.cluster import Cluster
from devenv.ports import free_port_on_all
from devenv.postgres import PrivatePostgres

log = logging.getLogger("benchmarks.cluster")

# Every agent's phone is one sipp UAS here (not 127.0.0.60: that is Kamailio's address).
AGENT_ADDRESS = "127.0.0.61"
DBNAME = "hotline"
ANSWER_TIMEOUT_S = 10.0
CONNECT_BUDGET_S = 30.0  # a caller waits this long for the agent's hang-up, plus ring + hold
# RESULTS.md: benchmarks/run.py writes everything above this line, this module below it.
SECTION_MARKER = "<!-- cluster section: written by benchmarks/cluster.py -->"
# Kamailio's log line per routed call (devenv/kamailio.py: xlog "call $ci to $du").
_ROUTED = re.compile(r"call \S+ to sip:([0-9.]+:[0-9]+)")
SMOKE = {
    "rate": 2.0,
    "duration": 5.0,
    "agents": 8,
    "step_rates": "2,4",
    "step_duration": 3.0,
    "step_retries": 0,
    "idle": 2.0,
    "warmup": 0.0,
}


# ---- projection (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class PerCallCosts:
    """Measured CPU per routed call (ms), and the background load each node adds to
    PostgreSQL while idle (ms of CPU per second per node: presence resyncs, heartbeats)."""

    asterisk_ms: float  # the Asterisk that carries the call
    app_ms: float  # that node's app (all its processes)
    postgres_ms: float
    kamailio_ms: float
    postgres_idle_ms_per_s_per_node: float = 0.0
    node_idle_ms_per_s: float = 0.0  # a node's Asterisk and app with no calls
    # Execution time per call of the statements that hold the hotline's advisory lock
    # (hotline_enqueue, hotline_reserve), measured at a low rate: how long the lock is held.
    hotline_lock_ms: float = 0.0


@dataclass(frozen=True)
class ProjectionRow:
    nodes: int
    node_cps: float  # N x what one node's cores carry
    postgres_cps: float  # what one PostgreSQL core carries with N nodes' background load
    kamailio_cps: float
    cluster_cps: float  # the smallest of the three
    limit: str  # "nodes", "PostgreSQL" or "Kamailio"


@dataclass(frozen=True)
class Projection:
    per_node_cps: float
    postgres_core_cps: float  # PostgreSQL's one core with one node's background load
    kamailio_core_cps: float
    rows: list[ProjectionRow]
    first_shared: str  # the shared component that saturates first as nodes are added
    saturates_at: int | None  # the smallest N whose nodes would outrun it (None: never)
    # One hotline's ceiling whatever the nodes: its calls take its advisory lock one at a
    # time (cluster-wide); separate hotlines have separate locks. Not in `rows`.
    hotline_lock_cps: float = math.inf


def project(
    costs: PerCallCosts,
    nodes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    *,
    node_cores: float = 2.0,
    postgres_cores: float = 1.0,
    kamailio_cores: float = 1.0,
    max_nodes: int = 1000,
) -> Projection:
    """Capacity of N nodes from per-call CPU costs, every core at 100 %: a node carries
    (node_cores less its idle load) / (Asterisk + app per call) calls/s; the shared
    components cap the cluster at the rate that saturates their cores (PostgreSQL's share
    shrinks by each node's idle load). `saturates_at`: the first N at which N nodes would
    carry more than a shared component can. CPU only: locks, network and disks are not in it."""
    per_node_ms = costs.asterisk_ms + costs.app_ms
    node_left = max(0.0, node_cores * 1000 - costs.node_idle_ms_per_s)
    per_node = node_left / per_node_ms if per_node_ms > 0 else math.inf

    def postgres(n: int) -> float:
        if costs.postgres_ms <= 0:
            return math.inf
        left = postgres_cores * 1000 - n * costs.postgres_idle_ms_per_s_per_node
        return max(0.0, left) / costs.postgres_ms

    kamailio = kamailio_cores * 1000 / costs.kamailio_ms if costs.kamailio_ms > 0 else math.inf
    rows = []
    for n in nodes:
        shares = {"nodes": n * per_node, "PostgreSQL": postgres(n), "Kamailio": kamailio}
        limit = min(shares, key=lambda k: shares[k])
        rows.append(
            ProjectionRow(n, shares["nodes"], shares["PostgreSQL"], kamailio, shares[limit], limit)
        )
    first: tuple[int, str] | None = None
    for name, cap in (("PostgreSQL", postgres), ("Kamailio", lambda n: kamailio)):
        at = next((n for n in range(1, max_nodes + 1) if n * per_node > cap(n)), None)
        if at is not None and (first is None or at < first[0]):
            first = (at, name)
    return Projection(
        per_node_cps=per_node,
        postgres_core_cps=postgres(1),
        kamailio_core_cps=kamailio,
        rows=rows,
        first_shared=first[1] if first else "none",
        saturates_at=first[0] if first else None,
        hotline_lock_cps=1000 / costs.hotline_lock_ms if costs.hotline_lock_ms > 0 else math.inf,
    )


def splice_section(text: str, section: str) -> str:
    """RESULTS.md with its cluster section (from SECTION_MARKER to the end) replaced."""
    head = text.split(SECTION_MARKER, 1)[0].rstrip("\n")
    return (head + "\n\n" if head else "") + SECTION_MARKER + "\n" + section.rstrip("\n") + "\n"


def kept_section(path: Path) -> str:
    """The cluster section of RESULTS.md as it is (benchmarks/run.py keeps it), or ""."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text()
        if SECTION_MARKER in text:
            return "\n" + SECTION_MARKER + text.split(SECTION_MARKER, 1)[1]
    return ""


# ---- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    at: float
    kamailio_cpu: float
    asterisk_cpu: tuple[float, ...]  # per node
    app_cpu: tuple[float, ...]
    postgres_cpu: float
    db: probes.DbCount
    ari_requests: tuple[int, ...]


@dataclass(frozen=True)
class Costs:
    window_s: float
    kamailio_cpu_s: float
    asterisk_cpu_s: tuple[float, ...]
    app_cpu_s: tuple[float, ...]
    postgres_cpu_s: float
    db_statements: int
    db_transactions: int
    ari_requests: tuple[int, ...]

    @staticmethod
    def between(a: Snapshot, b: Snapshot) -> Costs:
        return Costs(
            window_s=b.at - a.at,
            kamailio_cpu_s=b.kamailio_cpu - a.kamailio_cpu,
            asterisk_cpu_s=tuple(
                y - x for x, y in zip(a.asterisk_cpu, b.asterisk_cpu, strict=True)
            ),
            app_cpu_s=tuple(y - x for x, y in zip(a.app_cpu, b.app_cpu, strict=True)),
            postgres_cpu_s=b.postgres_cpu - a.postgres_cpu,
            db_statements=b.db.statements - a.db.statements,
            db_transactions=b.db.transactions - a.db.transactions,
            ari_requests=tuple(y - x for x, y in zip(a.ari_requests, b.ari_requests, strict=True)),
        )


_STATEMENTS_SQL = """
SELECT s.queryid, s.calls, s.total_exec_time, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90)
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = $1
"""


class ClusterMeter:
    def __init__(self, cl: Cluster, db: probes.DbCounter, admin_dsn: str) -> None:
        self.cl = cl
        self.db = db
        self.admin_dsn = admin_dsn

    async def statements(self) -> dict[int, tuple[int, float, str]]:
        """queryid -> (calls, total execution ms, query) from pg_stat_statements, read from
        the `postgres` database (not counted in the measured one)."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await conn.fetch(_STATEMENTS_SQL, DBNAME)
        finally:
            await conn.close()
        return {int(r[0]): (int(r[1]), float(r[2]), str(r[3])) for r in rows if r[0] is not None}

    async def snapshot(self) -> Snapshot:
        cl = self.cl
        assert cl.kamailio.pid is not None, "Kamailio is not running"
        pbx_pids = [p.pid for p in cl.pbxs]
        app_pids = [a.proc.pid if a.proc else None for a in cl.apps]
        assert all(pbx_pids) and all(app_pids), "a node is not running"
        ari = []
        for app in cl.apps:
            ari.append(await probes.ari_requests([f"{app.panel_url}/metrics"]))
        return Snapshot(
            at=time.monotonic(),
            kamailio_cpu=probes.tree_cpu_seconds(cl.kamailio.pid),  # its forked workers
            asterisk_cpu=tuple(probes.cpu_seconds(p) for p in pbx_pids if p),
            app_cpu=tuple(probes.tree_cpu_seconds(p) for p in app_pids if p),  # all workers
            postgres_cpu=probes.tree_cpu_seconds(self._postgres_pid()),
            db=await self.db.read(),
            ari_requests=tuple(ari),
        )

    def _postgres_pid(self) -> int:
        pg = self.cl.postgres
        assert pg is not None and pg.pid is not None
        return pg.pid


_ACTIVITY_SQL = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU')
FROM pg_stat_activity WHERE datname = $1 AND state = 'active'
"""


class ActivitySampler(probes.Background):
    """While running: what the measured database's active backends are doing, sampled
    every `interval` s from pg_stat_activity (running on a CPU, or waiting: for a lock
    such as Lock:advisory, for I/O, ...); `mean()` is the average number of backends per
    kind. Tells lock waits from CPU starvation when a step fails."""

    def __init__(self, admin_dsn: str, interval: float = 0.1) -> None:
        self.admin_dsn = admin_dsn
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.samples = 0

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            while True:
                for row in await conn.fetch(_ACTIVITY_SQL, DBNAME):
                    self.counts[str(row[0])] += 1
                self.samples += 1
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()

    def mean(self) -> dict[str, float]:
        n = max(1, self.samples)
        return {kind: round(c / n, 2) for kind, c in self.counts.most_common(4)}


LOCK_HOLDERS = ("hotline_enqueue(", "hotline_reserve(")  # the SQL functions that take it


def lock_ms_per_call(
    before: dict[int, tuple[int, float, str]], after: dict[int, tuple[int, float, str]], calls: int
) -> float:
    """Execution ms per call of the statements that hold a hotline's advisory lock."""
    total = 0.0
    for qid, (_, ms, query) in after.items():
        if any(name in query for name in LOCK_HOLDERS):
            total += ms - before.get(qid, (0, 0.0, query))[1]
    return total / max(1, calls)


def top_statements(
    before: dict[int, tuple[int, float, str]],
    after: dict[int, tuple[int, float, str]],
    calls: int,
    n: int = 4,
) -> list[dict[str, Any]]:
    """The `n` statements that took PostgreSQL the most execution time between two reads,
    per routed call (where a slow segment's database time went)."""
    rows = []
    for qid, (count, total, query) in after.items():
        c0, t0, _ = before.get(qid, (0, 0.0, query))
        if count > c0:
            rows.append((total - t0, count - c0, query))
    rows.sort(reverse=True)
    per = max(1, calls)
    return [
        {"query": q, "per_call": round(c / per, 2), "ms_per_call": round(t / per, 3)}
        for t, c, q in rows[:n]
    ]


@dataclass
class ClusterSegment:
    phase: str
    rate: float
    duration: float
    planned: int
    records: list[CallRecord]
    costs: Costs
    routed: dict[str, int]  # calls Kamailio sent to each node (by node name)
    db_top: list[dict[str, Any]]  # top statements by execution time (top_statements)
    db_lock_ms: float  # lock_ms_per_call
    db_activity: dict[str, float]  # ActivitySampler.mean
    sipp_rc: int = 0
    drained: bool = True
    loadavg: float = 0.0
    attempt: int = 1

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.records)

    @property
    def passed(self) -> bool:
        return not self.failed and len(self.records) == self.planned


class ClusterBench:
    def __init__(self, args: argparse.Namespace, cl: Cluster, meter: ClusterMeter) -> None:
        self.args = args
        self.cl = cl
        self.meter = meter
        self.agent_port = cl.phones[0].port
        self.sipp_dir = args.out / "sipp"
        self.seq = 0
        self.segments: list[ClusterSegment] = []

    def _routed_since(self, offset: int) -> dict[str, int]:
        text = self.cl.kamailio.output()[offset:]
        by_address = Counter(_ROUTED.findall(text))
        return {
            app.name: by_address.get(f"{app.pbx.sip_address[0]}:{app.pbx.sip_address[1]}", 0)
            for app in self.cl.apps
        }

    async def _channels(self) -> int:
        total = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for pbx in self.cl.pbxs:
                async with http.get(
                    f"{pbx.ari_url}/ari/channels", headers=pbx.ari_headers()
                ) as resp:
                    total += len(await resp.json())
        return total

    async def wait_idle(self, timeout: float = 20.0) -> bool:
        """Until no Asterisk has a channel left and the apps' last ends are stored."""
        return await probes.drained(self._channels, timeout)

    async def idle(self, seconds: float) -> Costs:
        """What the cluster costs doing nothing (unlike benchmarks/run.py, nothing polls the
        apps' /metrics meanwhile: an app's /metrics reads the database, and the idle load
        each node puts on PostgreSQL goes into the projection)."""
        before = await self.meter.snapshot()
        async with ActivitySampler(self.meter.admin_dsn):  # as in every segment
            await asyncio.sleep(seconds)
        return Costs.between(before, await self.meter.snapshot())

    async def segment(
        self, phase: str, rate: float, duration: float, *, attempt: int = 1
    ) -> ClusterSegment:
        a = self.args
        self.seq += 1
        name = f"{self.seq:02d}-{phase}-{rate:g}cps"
        folder = self.sipp_dir / name
        count = max(1, round(rate * duration))
        log.info("segment %s: %d calls at %g/s through Kamailio", name, count, rate)
        uas = agents_uas(
            folder, AGENT_ADDRESS, self.agent_port, ring=a.ring, hold=a.hold, audio=a.audio
        )
        callers = Callers(
            folder,
            "callers",
            number=DEMO_HOTLINE,
            prefix=f"7{self.seq:03d}",
            rate=rate,
            count=count,
            local_addr=TRUNK_IN_ADDRESS,
            pbx_addr=self.cl.kamailio.sip_address,
            answer_timeout=ANSWER_TIMEOUT_S,
            bye_timeout=CONNECT_BUDGET_S + a.ring + a.hold,
            audio=a.audio,
        )
        await uas.start()
        try:
            offset = len(self.cl.kamailio.output())
            statements = await self.meter.statements()
            before = await self.meter.snapshot()
            async with ActivitySampler(self.meter.admin_dsn) as activity:
                await callers.start()
                try:
                    rc = await callers.wait()
                finally:
                    await callers.stop()
                drained = await self.wait_idle()
        finally:
            await uas.stop()
        after = await self.meter.snapshot()
        records = classify(callers.messages(), agent_invites(uas.messages()), a.threshold)
        statements_after = await self.meter.statements()
        db_top = top_statements(statements, statements_after, len(records))
        lock_ms = lock_ms_per_call(statements, statements_after, len(records))
        seg = ClusterSegment(
            phase=phase,
            rate=rate,
            duration=duration,
            planned=count,
            records=records,
            costs=Costs.between(before, after),
            routed=self._routed_since(offset),
            db_top=db_top,
            db_lock_ms=lock_ms,
            db_activity=activity.mean(),
            sipp_rc=rc,
            drained=drained,
            loadavg=probes.loadavg_1m(),
            attempt=attempt,
        )
        log.info(
            "segment %s: %d/%d ok, routed %s, load %.2f",
            name, len(records) - seg.failed, len(records), seg.routed, seg.loadavg,
        )  # fmt: skip
        self.segments.append(seg)
        return seg

    async def step(self) -> list[ClusterSegment]:
        a = self.args
        out: list[ClusterSegment] = []
        for rate in a.step_rates:
            for attempt in range(1, a.step_retries + 2):
                seg = await self.segment("step", rate, a.step_duration, attempt=attempt)
                out.append(seg)
                if seg.passed:
                    break
                log.info("step: failed at %g calls/s (attempt %d)", rate, attempt)
            else:
                break
        return out


# ---- figures ------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _net(total: float, idle_total: float, idle_window: float, window: float) -> float:
    """`total` minus what the same window costs idle (never below zero)."""
    rate = idle_total / idle_window if idle_window > 0 else 0.0
    return max(0.0, total - rate * window)


def figures(
    segments: Sequence[ClusterSegment], idle: Costs, names: Sequence[str]
) -> dict[str, Any]:
    """Per routed call (successful calls), net of the idle baseline: CPU per component,
    DB statements and transactions, ARI requests; and the calls each node carried."""
    records = [r for s in segments for r in s.records]
    ok = sum(r.ok for r in records)
    window = sum(s.costs.window_s for s in segments)
    iw = idle.window_s

    def per_call_ms(total: float, idle_total: float) -> float | None:
        return _r(_net(total, idle_total, iw, window) / ok * 1000) if ok else None

    routed = {n: sum(s.routed.get(n, 0) for s in segments) for n in names}
    nodes: dict[str, Any] = {}
    for i, name in enumerate(names):
        ast = sum(s.costs.asterisk_cpu_s[i] for s in segments)
        app = sum(s.costs.app_cpu_s[i] for s in segments)
        ari = sum(s.costs.ari_requests[i] for s in segments)
        carried = routed[name]
        nodes[name] = {
            "calls_routed": carried,
            # per routed call of the whole cluster (what the node adds to every call) ...
            "asterisk_cpu_ms_per_call": per_call_ms(ast, idle.asterisk_cpu_s[i]),
            "app_cpu_ms_per_call": per_call_ms(app, idle.app_cpu_s[i]),
            # ... and per call the node carried itself
            "asterisk_cpu_ms_per_own_call": _r(
                _net(ast, idle.asterisk_cpu_s[i], iw, window) / carried * 1000
            )
            if carried
            else None,
            "app_cpu_ms_per_own_call": _r(_net(app, idle.app_cpu_s[i], iw, window) / carried * 1000)
            if carried
            else None,
            "ari_requests_per_own_call": _r(_net(ari, idle.ari_requests[i], iw, window) / carried)
            if carried
            else None,
        }
    ast_all = sum(sum(s.costs.asterisk_cpu_s) for s in segments)
    app_all = sum(sum(s.costs.app_cpu_s) for s in segments)
    db_st = sum(s.costs.db_statements for s in segments)
    db_tx = sum(s.costs.db_transactions for s in segments)
    return {
        "rate_cps": segments[0].rate,
        "duration_s": sum(s.duration for s in segments),
        "calls": {
            "planned": sum(s.planned for s in segments),
            "attempted": len(records),
            "successful": ok,
            "failed": len(records) - ok,
            "failures": dict(Counter(r.failure for r in records if r.failure)),
        },
        "routed": routed,
        "time_to_agent_ms": summary_ms(
            [r.time_to_agent for r in records if r.time_to_agent is not None]
        ),
        "caller_setup_ms": summary_ms([r.setup_time for r in records if r.setup_time is not None]),
        "cpu_ms_per_call": {
            "kamailio": per_call_ms(
                sum(s.costs.kamailio_cpu_s for s in segments), idle.kamailio_cpu_s
            ),
            "asterisk_all_nodes": per_call_ms(ast_all, sum(idle.asterisk_cpu_s)),
            "app_all_nodes": per_call_ms(app_all, sum(idle.app_cpu_s)),
            "postgres": per_call_ms(
                sum(s.costs.postgres_cpu_s for s in segments), idle.postgres_cpu_s
            ),
        },
        "nodes": nodes,
        "db_statements_per_call": _r(_net(db_st, idle.db_statements, iw, window) / ok)
        if ok
        else None,
        "db_transactions_per_call": _r(_net(db_tx, idle.db_transactions, iw, window) / ok)
        if ok
        else None,
        "loadavg_1m_max": max(s.loadavg for s in segments),
        "drained": all(s.drained for s in segments),
        "db_top_statements": segments[-1].db_top,
        "db_active_backends": segments[-1].db_activity,
        "hotline_lock_ms_per_call": round(
            sum(s.db_lock_ms * len(s.records) for s in segments) / max(1, len(records)), 3
        ),
    }


def idle_figures(idle: Costs, names: Sequence[str]) -> dict[str, Any]:
    w = idle.window_s or 1.0
    return {
        "window_s": _r(idle.window_s),
        "kamailio_cpu_ms_per_s": _r(idle.kamailio_cpu_s / w * 1000),
        "asterisk_cpu_ms_per_s": {
            n: _r(c / w * 1000) for n, c in zip(names, idle.asterisk_cpu_s, strict=True)
        },
        "app_cpu_ms_per_s": {
            n: _r(c / w * 1000) for n, c in zip(names, idle.app_cpu_s, strict=True)
        },
        "postgres_cpu_ms_per_s": _r(idle.postgres_cpu_s / w * 1000),
        "db_statements_per_s": _r(idle.db_statements / w),
    }


def step_figures(
    segments: Sequence[ClusterSegment], idle: Costs, names: Sequence[str]
) -> dict[str, Any]:
    highest: float | None = None
    failed_at: float | None = None
    by_rate: dict[float, list[ClusterSegment]] = {}
    for s in segments:
        by_rate.setdefault(s.rate, []).append(s)
    for rate in sorted(by_rate):
        if any(s.passed for s in by_rate[rate]):
            highest = rate
        else:
            failed_at = rate
            break
    steps = []
    for s in segments:
        fig = figures([s], idle, names)
        steps.append(
            {
                "rate_cps": s.rate,
                "attempt": s.attempt,
                "attempted": fig["calls"]["attempted"],
                "failed": fig["calls"]["failed"],
                "failures": fig["calls"]["failures"],
                "routed": fig["routed"],
                "time_to_agent_p99_ms": fig["time_to_agent_ms"]["p99"],
                "cpu_ms_per_call": fig["cpu_ms_per_call"],
                "loadavg_1m": s.loadavg,
                "hotline_lock_ms_per_call": round(s.db_lock_ms, 3),
                "db_active_backends": s.db_activity,
                "db_top_statements": s.db_top,
            }
        )
    return {"highest_zero_failure_cps": highest, "first_failure_cps": failed_at, "steps": steps}


def costs_for_projection(fixed: dict[str, Any], idle: dict[str, Any], nodes: int) -> PerCallCosts:
    """Per routed call: Asterisk and app of the node that carries it (all nodes' CPU over
    all calls), the shared components, and PostgreSQL's idle load per node."""
    cpu = fixed["cpu_ms_per_call"]
    return PerCallCosts(
        asterisk_ms=cpu["asterisk_all_nodes"] or 0.0,
        app_ms=cpu["app_all_nodes"] or 0.0,
        postgres_ms=cpu["postgres"] or 0.0,
        kamailio_ms=cpu["kamailio"] or 0.0,
        postgres_idle_ms_per_s_per_node=(idle["postgres_cpu_ms_per_s"] or 0.0) / nodes,
        hotline_lock_ms=fixed.get("hotline_lock_ms_per_call") or 0.0,
        node_idle_ms_per_s=(
            sum(v or 0.0 for v in idle["asterisk_cpu_ms_per_s"].values())
            + sum(v or 0.0 for v in idle["app_cpu_ms_per_s"].values())
        )
        / nodes,
    )


def projection_json(p: Projection) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return None if math.isinf(x) else round(x, 1)

    return {
        "per_node_cps": num(p.per_node_cps),
        "postgres_core_cps": num(p.postgres_core_cps),
        "kamailio_core_cps": num(p.kamailio_core_cps),
        "hotline_lock_cps": num(p.hotline_lock_cps),
        "first_shared": p.first_shared,
        "saturates_at_nodes": p.saturates_at,
        "rows": [
            {
                "nodes": r.nodes,
                "node_cps": num(r.node_cps),
                "postgres_cps": num(r.postgres_cps),
                "kamailio_cps": num(r.kamailio_cps),
                "cluster_cps": num(r.cluster_cps),
                "limit": r.limit,
            }
            for r in p.rows
        ],
    }


# ---- markdown -----------------------------------------------------------------------------


def _f(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"
    return str(value)


def _db_top(top: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"`{t['query']}` ({_f(t['per_call'])} per call, {_f(t['ms_per_call'])} ms)" for t in top
    )


def first_failing(step: dict[str, Any]) -> dict[str, Any] | None:
    """The first attempt at the first rate whose every attempt failed (the step mode's
    stop), else the first failed attempt (a retry passed: a blip of the machine)."""
    steps = step.get("steps", [])
    rate = step.get("first_failure_cps")
    return next((x for x in steps if x["rate_cps"] == rate), None) or next(
        (x for x in steps if x["failed"]), None
    )


def _per_node(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_f(v)}" for name, v in values.items())


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    m = result["machine"]
    names = cfg["node_names"]
    out = [
        "## Cluster: Kamailio, two Asterisk nodes, an app each, one PostgreSQL",
        "",
        f"Run {result['started']} on {m['cpus']} CPUs shared by everything, Asterisk "
        f"{m.get('asterisk', '?')}; load average before: {m['loadavg']}, highest 1-minute "
        f"load average at the end of a segment: {result.get('loadavg_1m_max', '?')}; app "
        f"workers per node {cfg['workers']}; {cfg['agents']} agents on one hotline, ring "
        f"{cfg['ring_s']:g} s then hang up after {cfg['hold_s']:g} s; audio "
        f"{'on' if cfg['audio'] else 'off'}; establishment threshold {cfg['threshold_s']:g} s;"
        f" whole run {result['runtime_s']:.0f} s.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    fixed = result.get("fixed")
    if fixed:
        c = fixed["calls"]
        cpu = fixed["cpu_ms_per_call"]
        out += [
            f"### Per routed call at {fixed['rate_cps']:g} calls/s for {fixed['duration_s']:g} s",
            "",
            f"{c['successful']} of {c['attempted']} calls successful"
            + (f" (failures: {c['failures']})" if c["failed"] else "")
            + f"; Kamailio routed {_per_node(fixed['routed'])}; time to agent p50/p99 "
            f"{_f(fixed['time_to_agent_ms']['p50'])}/{_f(fixed['time_to_agent_ms']['p99'])} ms."
            " CPU net of the idle baseline; per own call: divided by the calls that node"
            " carried.",
            "",
            "| component | CPU per routed call (ms) | per own call (ms) | other |",
            "|---|---:|---:|---|",
            f"| Kamailio (dispatcher) | {_f(cpu['kamailio'])} | – | |",
        ]
        for name in names:
            n = fixed["nodes"][name]
            out += [
                f"| Asterisk {name} | {_f(n['asterisk_cpu_ms_per_call'])} "
                f"| {_f(n['asterisk_cpu_ms_per_own_call'])} | {n['calls_routed']} calls |",
                f"| app {name} (all workers) | {_f(n['app_cpu_ms_per_call'])} "
                f"| {_f(n['app_cpu_ms_per_own_call'])} "
                f"| {_f(n['ari_requests_per_own_call'])} ARI requests per own call |",
            ]
        out += [
            f"| Asterisk, all nodes | {_f(cpu['asterisk_all_nodes'])} | – | |",
            f"| apps, all nodes | {_f(cpu['app_all_nodes'])} | – | |",
            f"| PostgreSQL (postmaster + backends) | {_f(cpu['postgres'])} | – "
            f"| {_f(fixed['db_statements_per_call'])} statements, "
            f"{_f(fixed['db_transactions_per_call'])} transactions per call |",
            "",
        ]
        idle = result["idle"]
        out += [
            f"Idle baseline ({_f(idle['window_s'])} s): Kamailio "
            f"{_f(idle['kamailio_cpu_ms_per_s'])} ms/s, Asterisk "
            f"{_per_node(idle['asterisk_cpu_ms_per_s'])} ms/s, apps "
            f"{_per_node(idle['app_cpu_ms_per_s'])} ms/s, "
            f"PostgreSQL {_f(idle['postgres_cpu_ms_per_s'])} ms/s "
            f"({_f(idle['db_statements_per_s'])} statements/s).",
            "",
            "PostgreSQL's execution time per call (pg_stat_statements, top 4): "
            + _db_top(fixed.get("db_top_statements", []))
            + "; its active backends on average (pg_stat_activity every 100 ms): "
            + _per_node(fixed.get("db_active_backends", {})),
            "",
        ]
    step = result.get("step")
    if step:
        tried = ", ".join(
            f"{x['rate_cps']:g}"
            + (f" ({x['failed']} failed, load {x['loadavg_1m']:g})" if x["failed"] else "")
            for x in step["steps"]
        )
        out += [
            f"### Step mode: {cfg['step_duration_s']:g} s per step; a failed step is tried "
            f"{cfg['step_retries']} more time(s)",
            "",
            "| highest zero-failure rate (calls/s) | first failure at | steps |",
            "|---:|---:|---|",
            f"| {_f(step['highest_zero_failure_cps'])} | {_f(step['first_failure_cps'])} "
            f"| {tried} |",
            "",
        ]
        failed = first_failing(step)
        if failed is not None:
            out += [
                f"At {failed['rate_cps']:g} calls/s (the first rate that failed on every "
                "attempt; its first attempt): failures "
                f"{failed['failures']}, time to "
                f"agent p99 {_f(failed['time_to_agent_p99_ms'])} ms, CPU per call "
                + ", ".join(f"{k} {_f(v)}" for k, v in failed["cpu_ms_per_call"].items())
                + " ms; PostgreSQL's execution time per call: "
                + _db_top(failed.get("db_top_statements", []))
                + "; its active backends on average: "
                + _per_node(failed.get("db_active_backends", {})),
                "",
            ]
    proj = result.get("projection")
    if proj:
        a = proj["assumptions"]
        c = proj["costs"]
        out += [
            "### Capacity projection for N nodes (from the per-call costs above)",
            "",
            f"A node has {a['node_cores']:g} cores for its Asterisk and app, less their idle "
            f"load ({_f(c['node_idle_ms_per_s'])} ms/s), and a routed call costs them "
            f"{_f(c['asterisk_ms'])} + {_f(c['app_ms'])} ms: a node carries "
            f"{_f(proj['per_node_cps'])} calls/s. PostgreSQL and Kamailio are shared, "
            f"{a['postgres_cores']:g} and {a['kamailio_cores']:g} core(s): PostgreSQL "
            f"carries (1000 ms/s less {_f(c['postgres_idle_ms_per_s_per_node'])} ms/s idle "
            f"load per node) / {_f(c['postgres_ms'])} ms per call (one node: "
            f"{_f(proj['postgres_core_cps'])} calls/s), Kamailio 1000 / "
            f"{_f(c['kamailio_ms'])} ms = {_f(proj['kamailio_core_cps'])} calls/s (– : below "
            "the 10 ms CPU tick over the run). The cluster carries the smallest of the three. "
            "CPU at 100 % only: the per-hotline lock of the reservation (one reservation at a "
            "time per hotline, cluster-wide), network and disks are not in it; a machine "
            "shared with other work carries less (the step mode above).",
            "",
            "| nodes | nodes carry (calls/s) | PostgreSQL caps at | Kamailio caps at "
            "| cluster (calls/s) | limited by |",
            "|---:|---:|---:|---:|---:|---|",
        ]
        for r in proj["rows"]:
            out.append(
                f"| {r['nodes']} | {_f(r['node_cps'])} | {_f(r['postgres_cps'])} "
                f"| {_f(r['kamailio_cps'])} | {_f(r['cluster_cps'])} | {r['limit']} |"
            )
        at = proj["saturates_at_nodes"]
        if at:
            verdict = (
                f"First to saturate: **{proj['first_shared']}**, at **{at} nodes** ({at} "
                "nodes would carry more than its one core can); with k "
                "cores about k times as many nodes, as long as the per-call cost holds."
            )
        else:
            verdict = "No shared component saturates before 1000 nodes on these figures."
        out += ["", verdict, ""]
        lock_ms = c.get("hotline_lock_ms")
        if lock_ms:
            line = (
                "One hotline: the statements that hold its advisory lock (hotline_enqueue, "
                f"hotline_reserve) ran {_f(lock_ms)} ms per call at "
                f"{_f(result['fixed']['rate_cps'])} calls/s, so one hotline takes at most "
                f"about {_f(proj['hotline_lock_cps'])} calls/s whatever the nodes (the lock is "
                "cluster-wide; every hotline has its own)."
            )
            failed = first_failing(step or {})
            if failed is not None and failed.get("hotline_lock_ms_per_call") is not None:
                line += (
                    f" At {failed['rate_cps']:g} calls/s (the first rate that failed) they ran "
                    f"{_f(failed['hotline_lock_ms_per_call'])} ms per call (what the backends "
                    "waited for: the step mode above)."
                )
            out += [line, ""]
    return "\n".join(out)


# ---- the run ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=2, help="Asterisk nodes (2)")
    p.add_argument("--agents", type=int, default=60, help="agents on the hotline (60)")
    p.add_argument("--rate", type=float, default=5.0, help="fixed rate, calls/s (5)")
    p.add_argument("--duration", type=float, default=60.0, help="fixed-rate seconds (60)")
    p.add_argument("--ring", type=float, default=0.2, help="agents ring this long (0.2 s)")
    p.add_argument("--hold", type=float, default=1.0, help="agents hang up after (1 s)")
    p.add_argument("--no-audio", dest="audio", action="store_false", help="no RTP")
    p.add_argument("--threshold", type=float, default=2.0, help="establishment threshold (2 s)")
    p.add_argument("--step-rates", default="5,10,12,14,16,18,20,25,30,40", help="calls/s list")
    p.add_argument("--step-duration", type=float, default=10.0, help="seconds per step (10)")
    p.add_argument("--step-retries", type=int, default=1, help="retries of a failed step (1)")
    p.add_argument("--workers", type=int, default=1, help="hotline serve workers per node (1)")
    p.add_argument("--node-cores", type=float, default=2.0, help="projection: cores per node")
    p.add_argument("--no-fixed", action="store_true", help="skip the fixed-rate phase")
    p.add_argument("--no-step", action="store_true", help="skip step mode")
    p.add_argument("--idle", type=float, default=15.0, help="idle baseline seconds (15)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (3)")
    p.add_argument("--out", type=Path, default=None, help="results folder")
    p.add_argument("--keep", action="store_true", help="keep sipp traces and the run folder")
    p.add_argument("--smoke", action="store_true", help="tiny run of every phase")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.step_rates = sorted({float(x) for x in str(args.step_rates).split(",") if x.strip()})
    args.full_run = not (args.smoke or args.no_fixed or args.no_step)
    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = RESULTS_DIR / (stamp + "-cluster" + ("-smoke" if args.smoke else ""))
    args.out = args.out.resolve()
    return args


async def _tune_hotline(url: str) -> None:
    """The benchmark's hotline settings (as benchmarks/world.py's): no wrap-up, no
    announcements, the caller's number shown to the agent (the traces join on it)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                update(Hotline)
                .where(Hotline.number == DEMO_HOTLINE)
                .values(
                    wrapup_s=0,
                    announce_frequency_s=0,
                    caller_id_to_agent="caller",
                    ring_timeout_s=RING_TIMEOUT_S,
                    retry_delay_s=RETRY_S,
                    max_wait_s=600,
                    max_queue_len=10000,
                    no_answer_limit=0,
                    strategy=Strategy.LONGEST_IDLE,
                    greeting_sound=None,
                )
            )
    finally:
        await engine.dispose()


async def bench(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    started, t0 = datetime.now(UTC), time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["HOTLINE_WORKERS"] = str(args.workers)  # devenv/cluster.py's NodeApp reads it
    # Below the kernel's ephemeral range: the agents' sipp binds it again each segment.
    port = free_port_on_all((AGENT_ADDRESS,), "udp")
    phones = [
        Phone(ext=str(1001 + i), address=AGENT_ADDRESS, port=port) for i in range(args.agents)
    ]
    pg = PrivatePostgres(
        args.out / "run" / "postgres",
        settings={"shared_preload_libraries": "pg_stat_statements", "max_connections": "200"},
    )
    names = [f"node{i + 1}" for i in range(args.nodes)]
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "-m", "benchmarks.cluster", *argv]),
        "machine": _machine(),
        "config": {
            "nodes": args.nodes,
            "node_names": names,
            "agents": args.agents,
            "workers": args.workers,
            "rate_cps": args.rate,
            "duration_s": args.duration,
            "ring_s": args.ring,
            "hold_s": args.hold,
            "audio": args.audio,
            "threshold_s": args.threshold,
            "step_rates_cps": args.step_rates,
            "step_duration_s": args.step_duration,
            "step_retries": args.step_retries,
            "full_run": args.full_run,
        },
    }
    db: probes.DbCounter | None = None
    b: ClusterBench | None = None
    cl: Cluster | None = None
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(pg.drop_database, DBNAME)
        await asyncio.to_thread(pg.create_database, DBNAME)
        cl = Cluster(
            args.out / "run" / "cluster",
            nodes=args.nodes,
            n_agents=args.agents,
            database_url=pg.url(DBNAME),
            phones=phones,
        )
        cl.postgres = pg  # measured and stopped with the rest (the cluster stops it)
        log.info("starting Kamailio, %d Asterisk nodes and their apps", args.nodes)
        await cl.start()
        await _tune_hotline(pg.url(DBNAME))
        db = probes.DbCounter(pg.dsn("postgres"), DBNAME)
        await db.open()
        b = ClusterBench(args, cl, ClusterMeter(cl, db, pg.dsn("postgres")))
        if args.warmup > 0:
            await b.segment("warmup", 2.0, args.warmup)
        idle = await b.idle(args.idle)
        result["idle"] = idle_figures(idle, names)
        if not args.no_fixed:
            seg = await b.segment("fixed", args.rate, args.duration)
            result["fixed"] = figures([seg], idle, names)
            costs = costs_for_projection(result["fixed"], result["idle"], args.nodes)
            result["projection"] = {
                **projection_json(project(costs, node_cores=args.node_cores)),
                "costs": {k: round(v, 2) for k, v in asdict(costs).items()},
                "assumptions": {
                    "node_cores": args.node_cores,
                    "postgres_cores": 1.0,
                    "kamailio_cores": 1.0,
                    "postgres_idle_ms_per_s_per_node": round(
                        costs.postgres_idle_ms_per_s_per_node, 2
                    ),
                },
            }
        if not args.no_step:
            result["step"] = step_figures(await b.step(), idle, names)
    finally:
        if db is not None:
            await db.close()
        if cl is not None:
            await cl.stop()  # stops pg too (cl.postgres)
        else:
            await asyncio.to_thread(pg.stop)
        if not args.keep:
            shutil.rmtree(args.out / "sipp", ignore_errors=True)
            await asyncio.to_thread(pg.remove)
    result["runtime_s"] = round(time.monotonic() - t0, 1)
    result["loadavg_1m_max"] = max((s.loadavg for s in b.segments), default=None) if b else None
    return result


def _write(args: argparse.Namespace, result: dict[str, Any]) -> str:
    table = markdown(result)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "result.md").write_text(table + "\n")
    if args.full_run:
        old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
        RESULTS_MD.write_text(splice_section(old, table))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        result = asyncio.run(until_sigterm(bench(args, argv)))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        return 143
    print(_write(args, result))
    print(f"\nJSON: {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
