"""The load benchmark and the soak run still run: a tiny run of every phase (a few calls
per second for a few seconds, both sides) and a soak of a few short segments. Speeds are
not asserted here; only that every figure is there and no call failed at this rate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def _run_smoke(out: Path, log_path: Path, module: str = "benchmarks.run", *args: str) -> int:
    """`python -m benchmarks.run --smoke` (or `module` with `args`); on a timeout it gets
    SIGTERM, which makes it stop everything it started (serve, Asterisk, Postgres), then
    SIGKILL as a last resort."""
    argv = list(args) if args else ["--smoke"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv, "--out", str(out)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            return proc.wait(TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _check_side(fig: dict[str, Any], what: str) -> None:
    calls = fig["calls"]
    assert calls["attempted"] >= 5 and calls["attempted"] == calls["planned"], (what, calls)
    assert calls["failed"] == 0 and calls["successful"] == calls["attempted"], (what, calls)
    assert fig["achieved_cps"] > 0, what
    for key in ("time_to_agent_ms", "caller_setup_ms"):
        assert all(fig[key][p] is not None for p in ("p50", "p95", "p99")), (what, key)
    assert set(fig["cpu_ms_per_call"]) >= {"app", "asterisk", "postgres"}, what
    assert all(v is not None for v in fig["cpu_ms_per_call"].values()), what
    assert fig["app_peak_rss_mb"] > 10, what
    assert fig["max_event_loop_lag_ms"] is not None, what
    assert fig["db_round_trips_per_call"] is not None, what
    assert fig["max_calls_in_progress"] >= 1, what
    assert fig["drained"], f"{what}: calls left in Asterisk after the segment"


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    log_path = tmp_path / "bench.log"
    code = _run_smoke(out, log_path)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-5000:]
    result = json.loads((out / "result.json").read_text())

    fixed = result["fixed"]
    for side in ("A", "B"):
        _check_side(fixed[side], f"fixed {side}")
    assert fixed["A"]["app_first_originate_ms"]["p50"] is not None
    assert fixed["ratios"]["time_to_agent_ms.p99"] is not None
    _check_side(result["concurrency"]["A"], "concurrency A")
    for side in ("A", "B"):
        steps = result["step"][side]["steps"]
        assert [s["rate_cps"] for s in steps] == [2.0, 4.0], (side, steps)
        assert result["step"][side]["highest_zero_failure_cps"] == 4.0, (side, steps)
    assert result["idle"]["window_s"] > 0
    table = (out / "result.md").read_text()
    assert "| time to agent p99 (ms) |" in table and "A/B" in table
    # results of Asterisk 16 and 22 sit side by side in RESULTS.md: each names its version
    assert f"Asterisk {result['machine']['asterisk']} " in table
    assert "### Step mode" in table


def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    log_path = tmp_path / "soak.log"
    args = ("--minutes", "0.25", "--segment", "5", "--rate", "2", "--agents", "4", "--hold", "1")
    code = _run_smoke(out, log_path, "benchmarks.soak", *args)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-5000:]
    result = json.loads((out / "soak.json").read_text())
    rows = result["segments"]
    assert len(rows) >= 2 and all(r["calls"] >= 1 and r["drained"] for r in rows), rows
    summary = result["summary"]
    assert summary["failed"] == 0 and summary["calls"] == sum(r["calls"] for r in rows)
    assert summary["app_rss_mb_end"] > 10 and summary["asterisk_rss_mb_end"] > 10
    assert "| app RSS growth (MB) |" in (out / "soak.md").read_text()
