"""One load segment: agents' UAS up, callers at a rate for a while, wait until Asterisk is
idle, then collect what it cost (CPU, memory, loop lag, DB statements) and the per-call
records from the sipp traces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import probes
from benchmarks.load import Callers, CallRecord, agent_invites, agents_uas, classify
from benchmarks.world import AGENT_ADDRESS, TRUNK_IN_ADDRESS, Line, World

log = logging.getLogger(__name__)

_FIRST_ORIGINATE = re.compile(r"first originate after ([0-9.]+) ms")
_APP_ERRORS = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) |^Traceback", re.M)
ANSWER_TIMEOUT_S = 10.0
# How long a caller waits for the agent's hang-up after its 200 OK, on top of ring + hold.
CONNECT_BUDGET_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    at: float  # monotonic
    app_cpu: float
    asterisk_cpu: float
    postgres_cpu: float
    sipp_cpu: float
    db: probes.DbCount
    ari_requests: int


@dataclass(frozen=True)
class Costs:
    """What happened between two snapshots."""

    window_s: float
    app_cpu_s: float
    asterisk_cpu_s: float
    postgres_cpu_s: float
    sipp_cpu_s: float
    db_statements: int
    db_transactions: int
    ari_requests: int = 0
    db_device_statements: int = 0
    db_call_statements: int = 0

    @staticmethod
    def between(before: Snapshot, after: Snapshot) -> Costs:
        return Costs(
            window_s=after.at - before.at,
            app_cpu_s=after.app_cpu - before.app_cpu,
            asterisk_cpu_s=after.asterisk_cpu - before.asterisk_cpu,
            postgres_cpu_s=after.postgres_cpu - before.postgres_cpu,
            sipp_cpu_s=after.sipp_cpu - before.sipp_cpu,
            db_statements=after.db.statements - before.db.statements,
            db_transactions=after.db.transactions - before.db.transactions,
            db_device_statements=after.db.device_statements - before.db.device_statements,
            db_call_statements=after.db.call_statements - before.db.call_statements,
            ari_requests=after.ari_requests - before.ari_requests,
        )


class Meter:
    def __init__(self, world: World, db: probes.DbCounter) -> None:
        self.world = world
        self.db = db

    async def snapshot(self) -> Snapshot:
        w = self.world
        return Snapshot(
            at=time.monotonic(),
            app_cpu=probes.tree_cpu_seconds(w.app_pid),  # every worker
            asterisk_cpu=probes.cpu_seconds(w.asterisk_pid),
            postgres_cpu=probes.tree_cpu_seconds(w.postgres_pid),
            sipp_cpu=probes.reaped_children_cpu(),
            db=await self.db.read(),
            ari_requests=await probes.ari_requests(w.metrics_urls),
        )

    async def idle(self, seconds: float) -> tuple[Costs, float]:
        """The cost of doing nothing for `seconds` (background tasks, metrics scrapes);
        also returns the max loop lag seen."""
        before = await self.snapshot()
        async with probes.Sampler(self.world.app_pids, self.world.metrics_urls) as sampler:
            await asyncio.sleep(seconds)
        return Costs.between(before, await self.snapshot()), sampler.max_lag_s


@dataclass
class Segment:
    side: str  # "A" (the app) or "B" (app_queue)
    phase: str
    rate: float
    duration: float
    agents: int
    planned: int
    records: list[CallRecord]
    costs: Costs
    app_peak_rss_kb: int
    max_lag_s: float
    first_originate_ms: list[float] = field(default_factory=list)
    app_errors: int = 0
    sipp_rc: int = 0
    drained: bool = True
    loadavg: float = 0.0  # 1-minute load average at the end of the segment
    attempt: int = 1  # step mode: a failed step is tried again (--step-retries)

    @property
    def passed(self) -> bool:
        return not self.failed and len(self.records) == self.planned

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.records)


@dataclass
class SegmentPlan:
    side: str
    phase: str
    line: Line
    rate: float
    duration: float
    ring: float
    hold: float
    threshold: float
    audio: bool = True  # callers and agents send RTP once answered, as phones do
    profile: bool = False  # sample the app with py-spy during the segment (side A)


async def run_segment(
    world: World, meter: Meter, workdir: Path, plan: SegmentPlan, seq: int
) -> Segment:
    assert world.serve is not None
    name = f"{seq:02d}-{plan.phase}-{plan.side}-{plan.rate:g}cps"
    folder = workdir / name
    number = plan.line.a_number if plan.side == "A" else plan.line.b_number
    count = max(1, round(plan.rate * plan.duration))
    log.info(
        "segment %s: %d calls at %g/s to %s (%d agents, ring %.1fs, hold %.1fs)",
        name, count, plan.rate, number, plan.line.agents, plan.ring, plan.hold,
    )  # fmt: skip
    uas = agents_uas(
        folder, AGENT_ADDRESS, world.agent_port, ring=plan.ring, hold=plan.hold, audio=plan.audio
    )
    callers = Callers(
        folder,
        "callers",
        number=number,
        prefix=f"7{seq:03d}",
        rate=plan.rate,
        count=count,
        local_addr=TRUNK_IN_ADDRESS,
        pbx_addr=world.pbx.sip_address,
        answer_timeout=ANSWER_TIMEOUT_S,
        bye_timeout=CONNECT_BUDGET_S + plan.ring + plan.hold,
        audio=plan.audio,
    )
    await uas.start()
    try:
        app_pids = world.app_pids
        hwm_reset = all([probes.reset_peak_rss(pid) for pid in app_pids])
        log_offset = world.serve.log_offset()
        before = await meter.snapshot()
        async with (
            probes.Sampler(app_pids, world.metrics_urls) as sampler,
            probes.Profiler(world.app_pid, folder / "app-profile.txt", enabled=plan.profile),
        ):
            await callers.start()
            try:
                rc = await callers.wait()
            finally:
                await callers.stop()
            drained = await world.wait_idle()
        peak = sampler.max_rss_kb
        if hwm_reset:
            for pid in app_pids:
                with contextlib.suppress(OSError, KeyError):
                    peak = max(peak, probes.memory_kb(pid, "VmHWM"))
    finally:
        await uas.stop()
    after = await meter.snapshot()
    app_log = world.serve.log_text(log_offset)
    records = classify(callers.messages(), agent_invites(uas.messages()), plan.threshold)
    segment = Segment(
        side=plan.side,
        phase=plan.phase,
        rate=plan.rate,
        duration=plan.duration,
        agents=plan.line.agents,
        planned=count,
        records=records,
        costs=Costs.between(before, after),
        app_peak_rss_kb=peak,
        max_lag_s=sampler.max_lag_s,
        first_originate_ms=[float(m) for m in _FIRST_ORIGINATE.findall(app_log)],
        app_errors=len(_APP_ERRORS.findall(app_log)),
        sipp_rc=rc,
        drained=drained,
        loadavg=probes.loadavg_1m(),
    )
    log.info(
        "segment %s: %d/%d ok, sipp rc=%d, drained=%s",
        name, len(records) - segment.failed, len(records), rc, drained,
    )  # fmt: skip
    return segment
