"""Figures per side from the segments, the A/B ratios, the targets of issues 7 and 11, and the
JSON + markdown output."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from benchmarks.load import max_in_progress, summary_ms
from benchmarks.segment import Costs, Segment

SIDE_NAMES = {"A": "A: app hotline", "B": "B: app_queue"}
# Targets (issue 11, "done when")
TTA_P99_MARGIN_MS = 20.0
SETUP_P50_MARGIN_MS = 20.0
CPU_RATIO = 0.5  # the app's CPU per call against Asterisk's per app_queue call
MAX_DB_ROUND_TRIPS = 6.0
MAX_DB_TRANSACTIONS = 2.0
MAX_ARI_REQUESTS = 8.0
MAX_LOOP_LAG_MS = 50.0
STEP_RATIO = 1.0
RSS_LIMIT_MB = 150.0
RSS_CALLS = 200
RUNTIME_LIMIT_S = 600.0


def _span(segment: Segment) -> float:
    """Seconds over which the segment's calls were placed."""
    if not segment.records:
        return segment.duration
    first, last = segment.records[0].invite_at, segment.records[-1].invite_at
    return last - first + 1 / segment.rate


def _net(total: float, idle_total: float, idle: Costs, window_s: float) -> float:
    """`total` minus what the same window costs with no calls (never below zero)."""
    rate = idle_total / idle.window_s if idle.window_s > 0 else 0.0
    return max(0.0, total - rate * window_s)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def side_figures(segments: Sequence[Segment], idle: Costs) -> dict[str, Any]:
    """Everything issue 7 asks for, for one side of one phase (its segments pooled)."""
    records = [r for s in segments for r in s.records]
    ok = [r for r in records if r.ok]
    span = sum(_span(s) for s in segments)
    window = sum(s.costs.window_s for s in segments)

    def total(name: str) -> float:
        return float(sum(getattr(s.costs, name) for s in segments))

    def per_call_ms(value: float) -> float | None:
        return _round(value / len(ok) * 1000, 2) if ok else None

    def per_call(value: float) -> float | None:
        return _round(value / len(ok), 2) if ok else None

    net = {
        key: _net(total(f"{key}_cpu_s"), getattr(idle, f"{key}_cpu_s"), idle, window)
        for key in ("app", "asterisk", "postgres")
    }
    originate = [ms / 1000 for s in segments for ms in s.first_originate_ms]
    return {
        "rate_cps": segments[0].rate,
        "duration_s": sum(s.duration for s in segments),
        "segments": len(segments),
        "agents": segments[0].agents,
        "calls": {
            "planned": sum(s.planned for s in segments),
            "attempted": len(records),
            "successful": len(ok),
            "failed": len(records) - len(ok),
            "failures": dict(Counter(r.failure for r in records if r.failure)),
        },
        "achieved_cps": _round(len(ok) / span if span > 0 else 0.0),
        "time_to_agent_ms": summary_ms(
            [r.time_to_agent for r in records if r.time_to_agent is not None]
        ),
        "caller_setup_ms": summary_ms([r.setup_time for r in records if r.setup_time is not None]),
        "cpu_ms_per_call": {
            **{key: per_call_ms(value) for key, value in net.items()},
            "sipp": per_call_ms(total("sipp_cpu_s")),
        },
        "cpu_ms_per_call_raw": {
            key: per_call_ms(total(f"{key}_cpu_s")) for key in ("app", "asterisk", "postgres")
        },
        "app_peak_rss_mb": _round(max(s.app_peak_rss_kb for s in segments) / 1024, 1),
        "max_event_loop_lag_ms": _round(max(s.max_lag_s for s in segments) * 1000, 1),
        "db_round_trips_per_call": per_call(
            _net(total("db_statements"), idle.db_statements, idle, window)
        ),
        "db_transactions_per_call": per_call(
            _net(total("db_transactions"), idle.db_transactions, idle, window)
        ),
        # Of the round trips: the call path's statements, each its own transaction (counted
        # by name: no idle baseline to subtract), and the phones' presence writes of their
        # own (device states: made as well when app_queue's calls ring the same phones;
        # under load the app's starts and ends carry them).
        "db_call_path_statements_per_call": per_call(total("db_call_statements")),
        "db_presence_writes_per_call": per_call(
            _net(total("db_device_statements"), idle.db_device_statements, idle, window)
        ),
        "ari_requests_per_call": per_call(
            _net(total("ari_requests"), idle.ari_requests, idle, window)
        ),
        "max_calls_in_progress": max(max_in_progress(s.records) for s in segments),
        "app_first_originate_ms": summary_ms(originate) if originate else None,
        "app_log_errors": sum(s.app_errors for s in segments),
        "sipp_exit_codes": sorted({s.sipp_rc for s in segments}),
        "drained": all(s.drained for s in segments),
        "loadavg_1m_max": max(s.loadavg for s in segments),
    }


