"""Privacy: every internal agent state, fed through the panel API, comes out as one of three
exposed values, with no field beyond agent, name, presence and nothing about the call."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import SseReader, waiting_call

from ari_app.db.models import AgentActivity, AgentLogin, AgentState, CallStatus, TargetKind
from ari_app.domain.presence import InternalState, Presence, exposed_presence, internal_state
from ari_app.services import admin, calls
from ari_app.web.server import PanelServer

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
EXPOSED = {p.value for p in Presence}
FIELDS = {"agent", "name", "presence"}
CALLER = "+4930987654"
# Words that would reveal an internal state, a reason, the kind or direction of a call,
# the other party or where the agent sits.
FORBIDDEN_WORDS = (
    "paused",
    "pause",
    "wrapup",
    "wrap-up",
    "ringing",
    "logged_out",
    "idle",
    "busy",
    "reason",
    "direction",
    "inbound",
    "outbound",
    "internal",
    "external",
    "device",
    "target",
    "peer",
    "caller",
    "channel",
    "reserved",
    "mobile",
    "PJSIP",
    "+49",
    "0170",
)
ACTIVITIES = ("idle", "ringing", "on_call", "wrapup", "wrapup_over")


@pytest.fixture
async def panel(sessions: Sessions) -> AsyncIterator[PanelServer]:
    server = PanelServer(sessions, port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def seed_every_state(sessions: Sessions) -> dict[str, str]:
    """One agent per combination of login, pause, activity, device call and target kind.
    Returns agent number -> the presence colleagues must see."""
    expected: dict[str, str] = {}
    now = datetime.now(UTC)
    internal_seen: set[InternalState] = set()
    combos = itertools.product((True, False), (True, False), ACTIVITIES, (True, False), TargetKind)
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
        for i, (logged_in, paused, activity, busy, kind) in enumerate(combos):
            number = f"{2000 + i}"
            mobile = f"+4917{i:07d}"
            agent = await admin.create_agent(
                session,
                number,
                f"Colleague {i:02d}",
                device=f"PJSIP/{number}",
                external_numbers=[mobile],
            )
            await admin.add_member(session, hotline, agent)
            state = await session.get(AgentState, agent.id)
            assert state is not None
            if logged_in:
                session.add(AgentLogin(agent_id=agent.id, hotline_id=hotline.id))
                state.target = f"PJSIP/{number}" if kind is TargetKind.DEVICE else mobile
                state.target_kind = kind
            state.paused = paused
            state.device_busy = busy
            if activity == "wrapup_over":
                state.activity = AgentActivity.WRAPUP
                state.wrapup_until = now - timedelta(seconds=5)
                effective = "idle"
            else:
                state.activity = AgentActivity(activity)
                state.wrapup_until = now + timedelta(minutes=5)
                effective = activity
            if activity in ("ringing", "on_call"):
                call = await calls.open_call(
                    session,
                    channel_id=f"PJSIP/trunk-{i}",
                    dialled="500",
                    caller_number=CALLER,
                    hotline_id=hotline.id,
                    node="n",
                )
                await calls.mark(session, call.id, status=CallStatus.BRIDGED, agent_id=agent.id)
                state.reserved_call_id = call.id
                state.reserved_by_node = "n"
            flags = {"logged_in": logged_in, "paused": paused, "device_busy": busy}
            internal_seen.add(internal_state(activity=effective, **flags))
            expected[number] = exposed_presence(activity=effective, **flags).value
    assert internal_seen == set(InternalState), "every internal state is fed through"
    await waiting_call(sessions, hotline, caller=CALLER, waited_s=12)
    return expected


def assert_private(body: str) -> None:
    lowered = body.lower()
    for word in FORBIDDEN_WORDS:
        assert word.lower() not in lowered, f"{word!r} leaks: {body[:300]}"


def check_agents(payload: dict[str, object], expected: dict[str, str]) -> None:
    assert set(payload) == {"agents"}
    agents = payload["agents"]
    assert isinstance(agents, list) and len(agents) == len(expected)
    for record in agents:
        assert set(record) == FIELDS, record
        assert record["presence"] in EXPOSED
        assert record["presence"] == expected[record["agent"]], record


async def test_every_internal_state_leaves_as_one_of_three_values(
    sessions: Sessions, panel: PanelServer
) -> None:
    expected = await seed_every_state(sessions)
    assert set(expected.values()) == EXPOSED
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{panel.url}/api/presence") as resp:
            body = await resp.text()
        assert_private(body)
        check_agents(json.loads(body), expected)

        async with http.get(f"{panel.url}/api/hotlines") as resp:
            body = await resp.text()
        assert_private(body)
        [line] = json.loads(body)["hotlines"]
        assert line["waiting"] == 1 and line["longest_wait_s"] >= 12

        async with http.get(f"{panel.url}/api/presence/stream") as resp:
            reader = SseReader(resp)
            events = dict([await reader.next(3), await reader.next(3)])
        assert_private(json.dumps(events, ensure_ascii=False))
        check_agents(events["presence"], expected)

        for path in ("/", "/static/panel.js", "/metrics"):
            async with http.get(panel.url + path) as resp:
                body = await resp.text()
            for secret in (CALLER, "PJSIP/", "+4917"):
                assert secret not in body, (path, secret)
