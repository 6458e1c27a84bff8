"""Asterisk 22 vs 16: one A/B table for two Asterisk versions, from the result.json of two
benchmark runs with the same options (`make bench` on the distribution's Asterisk 16 and
`make bench ASTERISK=22`), written into benchmarks/RESULTS.md as a section of its own.
benchmarks/run.py keeps that section when a full run rewrites the file.

    .venv/bin/python -m benchmarks.versions benchmarks/results/<run on 16>/result.json \\
        benchmarks/results/<run on 22>/result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import ROWS, SIDE_NAMES, _fmt, _get

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
START = "<!-- asterisk versions section: written by benchmarks/versions.py -->"
END = "<!-- end of the asterisk versions section -->"
CLUSTER_MARKER = "<!-- cluster section: written by benchmarks/cluster.py -->"


def _major(result: dict[str, Any]) -> str:
    return str(result["machine"].get("asterisk", "?")).split(".")[0]


def _ratio(new: Any, old: Any) -> float | None:
    # As report.ratios: below 1 (call, ms) the base is noise, no ratio.
    if isinstance(new, int | float) and isinstance(old, int | float) and old >= 1:
        return round(new / old, 2)
    return None


def _run_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"- Asterisk {m.get('asterisk', '?')}: run {result['started']}, load average before "
        f"{m['loadavg']}, highest 1-minute load average at the end of a segment "
        f"{result.get('loadavg_1m_max', '?')}, whole run {result['runtime_s']:.0f} s"
    )


def section(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The markdown section comparing ``new`` (e.g. 22) with ``old`` (e.g. 16)."""
    if old["config"] != new["config"]:
        raise ValueError("the two runs used different options: not comparable")
    vo, vn = _major(old), _major(new)
    cfg = old["config"]
    scope = (
        "full runs"
        if cfg.get("full_run")
        else "**shorter runs than the full benchmark** (same options for both)"
    )
    out = [
        f"## Asterisk {vn} vs {vo}",
        "",
        f"The same benchmark on both versions ({scope}): command `{old['command']}` with "
        f"`ASTERISK={vn}` for Asterisk {vn}. A is the app's hotline, B app_queue, each on the "
        "Asterisk named in the column. The machine is shared: compare loads before reading "
        "small differences.",
        "",
        _run_line(old),
        _run_line(new),
        "",
    ]
    fo, fn = old.get("fixed"), new.get("fixed")
    if fo and fn:
        a = fo["A"]
        out += [
            f"### Fixed rate: {a['rate_cps']:g} calls/s, {a['agents']} agents, "
            f"{a['duration_s']:g} s per side",
            "",
            f"| figure | A on {vo} | A on {vn} | A {vn}/{vo} | B on {vo} | B on {vn} "
            f"| B {vn}/{vo} |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, path in ROWS:
            cells = []
            for side in ("A", "B"):
                o, n = _get(fo[side], path), _get(fn[side], path)
                cells += [_fmt(o), _fmt(n), _fmt(_ratio(n, o))]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    so, sn = old.get("step"), new.get("step")
    if so and sn:
        out += [
            f"### Step mode: {cfg['step_duration_s']:g} s per step, {cfg['step_agents']} agents",
            "",
            f"| side | highest zero-failure rate on {vo} (calls/s) | on {vn} |",
            "|---|---:|---:|",
        ]
        for side in ("A", "B"):
            out.append(
                f"| {SIDE_NAMES[side]} | {_fmt(so[side]['highest_zero_failure_cps'])} "
                f"| {_fmt(sn[side]['highest_zero_failure_cps'])} |"
            )
        out.append("")
    co, cn = old.get("concurrency"), new.get("concurrency")
    if co and cn:
        o, n = co["A"], cn["A"]
        out += [
            f"### Calls in progress: {o['calls']['attempted']} calls at {o['rate_cps']:g}/s",
            "",
            f"| figure (A: app hotline) | on {vo} | on {vn} |",
            "|---|---:|---:|",
        ]
        for label, path in (
            ("max calls in progress", "max_calls_in_progress"),
            ("calls failed", "calls.failed"),
            ("app peak RSS (MB)", "app_peak_rss_mb"),
            ("max event-loop lag (ms)", "max_event_loop_lag_ms"),
            ("time to agent p99 (ms)", "time_to_agent_ms.p99"),
        ):
            out.append(f"| {label} | {_fmt(_get(o, path))} | {_fmt(_get(n, path))} |")
        out.append("")
    return "\n".join(out).rstrip("\n")


def splice(text: str, body: str) -> str:
    """``text`` with the versions section replaced by ``body`` (placed before the cluster
    section, or at the end, when there is none yet)."""
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    if CLUSTER_MARKER in text:
        head, rest = text.split(CLUSTER_MARKER, 1)
        return head.rstrip("\n") + "\n\n" + block + "\n\n" + CLUSTER_MARKER + rest
    return text.rstrip("\n") + "\n\n" + block + "\n"


def kept_section(path: Path) -> str:
    """The versions section of RESULTS.md as it is (benchmarks/run.py keeps it), or ""."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text()
        if START in text and END in text:
            return "\n" + START + text.split(START, 1)[1].split(END, 1)[0] + END + "\n"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versions", description=__doc__)
    p.add_argument("old", type=Path, help="result.json of the run on the older Asterisk")
    p.add_argument("new", type=Path, help="result.json of the run on the newer Asterisk")
    p.add_argument("--results", type=Path, default=RESULTS_MD, help="file to write into")
    args = p.parse_args(argv)
    old, new = (json.loads(path.read_text()) for path in (args.old, args.new))
    try:
        body = section(old, new)
    except ValueError as exc:
        print(f"benchmarks.versions: {exc}", file=sys.stderr)
        return 2
    text = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(splice(text, body))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