def idle_figures(idle: Costs, max_lag_s: float) -> dict[str, Any]:
    w = idle.window_s or 1.0
    return {
        "window_s": _round(idle.window_s),
        "app_cpu_ms_per_s": _round(idle.app_cpu_s / w * 1000),
        "asterisk_cpu_ms_per_s": _round(idle.asterisk_cpu_s / w * 1000),
        "postgres_cpu_ms_per_s": _round(idle.postgres_cpu_s / w * 1000),
        "db_statements_per_s": _round(idle.db_statements / w),
        "max_event_loop_lag_ms": _round(max_lag_s * 1000, 1),
    }


def _get(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# (label, path in side_figures, unit/format)
ROWS: tuple[tuple[str, str], ...] = (
    ("calls attempted", "calls.attempted"),
    ("calls successful", "calls.successful"),
    ("calls failed", "calls.failed"),
    ("achieved calls/s", "achieved_cps"),
    ("time to agent p50 (ms)", "time_to_agent_ms.p50"),
    ("time to agent p95 (ms)", "time_to_agent_ms.p95"),
    ("time to agent p99 (ms)", "time_to_agent_ms.p99"),
    ("caller setup p50 (ms)", "caller_setup_ms.p50"),
    ("caller setup p95 (ms)", "caller_setup_ms.p95"),
    ("caller setup p99 (ms)", "caller_setup_ms.p99"),
    ("CPU per call, app (ms)", "cpu_ms_per_call.app"),
    ("CPU per call, Asterisk (ms)", "cpu_ms_per_call.asterisk"),
    ("CPU per call, PostgreSQL (ms)", "cpu_ms_per_call.postgres"),
    ("app peak RSS per worker (MB)", "app_peak_rss_mb"),
    ("max event-loop lag (ms)", "max_event_loop_lag_ms"),
    ("DB round trips per call", "db_round_trips_per_call"),
    ("DB transactions per call", "db_transactions_per_call"),
    ("of these: call path statements", "db_call_path_statements_per_call"),
    ("of these: phone presence writes", "db_presence_writes_per_call"),
    ("ARI requests per call (app)", "ari_requests_per_call"),
    ("max calls in progress", "max_calls_in_progress"),
)
RATIO_PATHS = tuple(path for _, path in ROWS)


def ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for path in RATIO_PATHS:
        va, vb = _get(a, path), _get(b, path)
        # Below 1 (call, ms, round trip) B's figure is noise: no ratio.
        if isinstance(va, int | float) and isinstance(vb, int | float) and vb >= 1:
            out[path] = round(va / vb, 2)
        else:
            out[path] = None
    return out


def step_figures(segments: Sequence[Segment], idle: Costs) -> dict[str, Any]:
    """Steps of one side in rate order (every attempt); the highest rate before the first
    rate whose every attempt had a failed call."""
    steps = []
    highest: float | None = None
    failed_at: float | None = None
    by_rate: dict[float, list[Segment]] = {}
    for segment in segments:
        by_rate.setdefault(segment.rate, []).append(segment)
    for rate in sorted(by_rate):
        if failed_at is None:
            if any(s.passed for s in by_rate[rate]):
                highest = rate
            else:
                failed_at = rate
    for segment in sorted(segments, key=lambda s: (s.rate, s.attempt)):
        fig = side_figures([segment], idle)
        steps.append(
            {
                "rate_cps": segment.rate,
                "attempt": segment.attempt,
                "attempted": fig["calls"]["attempted"],
                "failed": fig["calls"]["failed"],
                "failures": fig["calls"]["failures"],
                "achieved_cps": fig["achieved_cps"],
                "time_to_agent_p99_ms": fig["time_to_agent_ms"]["p99"],
                "cpu_ms_per_call": fig["cpu_ms_per_call"],
                "max_event_loop_lag_ms": fig["max_event_loop_lag_ms"],
                "loadavg_1m": fig["loadavg_1m_max"],
            }
        )
    return {"highest_zero_failure_cps": highest, "first_failure_cps": failed_at, "steps": steps}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the measured value and met/missed."""
    out: list[dict[str, Any]] = []
    fixed = result.get("fixed")
    if fixed:
        a, b = fixed["A"], fixed["B"]
        out.append(
            {
                "target": f"0 failed calls on A at {a['rate_cps']:g} calls/s, "
                f"{a['agents']} agents, {a['duration_s']:g} s",
                "value": a["calls"]["failed"],
                "met": a["calls"]["failed"] == 0 and a["calls"]["attempted"] > 0,
            }
        )
        pa, pb = a["time_to_agent_ms"]["p99"], b["time_to_agent_ms"]["p99"]
        out.append(
            {
                "target": f"time-to-agent p99 of A within {TTA_P99_MARGIN_MS:g} ms of B's",
                "value": None if pa is None or pb is None else round(pa - pb, 1),
                "met": pa is not None and pb is not None and pa - pb <= TTA_P99_MARGIN_MS,
            }
        )
        sa, sb = a["caller_setup_ms"]["p50"], b["caller_setup_ms"]["p50"]
        out.append(
            {
                "target": f"caller setup p50 of A within {SETUP_P50_MARGIN_MS:g} ms of B's",
                "value": None if sa is None or sb is None else round(sa - sb, 1),
                "met": sa is not None and sb is not None and sa - sb <= SETUP_P50_MARGIN_MS,
            }
        )
        ca, cb = a["cpu_ms_per_call"]["app"], b["cpu_ms_per_call"]["asterisk"]
        out.append(
            {
                "target": f"app CPU per call <= {CPU_RATIO:g} x Asterisk's per app_queue call",
                "value": None if not ca or not cb else round(ca / cb, 2),
                "met": ca is not None and bool(cb) and ca <= CPU_RATIO * cb,
            }
        )
        for label, path, limit in (
            ("DB round trips per call", "db_round_trips_per_call", MAX_DB_ROUND_TRIPS),
            ("DB transactions per call", "db_transactions_per_call", MAX_DB_TRANSACTIONS),
            ("ARI requests per call", "ari_requests_per_call", MAX_ARI_REQUESTS),
        ):
            value = a.get(path)
            out.append(
                {
                    "target": f"{label} of A <= {limit:g}",
                    "value": value,
                    "met": value is not None and value <= limit,
                }
            )
        lag = a["max_event_loop_lag_ms"]
        out.append(
            {
                "target": f"max event-loop lag of A < {MAX_LOOP_LAG_MS:g} ms",
                "value": lag,
                "met": lag is not None and lag < MAX_LOOP_LAG_MS,
            }
        )
    step = result.get("step")
    if step:
        ha, hb = step["A"]["highest_zero_failure_cps"], step["B"]["highest_zero_failure_cps"]
        capped = step["B"]["first_failure_cps"] is None
        out.append(
            {
                "target": f"highest zero-failure rate of A >= {STEP_RATIO} x B's"
                + (" (B never failed: B's figure is the highest rate tried)" if capped else ""),
                "value": None if not ha or not hb else round(ha / hb, 2),
                "met": bool(ha and hb and ha >= STEP_RATIO * hb),
            }
        )
    conc = result.get("concurrency")
    if conc:
        a = conc["A"]
        out.append(
            {
                "target": f"app RSS < {RSS_LIMIT_MB:g} MB with {RSS_CALLS} calls in progress",
                "value": f"{a['app_peak_rss_mb']} MB at {a['max_calls_in_progress']} calls",
                "met": a["app_peak_rss_mb"] < RSS_LIMIT_MB
                and a["max_calls_in_progress"] >= RSS_CALLS,
            }
        )
    runtime = result.get("runtime_s")
    if runtime is not None and result.get("config", {}).get("full_run"):
        out.append(
            {
                "target": f"whole benchmark under {RUNTIME_LIMIT_S:g} s",
                "value": runtime,
                "met": runtime < RUNTIME_LIMIT_S,
            }
        )
    return out


# ---- markdown ----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"
    return str(value)


def _side_table(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    ratio = ratios(a, b)
    lines = [
        f"| figure | {SIDE_NAMES['A']} | {SIDE_NAMES['B']} | A/B |",
        "|---|---:|---:|---:|",
    ]
    for label, path in ROWS:
        lines.append(
            f"| {label} | {_fmt(_get(a, path))} | {_fmt(_get(b, path))} | {_fmt(ratio[path])} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    out = [
        f"Run {result['started']} on {result['machine']['cpus']} CPUs, "
        f"Asterisk {result['machine'].get('asterisk', '(version not recorded)')} "
        f"(load average before: {result['machine']['loadavg']}), "
        f"strategy {cfg['strategy']} (app_queue: {cfg['queue_strategy']}), "
        f"app workers {cfg.get('workers', 1)} (its CPU is theirs summed, its RSS the largest "
        "worker's), "
        f"agents ring {cfg['ring_s']:g} s then hang up after {cfg['hold_s']:g} s, "
        f"establishment threshold {cfg['threshold_s']:g} s; "
        f"whole run {result['runtime_s']:.0f} s; highest 1-minute load average at the end "
        f"of a segment: {result.get('loadavg_1m_max', '?')}.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    fixed = result.get("fixed")
    if fixed:
        a = fixed["A"]
        out += [
            f"### Fixed rate: {a['rate_cps']:g} calls/s, {a['agents']} agents, "
            f"{a['duration_s']:g} s per side (in {a['segments']} alternating segments)",
            "",
            *_side_table(fixed["A"], fixed["B"]),
            "",
        ]
    step = result.get("step")
    if step:
        out += [
            f"### Step mode: {cfg['step_duration_s']:g} s per step, {cfg['step_agents']} agents; "
            f"a failed step is tried {cfg.get('step_retries', 0)} more time(s)",
            "",
            "| side | highest zero-failure rate (calls/s) | first failure at | steps |",
            "|---|---:|---:|---|",
        ]
        for side in ("A", "B"):
            s = step[side]
            tried = ", ".join(
                f"{x['rate_cps']:g}"
                + (f" ({x['failed']} failed, load {x['loadavg_1m']:g})" if x["failed"] else "")
                for x in s["steps"]
            )
            out.append(
                f"| {SIDE_NAMES[side]} | {_fmt(s['highest_zero_failure_cps'])} "
                f"| {_fmt(s['first_failure_cps'])} | {tried} |"
            )
        out.append("")
    conc = result.get("concurrency")
    if conc:
        a = conc["A"]
        out += [
            f"### Calls in progress: {a['calls']['attempted']} calls at {a['rate_cps']:g}/s, "
            f"agents hold {cfg['conc_hold_s']:g} s",
            "",
            "| figure | A: app hotline |",
            "|---|---:|",
            f"| max calls in progress | {a['max_calls_in_progress']} |",
            f"| app peak RSS (MB) | {_fmt(a['app_peak_rss_mb'])} |",
            f"| calls failed | {a['calls']['failed']} |",
            f"| max event-loop lag (ms) | {_fmt(a['max_event_loop_lag_ms'])} |",
            f"| time to agent p99 (ms) | {_fmt(a['time_to_agent_ms']['p99'])} |",
            "",
        ]
    checks = result.get("targets", [])
    if checks:
        out += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        out += [
            f"| {t['target']} | {_fmt(t['value'])} | {'yes' if t['met'] else '**no**'} |"
            for t in checks
        ]
        out.append("")
    return "\n".join(out)
