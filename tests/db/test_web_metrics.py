"""/metrics parsed with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import connect_call, seed_team, waiting_call

from ari_app.web.metrics import Metrics
from ari_app.web.server import PanelServer

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def panel(sessions: Sessions) -> AsyncIterator[PanelServer]:
    server = PanelServer(sessions, port=0, metrics=Metrics(CollectorRegistry()))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def scrape(server: PanelServer) -> Samples:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_when_a_call_is_recorded(
    sessions: Sessions, panel: PanelServer
) -> None:
    await seed_team(sessions)
    before = await scrape(panel)
    assert value(before, "hotline_calls_total", hotline="500", outcome="answered") == 0
    panel.metrics.call_ended("500", "answered", 12.5)
    panel.metrics.call_ended("500", "abandoned", 65.0)
    panel.metrics.call_ended("500", "closed")  # never queued: no wait observed
    after = await scrape(panel)
    assert value(after, "hotline_calls_total", hotline="500", outcome="answered") == 1
    assert value(after, "hotline_calls_total", hotline="500", outcome="abandoned") == 1
    assert value(after, "hotline_calls_total", hotline="500", outcome="closed") == 1
    assert value(after, "hotline_wait_seconds_count", hotline="500") == 2
    assert value(after, "hotline_wait_seconds_sum", hotline="500") == 77.5
    assert value(after, "hotline_wait_seconds_bucket", hotline="500", le="20.0") == 1
    assert value(after, "hotline_wait_seconds_bucket", hotline="500", le="+Inf") == 2


async def test_gauges_follow_the_database(sessions: Sessions, panel: PanelServer) -> None:
    team = await seed_team(sessions)
    samples = await scrape(panel)
    assert value(samples, "hotline_agents", presence="available") == 2
    assert value(samples, "hotline_agents", presence="on_call") == 0
    assert value(samples, "hotline_agents", presence="unavailable") == 1
    assert value(samples, "hotline_queue_length", hotline="500") == 0
    assert value(samples, "hotline_agents_logged_in", hotline="500") == 2
    assert value(samples, "hotline_db_up") == 1

    first = await waiting_call(sessions, team.hotline, waited_s=30)
    await waiting_call(sessions, team.hotline)
    await connect_call(sessions, team.hotline, first)
    samples = await scrape(panel)
    assert value(samples, "hotline_queue_length", hotline="500") == 1
    assert value(samples, "hotline_agents", presence="on_call") == 1
    assert value(samples, "hotline_agents", presence="available") == 1
    assert value(samples, "hotline_service_level_ratio", hotline="500") == 0.0  # 30 s > 20 s


async def test_ari_state_and_reconnects(panel: PanelServer) -> None:
    samples = await scrape(panel)
    assert value(samples, "hotline_ari_connected") == 0, "not bound yet: not connected"
    stream = {"connected": True, "reconnects": 0}
    panel.metrics.bind_ari(
        connected=lambda: bool(stream["connected"]), reconnects=lambda: int(stream["reconnects"])
    )
    samples = await scrape(panel)
    assert value(samples, "hotline_ari_connected") == 1
    assert value(samples, "hotline_ari_reconnects_total") == 0
    stream.update(connected=False, reconnects=3)
    samples = await scrape(panel)
    assert value(samples, "hotline_ari_connected") == 0
    assert value(samples, "hotline_ari_reconnects_total") == 3


async def test_event_loop_lag_is_measured() -> None:
    metrics = Metrics(CollectorRegistry())
    task = asyncio.create_task(metrics.monitor_loop_lag(interval_s=0.05))
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # noqa: ASYNC251 (blocks the loop on purpose, like a slow sync call)
        deadline = time.monotonic() + 2
        while (metrics.registry.get_sample_value("hotline_event_loop_lag_seconds") or 0) < 0.2:
            assert time.monotonic() < deadline, "lag not measured"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # later samples: the last one is small again, the peak stays
        assert (metrics.registry.get_sample_value("hotline_event_loop_lag_seconds") or 0) < 0.2
        assert (metrics.registry.get_sample_value("hotline_event_loop_lag_max_seconds") or 0) >= 0.2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    families = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    assert {"hotline_event_loop_lag_seconds", "hotline_event_loop_lag_max_seconds"} <= families


def test_registries_are_isolated() -> None:
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.call_ended("500", "answered", 1.0)
    assert (
        b.registry.get_sample_value(
            "hotline_calls_total", {"hotline": "500", "outcome": "answered"}
        )
        is None
    )
    assert (
        a.registry.get_sample_value(
            "hotline_calls_total", {"hotline": "500", "outcome": "answered"}
        )
        == 1.0
    )
