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
from web_support import SseReader, connect_call, waiting_call

from ari_app.db.models import AgentActivity, AgentLogin, AgentState, CallStatus, TargetKind
from ari_app.domain.presence import InternalState, Presence, exposed_presence, internal_state
from ari_app.services import admin, agents, calls, routing
from ari_app.services.device_states import store_busy
from ari_app.services.status import hotline_status
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
expected_logged_in: set[str] = set()  # filled by seed_every_state: agents logged in to 500


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
    expected_logged_in.clear()
    now = datetime.now(UTC)
    internal_seen: set[InternalState] = set()
    combos = itertools.product(
        (True, False), (True, False), ACTIVITIES, (True, False), TargetKind, (False, True)
    )
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", wrapup_s=60)
        for i, (logged_in, paused, activity, busy, kind, after_call) in enumerate(combos):
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
            # a call on the device ended 3 s ago (within the hotline's 60 s wrap-up)
            state.device_idle_at = now - timedelta(seconds=3) if after_call else None
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
            expected[number] = exposed_presence(
                activity=effective, after_call=after_call and logged_in, **flags
            ).value
            if logged_in:
                expected_logged_in.add(number)
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
        # Issue 13, finding 8: the per-hotline figures come from the exposed values only.
        staffed = {n for n in expected_logged_in if expected[n] in ("available", "on_call")}
        assert line["logged_in"] == len(staffed)
        assert line["available"] == sum(expected[n] == "available" for n in expected_logged_in)

        async with http.get(f"{panel.url}/api/presence/stream") as resp:
            reader = SseReader(resp)
            events = dict([await reader.next(3), await reader.next(3)])
        assert_private(json.dumps(events, ensure_ascii=False))
        check_agents(events["presence"], expected)
        [streamed] = events["hotlines"]["hotlines"]
        assert (streamed["logged_in"], streamed["available"]) == (
            line["logged_in"],
            line["available"],
        )
        async with sessions() as session:
            [status] = await hotline_status(session, "500")
        assert status.logged_in == {
            "available": line["available"],
            "on_call": line["logged_in"] - line["available"],
        }

        for path in ("/", "/static/panel.js", "/metrics"):
            async with http.get(panel.url + path) as resp:
                body = await resp.text()
            for secret in (CALLER, "PJSIP/", "+4917"):
                assert secret not in body, (path, secret)


# --- issue 13, finding 8: absences look the same in every figure ---------------------------

WRAPUP_S = 30


async def _variant(sessions: Sessions, index: int, kind: str) -> None:
    """Hotline 60<index> whose one member (agent 70<index>) is in the state `kind`."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, f"60{index}", f"Line {index}", wrapup_s=WRAPUP_S
        )
        agent = await admin.create_agent(
            session, f"70{index}", f"Person {index}", device=f"PJSIP/70{index}"
        )
        await admin.add_member(session, hotline, agent)
        if kind != "logged out" and kind != "logged out after a private call":
            await agents.login(session, agent, target=None, path="cli", actor="t")
    if kind == "paused":
        async with sessions() as session, session.begin():
            await agents.set_paused(
                session, agent, True, path="cli", actor="t", enforce_staffing=False
            )
    if kind == "wrap-up after a hotline call":
        call_id = await waiting_call(sessions, hotline, caller=CALLER)
        await connect_call(sessions, hotline, call_id)
        async with sessions() as session, session.begin():
            await store_busy(session, {agent.id: True}, "test")  # the desk phone is in the call
        async with sessions() as session, session.begin():
            await routing.agent_finished(
                session,
                agent_id=agent.id,
                call_id=call_id,
                wrapup_s=WRAPUP_S,
                now=datetime.now(UTC),
            )
            await calls.mark(session, call_id, status=CallStatus.ENDED)
            await store_busy(session, {agent.id: False}, "test")
    if kind in ("right after a private call", "logged out after a private call"):
        async with sessions() as session, session.begin():
            await store_busy(session, {agent.id: True}, "test")
        async with sessions() as session, session.begin():
            await store_busy(session, {agent.id: False}, "test")


def _without_names(payload: dict[str, object], *names: str) -> str:
    return json.dumps({k: v for k, v in payload.items() if k not in names}, sort_keys=True)


async def test_pause_wrapup_private_call_and_logout_look_the_same_everywhere(
    sessions: Sessions, panel: PanelServer
) -> None:
    """Wrap-up after a hotline call, a private call that just ended, a pause and a logout:
    the agent's record, the hotline's figures (API, event stream, `hotline status`) are
    the same. Before the fix the "logged in" figure kept wrap-up and dropped pause, and a
    private call ended straight into "available"."""
    kinds = (
        "logged out",
        "paused",
        "wrap-up after a hotline call",
        "right after a private call",
        "logged out after a private call",
    )
    for index, kind in enumerate(kinds):
        await _variant(sessions, index, kind)
    await _variant(sessions, 9, "available")  # the control: this one differs
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{panel.url}/api/presence") as resp:
            presence = {a["agent"]: a for a in (await resp.json())["agents"]}
        async with http.get(f"{panel.url}/api/hotlines") as resp:
            lines = {h["number"]: h for h in (await resp.json())["hotlines"]}
        async with http.get(f"{panel.url}/api/presence/stream") as resp:
            reader = SseReader(resp)
            events = dict([await reader.next(3), await reader.next(3)])
    streamed_presence = {a["agent"]: a for a in events["presence"]["agents"]}
    streamed_lines = {h["number"]: h for h in events["hotlines"]["hotlines"]}
    async with sessions() as session:
        statuses = {s.number: s.as_dict() for s in await hotline_status(session)}
    # service_level_s etc. are equal settings; offered/answered today differ for the line
    # that really had a call, which is a fact about the hotline, not about the agent.
    per_call = ("number", "name", "offered_today", "answered_in_time_today", "service_level")
    views = []
    for index, kind in enumerate(kinds):
        views.append(
            (
                kind,
                _without_names(presence[f"70{index}"], "agent", "name"),
                _without_names(lines[f"60{index}"], *per_call),
                _without_names(streamed_presence[f"70{index}"], "agent", "name"),
                _without_names(streamed_lines[f"60{index}"], *per_call),
                _without_names(statuses[f"60{index}"], "hotline", "name"),
            )
        )
    first = views[0][1:]
    for kind, *view in views:
        assert tuple(view) == first, kind
    assert presence["700"]["presence"] == "unavailable"
    assert lines["600"]["logged_in"] == 0
    control = (
        _without_names(presence["709"], "agent", "name"),
        _without_names(lines["609"], *per_call),
    )
    assert control != first[:2], "the comparison can tell a difference"
