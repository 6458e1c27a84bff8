"""Load benchmark: the app's hotline (A) against Asterisk's app_queue (B), same PBX, same run.

    .venv/bin/python -m benchmarks.run            # full run (5 to 8 minutes), or `make bench`
    .venv/bin/python -m benchmarks.run --smoke    # a few calls per side, to see it works

Starts a private PostgreSQL, a private Asterisk (agent endpoints all answered by one sipp
UAS, queues for app_queue) and `hotline serve`, then runs, alternating A and B:

1. fixed rate: R calls/s for D seconds per side (in --rounds alternating segments);
2. concurrency (A only): enough long calls that --conc-calls are in progress at once, for
   the app's peak memory;
3. step mode (RFC 7502 style): rates from --step-rates, each side until its first failed
   call; the highest rate without a failure is the side's figure.

A call has failed unless the caller got 200 OK, an agent was offered the call within the
establishment threshold (--threshold) and the agent's hang-up reached the caller.
Results: <out>/result.json and result.md; a full run also rewrites benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import report
from benchmarks.probes import DbCounter
from benchmarks.segment import Meter, Segment, SegmentPlan, run_segment
from benchmarks.world import DBNAME, QUEUE_STRATEGY, Line, World
from devenv.asterisk import asterisk_install

log = logging.getLogger("benchmarks")
T = TypeVar("T")

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
SMOKE = {
    "rate": 2.0,
    "agents": 4,
    "duration": 5.0,
    "rounds": 1,
    "step_rates": "2,4",
    "step_duration": 3.0,
    "step_agents": 8,
    "step_retries": 0,
    "conc_calls": 6,
    "conc_rate": 3.0,
    "conc_hold": 3.0,
    "idle": 2.0,
    "warmup": 0.0,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=10.0, help="fixed rate, calls/s (10)")
    p.add_argument("--agents", type=int, default=20, help="agents for the fixed rate (20)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per side (60)")
    p.add_argument("--rounds", type=int, default=2, help="alternating A/B segments (2)")
    p.add_argument("--ring", type=float, default=0.2, help="agents ring this long (0.2 s)")
    p.add_argument("--hold", type=float, default=1.0, help="agents hang up after (1 s)")
    p.add_argument("--strategy", choices=sorted(QUEUE_STRATEGY), default="longest_idle")
    p.add_argument(
        "--no-audio", dest="audio", action="store_false", help="callers and agents stay silent"
    )
    p.add_argument("--threshold", type=float, default=2.0, help="establishment threshold (2 s)")
    p.add_argument("--step-rates", default="10,20,30,40,50,60,80,100", help="calls/s list")
    p.add_argument("--step-duration", type=float, default=10.0, help="seconds per step (10)")
    p.add_argument(
        "--step-retries",
        type=int,
        default=1,
        help="a failed step is tried again this often before the side stops (1)",
    )
    p.add_argument("--step-agents", type=int, default=150, help="agents in step mode (150)")
    p.add_argument("--step-hold", type=float, default=1.0, help="hold in step mode (1 s)")
    p.add_argument("--conc-calls", type=int, default=200, help="calls in progress (200)")
    # A rate the app sustains without failures on a slow 2-core machine; the hold time keeps
    # every call of the phase up at once.
    p.add_argument("--conc-rate", type=float, default=8.0, help="their rate (8/s)")
    p.add_argument("--conc-hold", type=float, default=30.0, help="their hold time (30 s)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="hotline serve --workers (default: the number of CPUs, as serve's)",
    )
    p.add_argument("--no-fixed", action="store_true", help="skip the fixed-rate phase")
    p.add_argument("--no-step", action="store_true", help="skip step mode")
    p.add_argument("--no-conc", action="store_true", help="skip the concurrency phase")
    p.add_argument("--idle", type=float, default=10.0, help="idle baseline seconds (10)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per side (3)")
    p.add_argument("--app-log-level", default="INFO", help="HOTLINE_LOG_LEVEL of serve (INFO)")
    p.add_argument(
        "--app-path", type=Path, default=None, help="run serve with the ari_app found here"
    )
    p.add_argument(
        "--profile", action="store_true", help="py-spy the app in A segments (not for figures)"
    )
    p.add_argument("--out", type=Path, default=None, help="results folder")
    p.add_argument("--keep", action="store_true", help="keep sipp traces and the DB cluster")
    p.add_argument("--smoke", action="store_true", help="tiny run of every phase")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.step_rates = sorted({float(x) for x in str(args.step_rates).split(",") if x.strip()})
    # Only a full run of the app as it is rewrites RESULTS.md.
    args.full_run = not (
        args.smoke
        or args.no_fixed
        or args.no_step
        or args.no_conc
        or args.profile
        or args.app_path is not None
    )
    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = RESULTS_DIR / (stamp + ("-smoke" if args.smoke else ""))
    args.out = args.out.resolve()  # sipp runs in its own folder
    return args


def _lines(args: argparse.Namespace) -> dict[str, Line]:
    return {
        "fixed": Line("fixed", "500", "600", args.agents),
        "step": Line("step", "501", "601", args.step_agents),
        "conc": Line("conc", "502", "602", args.conc_calls),
    }


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "kernel": os.uname().release,
        # the Asterisk the world starts ($HOTLINE_ASTERISK or the system's): results of
        # different versions are compared side by side
        "asterisk": asterisk_install().version(),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, world: World, meter: Meter) -> None:
        self.args = args
        self.world = world
        self.meter = meter
        self.lines = _lines(args)
        self.seq = itertools.count(1)
        self.sipp_dir: Path = args.out / "sipp"
        self.segments: list[Segment] = []  # every segment run, in order

    async def segment(
        self, side: str, phase: str, rate: float, duration: float, *, hold: float | None = None
    ) -> Segment:
        a = self.args
        plan = SegmentPlan(
            side=side,
            phase=phase,
            line=self.lines["fixed" if phase == "warmup" else phase],
            rate=rate,
            duration=duration,
            ring=a.ring,
            hold=a.hold if hold is None else hold,
            threshold=a.threshold,
            audio=a.audio,
            profile=a.profile and side == "A" and phase != "warmup",
        )
        segment = await run_segment(self.world, self.meter, self.sipp_dir, plan, next(self.seq))
        self.segments.append(segment)
        return segment

    async def warmup(self) -> None:
        for side in ("A", "B"):
            seg = await self.segment(side, "warmup", 2.0, self.args.warmup)
            if seg.failed:
                log.warning("warm-up %s: %d of %d calls failed", side, seg.failed, seg.planned)

    async def fixed(self) -> dict[str, list[Segment]]:
        a = self.args
        out: dict[str, list[Segment]] = {"A": [], "B": []}
        for _ in range(a.rounds):
            for side in ("A", "B"):
                out[side].append(await self.segment(side, "fixed", a.rate, a.duration / a.rounds))
        return out

    async def concurrency(self) -> Segment:
        a = self.args
        return await self.segment(
            "A", "conc", a.conc_rate, a.conc_calls / a.conc_rate, hold=a.conc_hold
        )

    async def step(self) -> dict[str, list[Segment]]:
        a = self.args
        out: dict[str, list[Segment]] = {"A": [], "B": []}
        stopped: set[str] = set()
        for rate in a.step_rates:
            for side in ("A", "B"):
                if side in stopped:
                    continue
                for attempt in range(1, a.step_retries + 2):
                    seg = await self.segment(side, "step", rate, a.step_duration, hold=a.step_hold)
                    seg.attempt = attempt
                    out[side].append(seg)
                    if seg.passed:
                        break
                    log.info("step: %s failed at %g calls/s (attempt %d)", side, rate, attempt)
                else:
                    stopped.add(side)
            if stopped == {"A", "B"}:
                break
        return out


async def bench(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    started, t0 = datetime.now(UTC), time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = _lines(args)
    used = [lines["fixed"]]
    if not args.no_step:
        used.append(lines["step"])
    if not args.no_conc:
        used.append(lines["conc"])
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "-m", "benchmarks.run", *argv]),
        "machine": _machine(),
        "config": {
            "strategy": args.strategy,
            "queue_strategy": QUEUE_STRATEGY[args.strategy],
            "ring_s": args.ring,
            "hold_s": args.hold,
            "threshold_s": args.threshold,
            "audio": args.audio,
            "rate_cps": args.rate,
            "agents": args.agents,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "step_rates_cps": args.step_rates,
            "step_duration_s": args.step_duration,
            "step_retries": args.step_retries,
            "step_agents": args.step_agents,
            "step_hold_s": args.step_hold,
            "conc_calls": args.conc_calls,
            "conc_rate_cps": args.conc_rate,
            "conc_hold_s": args.conc_hold,
            "full_run": args.full_run,
            "app_log_level": args.app_log_level,
            "app_path": str(args.app_path) if args.app_path else None,
            "workers": args.workers,
        },
    }
    world = World(
        args.out / "run",
        used,
        args.strategy,
        app_log_level=args.app_log_level,
        app_path=args.app_path,
        workers=args.workers,
    )
    db: DbCounter | None = None
    b: Bench | None = None
    try:
        log.info("starting PostgreSQL, Asterisk (%d agents) and hotline serve", world.agent_count)
        await world.start()
        db = DbCounter(world.pg.dsn("postgres"), DBNAME)
        await db.open()
        b = Bench(args, world, Meter(world, db))
        if args.warmup > 0:
            await b.warmup()
        idle, idle_lag = await b.meter.idle(args.idle)
        result["idle"] = report.idle_figures(idle, idle_lag)
        if not args.no_fixed:
            fixed = await b.fixed()
            fa, fb = (report.side_figures(fixed[s], idle) for s in ("A", "B"))
            result["fixed"] = {"A": fa, "B": fb, "ratios": report.ratios(fa, fb)}
        if not args.no_conc:
            result["concurrency"] = {"A": report.side_figures([await b.concurrency()], idle)}
        if not args.no_step:
            steps = await b.step()
            result["step"] = {side: report.step_figures(steps[side], idle) for side in steps}
    finally:
        if db is not None:
            await db.close()
        await world.stop()
        if not args.keep:
            shutil.rmtree(args.out / "sipp", ignore_errors=True)
            await asyncio.to_thread(world.pg.remove)
    result["runtime_s"] = round(time.monotonic() - t0, 1)
    result["loadavg_1m_max"] = (
        max((s.loadavg for s in b.segments), default=None) if b is not None else None
    )
    result["targets"] = [] if args.smoke else report.targets(result)
    return result


def _write(args: argparse.Namespace, result: dict[str, Any]) -> str:
    table = report.markdown(result)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "result.md").write_text(table + "\n")
    if args.full_run:
        from benchmarks import versions
        from benchmarks.cluster import kept_section  # it imports this module

        RESULTS_MD.write_text(
            "# Benchmark results (latest full run)\n\n"
            "Written by `make bench` (`.venv/bin/python -m benchmarks.run`); "
            "see benchmarks/NOTES.md for what is measured and how.\n\n"
            + table
            + "\n"
            + versions.kept_section(RESULTS_MD)  # Asterisk 22 vs 16 (benchmarks/versions.py)
            + kept_section(RESULTS_MD)  # the cluster's (`make bench BENCH_ARGS=--cluster`)
        )
    return table


async def until_sigterm(work: Awaitable[T]) -> T:
    """Await `work`; SIGTERM cancels it, so its `finally` stops everything it started
    (serve, Asterisk, Postgres) before the process exits (the smoke tests rely on this)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


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
    except asyncio.CancelledError:  # SIGTERM: everything started was stopped
        return 143
    print(_write(args, result))
    print(f"\nJSON: {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
