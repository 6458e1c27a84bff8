"""Soak run: the app's hotline (side A only) at a moderate rate for a long time.

    .venv/bin/python -m benchmarks.soak                  # 30 minutes at 3 calls/s, 20 agents
    .venv/bin/python -m benchmarks.soak --minutes 2      # a short look

The same world as the load benchmark (private PostgreSQL and Asterisk, the real
`hotline serve`, agents played by one sipp UAS), driven in back-to-back segments of
--segment seconds. After each segment (once Asterisk has no channel left) it records the
calls and failures (same definition as the benchmark), time to agent, and the resident
memory of the app and of Asterisk. Memory is flat when the app's RSS at the end stays
within a few MB of its RSS after the first segments (the warm-up fills caches and pools).

Results: <out>/soak.json and soak.md; a run of 30 minutes or more also rewrites
benchmarks/SOAK.md. Not part of the test suite (it takes half an hour); the benchmark's
smoke test covers the code it shares with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import probes, report
from benchmarks.probes import DbCounter
from benchmarks.run import until_sigterm
from benchmarks.segment import Meter, SegmentPlan, run_segment
from benchmarks.world import DBNAME, Line, World

log = logging.getLogger("benchmarks.soak")

HERE = Path(__file__).resolve().parent
SOAK_MD = HERE / "SOAK.md"
WARMUP_SEGMENTS = 2  # the baseline for "flat" is the RSS after these


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=30.0, help="how long (30)")
    p.add_argument("--rate", type=float, default=3.0, help="calls/s (3)")
    p.add_argument("--agents", type=int, default=20, help="agents (20)")
    p.add_argument("--segment", type=float, default=60.0, help="seconds per segment (60)")
    p.add_argument("--ring", type=float, default=0.2, help="agents ring this long (0.2 s)")
    p.add_argument("--hold", type=float, default=3.0, help="agents hang up after (3 s)")
    p.add_argument("--threshold", type=float, default=2.0, help="establishment threshold (2 s)")
    p.add_argument("--out", type=Path, default=None, help="results folder")
    args = p.parse_args(argv)
    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = HERE / "results" / f"{stamp}-soak"
    args.out = args.out.resolve()
    return args


async def soak(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    started, t0 = datetime.now(UTC), time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    line = Line("fixed", "500", "600", args.agents)
    world = World(args.out / "run", [line], "longest_idle")
    rows: list[dict[str, Any]] = []
    db: DbCounter | None = None
    try:
        await world.start()
        db = DbCounter(world.pg.dsn("postgres"), DBNAME)
        await db.open()
        meter = Meter(world, db)
        idle, _ = await meter.idle(5.0)
        seq = 0
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            seq += 1
            plan = SegmentPlan(
                side="A",
                phase="soak",
                line=line,
                rate=args.rate,
                duration=min(args.segment, max(1.0, deadline - time.monotonic())),
                ring=args.ring,
                hold=args.hold,
                threshold=args.threshold,
            )
            seg = await run_segment(world, meter, args.out / "sipp", plan, seq)
            figures = report.side_figures([seg], idle)
            rows.append(
                {
                    "segment": seq,
                    "minute": round((time.monotonic() - t0) / 60, 1),
                    "calls": figures["calls"]["attempted"],
                    "failed": figures["calls"]["failed"],
                    "failures": figures["calls"]["failures"],
                    "time_to_agent_p99_ms": figures["time_to_agent_ms"]["p99"],
                    "app_rss_mb": round(probes.memory_kb(world.app_pid) / 1024, 1),
                    "app_peak_rss_mb": figures["app_peak_rss_mb"],
                    "asterisk_rss_mb": round(probes.memory_kb(world.asterisk_pid) / 1024, 1),
                    "app_log_errors": figures["app_log_errors"],
                    "drained": seg.drained,
                }
            )
            shutil.rmtree(args.out / "sipp", ignore_errors=True)  # traces add up over hours
    finally:
        if db is not None:
            await db.close()
        await world.stop()
        await asyncio.to_thread(world.pg.remove)
    return {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "-m", "benchmarks.soak", *argv]),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "runtime_s": round(time.monotonic() - t0, 1),
        "summary": summary(rows),
        "segments": rows,
    }


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals, and the memory trend: RSS after the warm-up segments against the end."""
    if not rows:
        return {}
    settled = rows[min(WARMUP_SEGMENTS, len(rows) - 1)]
    last = rows[-1]
    return {
        "calls": sum(r["calls"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
        "app_log_errors": sum(r["app_log_errors"] for r in rows),
        "all_drained": all(r["drained"] for r in rows),
        "app_rss_mb_settled": settled["app_rss_mb"],
        "app_rss_mb_end": last["app_rss_mb"],
        "app_rss_mb_max": max(r["app_rss_mb"] for r in rows),
        "app_rss_growth_mb": round(last["app_rss_mb"] - settled["app_rss_mb"], 1),
        "asterisk_rss_mb_settled": settled["asterisk_rss_mb"],
        "asterisk_rss_mb_end": last["asterisk_rss_mb"],
        "time_to_agent_p99_ms_max": max(r["time_to_agent_p99_ms"] or 0 for r in rows),
    }


def markdown(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["config"]
    lines = [
        f"Run {result['started']}: {c['minutes']:g} min at {c['rate']:g} calls/s, "
        f"{c['agents']} agents (ring {c['ring']:g} s, hold {c['hold']:g} s), "
        f"segments of {c['segment']:g} s; whole run {result['runtime_s']:.0f} s.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| calls | {s['calls']} |",
        f"| failed calls | {s['failed']} |",
        f"| errors in the app's log | {s['app_log_errors']} |",
        f"| no channel left after every segment | {'yes' if s['all_drained'] else 'no'} |",
        f"| app RSS after {WARMUP_SEGMENTS} segments (MB) | {s['app_rss_mb_settled']} |",
        f"| app RSS at the end (MB) | {s['app_rss_mb_end']} |",
        f"| app RSS growth (MB) | {s['app_rss_growth_mb']} |",
        f"| Asterisk RSS settled / end (MB) | {s['asterisk_rss_mb_settled']} / "
        f"{s['asterisk_rss_mb_end']} |",
        f"| worst segment's time to agent p99 (ms) | {s['time_to_agent_p99_ms_max']} |",
        "",
        "| segment | minute | calls | failed | time to agent p99 (ms) | app RSS (MB) "
        "| Asterisk RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['segment']} | {r['minute']} | {r['calls']} | {r['failed']} "
        f"| {r['time_to_agent_p99_ms']} | {r['app_rss_mb']} | {r['asterisk_rss_mb']} |"
        for r in result["segments"]
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        result = asyncio.run(until_sigterm(soak(args, argv)))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM: everything started was stopped
        return 143
    table = markdown(result)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "soak.md").write_text(table + "\n")
    if args.minutes >= 30:
        SOAK_MD.write_text(
            "# Soak run (latest)\n\nWritten by `.venv/bin/python -m benchmarks.soak`; "
            "see benchmarks/NOTES.md.\n\n" + table + "\n"
        )
    print(table)
    print(f"\nJSON: {args.out / 'soak.json'}")
    return 0 if result["summary"].get("failed", 1) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
