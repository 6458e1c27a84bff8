"""The cluster benchmark's capacity projection (benchmarks/cluster.py `project`) and how its
section goes into RESULTS.md next to benchmarks/run.py's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.cluster import (
    SECTION_MARKER,
    PerCallCosts,
    kept_section,
    lock_ms_per_call,
    project,
    splice_section,
)


def test_a_node_carries_its_cores_over_its_cpu_per_call() -> None:
    p = project(PerCallCosts(asterisk_ms=40, app_ms=40, postgres_ms=5, kamailio_ms=0.5))
    assert p.per_node_cps == pytest.approx(25.0)  # 2000 ms of CPU per s / 80 ms per call
    assert p.postgres_core_cps == pytest.approx(200.0)
    assert p.kamailio_core_cps == pytest.approx(2000.0)
    rows = {r.nodes: r for r in p.rows}
    assert rows[4].cluster_cps == pytest.approx(100.0) and rows[4].limit == "nodes"
    assert rows[16].cluster_cps == pytest.approx(200.0) and rows[16].limit == "PostgreSQL"
    # 8 nodes carry exactly 200/s: PostgreSQL is outrun by the 9th
    assert (p.first_shared, p.saturates_at) == ("PostgreSQL", 9)


def test_each_nodes_idle_load_on_postgres_brings_its_saturation_closer() -> None:
    busy = PerCallCosts(
        asterisk_ms=40, app_ms=40, postgres_ms=5, kamailio_ms=0.5,
        postgres_idle_ms_per_s_per_node=50,
    )  # fmt: skip
    p = project(busy, nodes=(4,))
    assert p.rows[0].postgres_cps == pytest.approx((1000 - 4 * 50) / 5)
    # n x 25 > (1000 - 50 n) / 5 from n = 6 on (without the idle load: 9)
    assert p.saturates_at == 6


def test_kamailio_saturates_first_when_it_is_the_dearer_shared_component() -> None:
    p = project(PerCallCosts(asterisk_ms=10, app_ms=10, postgres_ms=1, kamailio_ms=2))
    assert p.first_shared == "Kamailio"
    assert p.saturates_at == 6  # 100/s per node, Kamailio 500/s


def test_free_components_never_saturate() -> None:
    p = project(PerCallCosts(asterisk_ms=10, app_ms=10, postgres_ms=0, kamailio_ms=0))
    assert p.first_shared == "none" and p.saturates_at is None
    assert math.isinf(p.rows[0].postgres_cps)


def test_the_cluster_section_replaces_its_old_self_and_keeps_the_rest(tmp_path: Path) -> None:
    single = "# Benchmark results\n\nthe single-node table\n"
    once = splice_section(single, "## Cluster\nfirst")
    assert once.startswith(single.rstrip("\n"))
    twice = splice_section(once, "## Cluster\nsecond")
    assert "first" not in twice and twice.count(SECTION_MARKER) == 1
    assert twice.endswith("## Cluster\nsecond\n")
    path = tmp_path / "RESULTS.md"
    path.write_text(twice)
    # benchmarks/run.py rewrites its part and appends what kept_section returns
    rewritten = "# Benchmark results\n\na new table\n" + kept_section(path)
    assert "a new table" in rewritten and rewritten.endswith("second\n")
    assert kept_section(tmp_path / "missing.md") == ""


def test_one_hotline_is_capped_by_how_long_its_lock_is_held() -> None:
    costs = PerCallCosts(asterisk_ms=40, app_ms=40, postgres_ms=5, kamailio_ms=0.5)
    assert math.isinf(project(costs).hotline_lock_cps)
    locked = PerCallCosts(
        asterisk_ms=40, app_ms=40, postgres_ms=5, kamailio_ms=0.5, hotline_lock_ms=2.0
    )
    p = project(locked)
    assert p.hotline_lock_cps == pytest.approx(500.0)
    assert p.rows == project(costs).rows  # a per-hotline ceiling, not the cluster's


def test_lock_time_counts_only_the_statements_that_take_the_hotline_lock() -> None:
    before = {1: (10, 50.0, "SELECT o_seq FROM hotline_enqueue($1)"), 2: (5, 5.0, "SELECT 1")}
    after = {
        1: (20, 80.0, "SELECT o_seq FROM hotline_enqueue($1)"),
        2: (50, 500.0, "SELECT 1"),
        3: (10, 20.0, "SELECT o_agent FROM hotline_reserve($1)"),
    }
    assert lock_ms_per_call(before, after, 10) == pytest.approx((30.0 + 20.0) / 10)
