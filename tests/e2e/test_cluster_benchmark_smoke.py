"""The cluster benchmark still runs: `python -m benchmarks.cluster --smoke` (Kamailio, two
Asterisk nodes, two apps, one Postgres; a few calls per phase). Speeds are not asserted;
only that every component's figure is there, Kamailio spread the calls and none failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_benchmark_smoke import _run_smoke

pytestmark = pytest.mark.e2e


def test_cluster_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    log_path = tmp_path / "bench.log"
    code = _run_smoke(out, log_path, "benchmarks.cluster", "--smoke")
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-5000:]
    result = json.loads((out / "result.json").read_text())

    fixed = result["fixed"]
    calls = fixed["calls"]
    assert calls["attempted"] == calls["planned"] and calls["failed"] == 0, calls
    assert all(n > 0 for n in fixed["routed"].values()), fixed["routed"]
    assert set(fixed["cpu_ms_per_call"]) == {
        "kamailio",
        "asterisk_all_nodes",
        "app_all_nodes",
        "postgres",
    }
    assert all(v is not None for v in fixed["cpu_ms_per_call"].values()), fixed
    for name in ("node1", "node2"):
        node = fixed["nodes"][name]
        assert node["asterisk_cpu_ms_per_own_call"] is not None, node
        assert node["ari_requests_per_own_call"] is not None, node
    # Net of an idle baseline of 2 s: with 10 calls a noisy baseline may leave 0.
    assert fixed["db_statements_per_call"] is not None, fixed
    assert result["step"]["highest_zero_failure_cps"] == 4.0, result["step"]
    projection = result["projection"]
    assert [r["nodes"] for r in projection["rows"]][:2] == [1, 2]
    assert "Capacity projection" in (out / "result.md").read_text()
