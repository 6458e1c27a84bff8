"""Team panel JSON and SSE API, hotline aggregates and /healthz against a real Postgres."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import (
    SseReader,
    connect_call,
    finish_call,
    presence_of,
    seed_team,
    set_paused,
    set_state,
    waiting_call,
)

from ari_app.db.models import AgentActivity, Call, CallEvent, CallStatus, Outcome
from ari_app.services import admin
from ari_app.services.hotline_stats import hotline_stats
from ari_app.web.server import PanelServer

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def panel(sessions: Sessions) -> AsyncIterator[PanelServer]:
    server = PanelServer(sessions, port=0, ari_connected=lambda: True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Cache-Control"] == "no-store"
        data: dict[str, object] = await resp.json()
        return data


async def test_presence_json_lists_every_agent_with_exposed_presence(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    team = await seed_team(sessions)
    data = await get_json(http, f"{panel.url}/api/presence")
    assert data == {
        "agents": [
            {"agent": "1001", "name": "Anna Adler", "presence": "available"},
            {"agent": "1002", "name": "Ben Brandt", "presence": "available"},
            {"agent": "1003", "name": "Clara Christ", "presence": "unavailable"},
        ]
    }
    call = await waiting_call(sessions, team.hotline)
    on_call = await connect_call(sessions, team.hotline, call)
    await set_paused(sessions, "1002" if on_call == team.agent_ids["1001"] else "1001", True)
    # Logged out but the desk phone is in a (private) call: on a call, like any call.
    await set_state(sessions, team.agent_ids["1003"], device_busy=True)
    data = await get_json(http, f"{panel.url}/api/presence")
    presences = {a["agent"]: a["presence"] for a in data["agents"]}  # type: ignore[attr-defined]
    assert sorted(presences.values()) == ["on_call", "on_call", "unavailable"]


async def test_hotlines_json_counts_staffing_and_queue(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    team = await seed_team(sessions)
    await waiting_call(sessions, team.hotline, waited_s=42)
    await waiting_call(sessions, team.hotline, waited_s=5)
    await set_paused(sessions, "1002", True)
    data = await get_json(http, f"{panel.url}/api/hotlines")
    [line] = data["hotlines"]  # type: ignore[misc]
    assert line["number"] == "500" and line["name"] == "Bürgerbüro"
    assert line["logged_in"] == 1, "paused agents are not counted (pause = logout to others)"
    assert line["available"] == 1
    assert line["waiting"] == 2
    assert 42 <= line["longest_wait_s"] <= 45
    assert line["service_level_s"] == 20
    assert line["service_level"] is None and line["offered_today"] == 0


async def test_service_level_today_counts_offered_calls_in_the_hotline_day(
    sessions: Sessions,
) -> None:
    team = await seed_team(sessions)
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime.now(berlin).replace(hour=12, minute=0, second=0, microsecond=0)
    midnight = now.replace(hour=0)

    async def call(
        entered: datetime,
        *,
        queued: bool = True,
        answered_after: float | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        async with sessions() as session, session.begin():
            row = Call(
                hotline_id=team.hotline.id,
                dialled_number="500",
                channel_id=f"c{entered.timestamp()}{answered_after}{outcome}",
                node="t",
                caller_number="+4930111",
                entered_at=entered,
                status=CallStatus.ENDED if outcome else CallStatus.BRIDGED,
                answered_at=entered + timedelta(seconds=answered_after)
                if answered_after is not None
                else None,
                outcome=outcome,
            )
            session.add(row)
            await session.flush()
            if queued:
                session.add(CallEvent(call_id=row.id, event="ENTERQUEUE"))

    base = now - timedelta(hours=1)
    await call(base, answered_after=5)  # in time, still talking
    await call(base, answered_after=20, outcome=Outcome.ANSWERED)  # exactly the threshold
    await call(base, answered_after=40, outcome=Outcome.ANSWERED)  # too late
    await call(base, outcome=Outcome.ABANDONED)
    await call(base, outcome=Outcome.VOICEMAIL)  # timed out into voicemail
    await call(base, queued=False, outcome=Outcome.VOICEMAIL)  # closed: never offered
    await call(base, queued=False, outcome=Outcome.NO_AGENTS)
    await call(midnight - timedelta(minutes=1), answered_after=1, outcome=Outcome.ANSWERED)
    await call(midnight + timedelta(minutes=1), answered_after=1, outcome=Outcome.ANSWERED)
    async with sessions() as session:
        [stats] = await hotline_stats(session, now.astimezone(UTC))
    assert (stats.offered_today, stats.answered_in_time_today) == (6, 3)
    assert stats.service_level == pytest.approx(0.5)
    assert stats.as_dict()["service_level"] == 0.5


async def test_service_level_day_follows_the_hotline_time_zone(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "600", "Tokyo desk", timezone="Asia/Tokyo")
        entered = datetime(2024, 6, 1, 23, 30, tzinfo=UTC)  # 08:30 on June 2nd in Tokyo
        row = Call(
            hotline_id=hotline.id,
            dialled_number="600",
            channel_id="tz",
            node="t",
            entered_at=entered,
            answered_at=entered + timedelta(seconds=3),
            status=CallStatus.ENDED,
            outcome=Outcome.ANSWERED,
        )
        session.add(row)
    async with sessions() as session:
        [tokyo_morning] = await hotline_stats(session, datetime(2024, 6, 2, 1, 0, tzinfo=UTC))
        [utc_next_day] = await hotline_stats(session, datetime(2024, 6, 2, 16, 0, tzinfo=UTC))
    assert tokyo_morning.offered_today == 1
    assert utc_next_day.offered_today == 0, "16:00 UTC is already June 3rd in Tokyo"


async def test_sse_sends_snapshot_then_changes_within_a_second(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    team = await seed_team(sessions)
    async with http.get(f"{panel.url}/api/presence/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert "Access-Control-Allow-Origin" not in resp.headers
        reader = SseReader(resp)
        first, _ = await reader.wait_for("presence", lambda d: True, timeout=2)
        assert presence_of(first, "1001") == "available"
        hotlines, _ = await reader.wait_for("hotlines", lambda d: True, timeout=2)
        assert hotlines["hotlines"][0]["waiting"] == 0
        assert reader.retry_ms == 1000, "browsers reconnect a second after a restart"

        # Changed through the services and announced: pushed at once.
        call = await waiting_call(sessions, team.hotline)
        agent_id = await connect_call(sessions, team.hotline, call)
        number = next(n for n, i in team.agent_ids.items() if i == agent_id)
        panel.hub.notify()
        _, took = await reader.wait_for(
            "presence", lambda d: presence_of(d, number) == "on_call", timeout=1.0
        )
        assert took < 1.0

        # Changed behind our back (another node, a CLI): the tick finds it within a second.
        await finish_call(sessions, agent_id, call)
        await reader.wait_for(
            "presence", lambda d: presence_of(d, number) == "available", timeout=1.0
        )
        wrapup_until = datetime.now(UTC) + timedelta(seconds=1)
        await set_state(
            sessions,
            team.agent_ids["1002"],
            activity=AgentActivity.WRAPUP,
            wrapup_until=wrapup_until,
        )
        await reader.wait_for(
            "presence", lambda d: presence_of(d, "1002") == "unavailable", timeout=1.0
        )
        # Wrap-up over: available again even before any sweep resets the row.
        await reader.wait_for(
            "presence", lambda d: presence_of(d, "1002") == "available", timeout=2.0
        )
        await waiting_call(sessions, team.hotline)
        await reader.wait_for("hotlines", lambda d: d["hotlines"][0]["waiting"] == 1, timeout=1.0)


async def test_sse_sends_only_what_changed(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    await seed_team(sessions)
    async with http.get(f"{panel.url}/api/presence/stream") as resp:
        reader = SseReader(resp)
        seen = {(await reader.next(2))[0], (await reader.next(2))[0]}
        assert seen == {"presence", "hotlines"}
        panel.hub.notify()
        with pytest.raises(TimeoutError):
            await reader.next(1.2)  # nothing changed: no event, however many ticks


async def test_streams_end_when_the_server_stops(sessions: Sessions) -> None:
    await seed_team(sessions)
    server = PanelServer(sessions, port=0)
    await server.start()
    stopped = False
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/api/presence/stream") as resp,
        ):
            reader = SseReader(resp)
            await reader.wait_for("presence", lambda d: True, timeout=2)
            start = time.monotonic()
            await server.stop()
            stopped = True
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                while True:
                    await reader.next(3)
            assert time.monotonic() - start < 3
    finally:
        if not stopped:
            await server.stop()


async def test_healthz_needs_ari_and_database(sessions: Sessions) -> None:
    ari_up = True
    db_up = True

    async def ping() -> bool:
        return db_up

    server = PanelServer(sessions, port=0, ari_connected=lambda: ari_up, db_ping=ping)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:

            async def health() -> tuple[int, dict[str, object]]:
                async with http.get(f"{server.url}/healthz") as resp:
                    return resp.status, await resp.json()

            assert await health() == (200, {"status": "ok", "ari": True, "db": True})
            ari_up = False
            assert await health() == (503, {"status": "unavailable", "ari": False, "db": True})
            ari_up, db_up = True, False
            assert await health() == (503, {"status": "unavailable", "ari": True, "db": False})
    finally:
        await server.stop()


async def test_healthz_default_ping_reaches_postgres(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{panel.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "ari": True, "db": True}


async def test_api_answers_503_without_database(http: aiohttp.ClientSession) -> None:
    from ari_app.db.session import make_engine, make_sessionmaker

    engine = make_engine("postgresql://nobody@127.0.0.1:1/none", connect_args={"timeout": 1})
    server = PanelServer(make_sessionmaker(engine), port=0, ari_connected=lambda: True)
    await server.start()
    try:
        for path in ("/api/presence", "/api/hotlines", "/healthz"):
            async with http.get(f"{server.url}{path}") as resp:
                assert resp.status == 503, path
        async with http.get(f"{server.url}/metrics") as resp:
            assert resp.status == 200
            assert "hotline_db_up 0.0" in await resp.text()
    finally:
        await server.stop()
        await engine.dispose()


async def test_page_is_self_contained(panel: PanelServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{panel.url}/") as resp:
        assert resp.status == 200
        html = await resp.text()
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "://" not in html, "no CDN, no other origin: works offline"
    for asset in ("static/panel.js", "static/panel.css"):
        assert asset in html
        async with http.get(f"{panel.url}/{asset}") as resp:
            assert resp.status == 200
            assert "://" not in await resp.text(), asset


async def test_charts_json_has_24_hours_and_checks_its_parameters(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    await seed_team(sessions)
    data = await get_json(http, f"{panel.url}/api/charts?day=2026-11-02")
    assert data["day"] == "2026-11-02"
    hours = data["hours"]
    assert isinstance(hours, list) and [h["hour"] for h in hours] == list(range(24))
    assert hours[0] == {
        "hour": 0, "answered": 0, "abandoned": 0, "voicemail": 0, "offered": 0,
        "answered_in_time": 0, "service_level_pct": None,
    }  # fmt: skip
    async with http.get(f"{panel.url}/api/charts?day=2. November") as resp:
        assert resp.status == 400
    async with http.get(f"{panel.url}/api/charts?hotline=999") as resp:
        assert resp.status == 404


async def test_api_errors_carry_the_domain_errors_code(
    sessions: Sessions, panel: PanelServer, http: aiohttp.ClientSession
) -> None:
    """Error bodies name the stable code of the domain error (domain/errors.py), as the
    CLI's --json errors do; the status comes from the web edge's one table."""
    await seed_team(sessions)
    async with http.get(f"{panel.url}/api/charts?day=2. November") as resp:
        assert (resp.status, await resp.json()) == (
            400,
            {"error": "day must be YYYY-MM-DD", "code": "invalid"},
        )
    async with http.get(f"{panel.url}/api/charts?hotline=999") as resp:
        assert (resp.status, await resp.json()) == (
            404,
            {"error": "no hotline with number 999", "code": "not_found"},
        )
