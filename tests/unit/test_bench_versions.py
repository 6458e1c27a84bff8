"""benchmarks/versions.py: the Asterisk 22 vs 16 section of RESULTS.md."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cluster import SECTION_MARKER, splice_section
from benchmarks.cluster import kept_section as kept_cluster
from benchmarks.versions import END, START, kept_section, section, splice


def _side(p99: float) -> dict[str, Any]:
    return {
        "rate_cps": 10.0,
        "agents": 20,
        "duration_s": 60.0,
        "calls": {"attempted": 600, "successful": 600, "failed": 0},
        "time_to_agent_ms": {"p50": 10.0, "p95": 20.0, "p99": p99},
        "max_calls_in_progress": 14,
        "app_peak_rss_mb": 90.0,
        "max_event_loop_lag_ms": 50.0,
    }


def _result(version: str, p99: float) -> dict[str, Any]:
    return {
        "started": "2026-12-04T23:00:00+00:00",
        "command": ".venv/bin/python -m benchmarks.run",
        "machine": {"asterisk": version, "loadavg": "1.0 1.0 1.0", "cpus": 2},
        "config": {"full_run": True, "step_duration_s": 10.0, "step_agents": 150},
        "runtime_s": 390.0,
        "loadavg_1m_max": 12.0,
        "fixed": {"A": _side(p99), "B": _side(10.0)},
        "step": {
            "A": {"highest_zero_failure_cps": 30.0},
            "B": {"highest_zero_failure_cps": 50.0},
        },
        "concurrency": {"A": _side(p99)},
    }


def test_the_section_puts_both_versions_side_by_side() -> None:
    text = section(_result("16.28.0~dfsg", 40.0), _result("22.10.1+dfsg", 20.0))
    assert text.startswith("## Asterisk 22 vs 16\n")
    assert "Asterisk 16.28.0~dfsg: run" in text and "Asterisk 22.10.1+dfsg: run" in text
    assert "| figure | A on 16 | A on 22 | A 22/16 | B on 16 | B on 22 | B 22/16 |" in text
    assert "| time to agent p99 (ms) | 40 | 20 | 0.50 | 10 | 10 | 1 |" in text
    assert "| A: app hotline | 30 | 30 |" in text
    assert "full runs" in text


def test_runs_with_other_options_are_refused_and_short_runs_labelled() -> None:
    old, new = _result("16.28.0", 40.0), _result("22.10.1", 20.0)
    other = copy.deepcopy(new)
    other["config"]["step_agents"] = 10
    with pytest.raises(ValueError):
        section(old, other)
    for run in (old, new):
        run["config"]["full_run"] = False
    assert "shorter runs than the full benchmark" in section(old, new)


def test_splice_replaces_its_section_and_survives_both_rewriters(tmp_path: Path) -> None:
    base = "# Benchmark results\n\nthe latest table\n"
    with_cluster = splice_section(base, "## Cluster\nnodes")
    once = splice(with_cluster, "## Asterisk 22 vs 16\nfirst")
    assert once.index(START) < once.index(SECTION_MARKER)  # before the cluster's section
    twice = splice(once, "## Asterisk 22 vs 16\nsecond")
    assert "first" not in twice and twice.count(START) == 1 and twice.count(END) == 1
    assert twice.endswith("## Cluster\nnodes\n")
    # the cluster benchmark rewrites its section only
    assert "second" in splice_section(twice, "## Cluster\nmore nodes")
    # benchmarks/run.py rewrites the head and appends both kept sections
    path = tmp_path / "RESULTS.md"
    path.write_text(twice)
    rewritten = "# Benchmark results\n\na new table\n" + kept_section(path) + kept_cluster(path)
    assert "a new table" in rewritten and "second" in rewritten and "nodes" in rewritten
    assert kept_section(tmp_path / "missing.md") == ""
    assert splice("", "## x") == f"\n\n{START}\n## x\n{END}\n"
