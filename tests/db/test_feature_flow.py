"""The feature-code flow with the fake ARI and the real Postgres: what the caller hears,
what is written (state + audit), identity by device, hot-desking, lockout, voicemail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_fakes import FakeAriClient
from phone_support import PIN, Caller, Sessions, audit_rows, phone_world, seed
from sqlalchemy import select

from ari_app.db.models import AgentLogin, AgentState, Call, CallStatus, TargetKind, Voicemail
from ari_app.dispatch import Dispatcher
from ari_app.flows import prompts
from ari_app.flows.base import Timer
from ari_app.flows.handover import HandoverAction, HandoverOutcome, HandoverResult
from ari_app.services import admin, agents

pytestmark = pytest.mark.db
HOTDESK = "PJSIP/1003-0000000a"


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    async with phone_world(sessions) as w:
        yield w


async def _logins(sessions: Sessions) -> set[tuple[int, int]]:
    async with sessions() as session:
        rows = await session.execute(select(AgentLogin.agent_id, AgentLogin.hotline_id))
        return {(a, h) for a, h in rows}


async def _state(sessions: Sessions, agent_id: int = 1) -> AgentState:
    async with sessions() as session:
        state = await session.get(AgentState, agent_id)
    assert state is not None
    return state


async def _login_cli(sessions: Sessions, number: str = "101") -> None:
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, number)
        await agents.login(session, agent, target=None, path="cli", actor="t")


async def test_login_logout_from_the_bound_device(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*21")
    assert await caller.heard() == ["sound:agent-loginok"]
    await caller.done()
    assert ari.called("answer")
    assert await _logins(sessions) == {(1, 1)}
    state = await _state(sessions)
    assert (state.target, state.target_kind) == ("PJSIP/1001", TargetKind.DEVICE)

    caller = Caller(ari, dispatcher, channel_id="c2")
    caller.seen = 1
    caller.start("feature", "*22500")
    assert await caller.heard() == ["sound:agent-loggedoff"]
    await caller.done()
    assert await _logins(sessions) == set()
    rows = await audit_rows(sessions)
    assert [(r.action, r.path, r.actor, r.agent_id, r.hotline_id) for r in rows] == [
        ("login", "device", "agent:101", 1, 1),
        ("logout", "device", "agent:101", 1, 1),
    ]


async def test_not_a_member_and_unknown_code_are_told(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*21777")
    assert await caller.heard() == ["sound:cannot-complete-as-dialed"]
    await caller.done()
    other = Caller(ari, dispatcher, channel_id="c2")
    other.seen = 1
    other.start("feature", "*2")
    assert await other.heard() == ["sound:cannot-complete-as-dialed"]
    await other.done()
    assert await _logins(sessions) == set()


async def test_pause_toggles_without_a_reason(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*23")
    assert await caller.heard() == ["sound:agent-loggedoff"]  # not logged in: no change
    await _login_cli(sessions)
    for n, (expected, paused) in enumerate(
        [
            (["sound:do-not-disturb", "sound:activated"], True),
            (["sound:do-not-disturb", "sound:de-activated"], False),
        ],
        start=2,
    ):
        caller = Caller(ari, dispatcher, channel_id=f"c{n}")
        caller.seen = n - 1
        caller.start("feature", "*23")
        assert await caller.heard() == expected
        await caller.done()
        assert (await _state(sessions)).paused is paused
    actions = [(r.action, r.path, r.detail) for r in await audit_rows(sessions)]
    assert actions[-2:] == [("pause", "device", {}), ("unpause", "device", {})]


async def test_status_by_voice(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    await _login_cli(sessions, "102")
    async with sessions() as session, session.begin():
        session.add(
            Call(
                hotline_id=1,
                dialled_number="500",
                channel_id="w",
                node="n",
                status=CallStatus.WAITING,
            )
        )
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*24500")
    media = await caller.heard()
    await caller.done()
    assert media == [
        "sound:agent-loggedoff",  # I am not logged in
        "sound:queue-thereare",
        "number:1",
        "sound:agent-loginok",  # one agent is
        "sound:queue-thereare",
        "number:1",
        "sound:queue-callswaiting",  # one caller waits
    ]
    assert [(r.action, r.hotline_id) for r in await audit_rows(sessions)][-1] == ("status", 1)


async def test_hotdesk_login_makes_the_phone_the_target(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*21")
    assert await caller.heard(finish=False) == ["sound:agent-user"]
    caller.press("10")  # barge-in: the prompt stops
    await ari.wait_command("stop_playback")
    caller.press("1#")
    assert await caller.heard() == ["sound:agent-pass"]
    caller.press(PIN + "#")
    assert await caller.heard() == ["sound:agent-loginok"]
    await caller.done()
    state = await _state(sessions)
    assert (state.target, state.target_kind) == ("PJSIP/1003", TargetKind.DEVICE)
    rows = await audit_rows(sessions)
    assert [(r.action, r.path) for r in rows] == [("login", "hotdesk")]
    assert PIN not in repr([(r.actor, r.detail) for r in rows])


async def test_keys_typed_in_one_go_are_not_lost(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*22")
    await caller.heard(finish=False)  # agent-user
    caller.press(f"101#{PIN}#")
    assert await caller.heard(finish=False) == ["sound:agent-pass"]  # stopped by the PIN
    assert await caller.heard() == ["sound:agent-loggedoff"]
    await caller.done()
    assert len(ari.called("stop_playback")) == 2


async def test_three_wrong_pins_lock_agent_and_phone(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*21")
    assert await caller.heard() == ["sound:agent-user"]
    caller.press("101#111112#")
    assert await caller.heard() == ["sound:agent-pass"]
    assert await caller.heard() == ["sound:agent-incorrect"]
    caller.press("101#222223#")
    assert await caller.heard() == ["sound:agent-pass"]
    assert await caller.heard() == ["sound:agent-incorrect"]
    caller.press("101#333334#")
    assert await caller.heard() == ["sound:agent-pass"]
    assert await caller.heard() == list(prompts.REFUSED_LOGIN)
    await caller.done()
    # the right PIN is refused now, from this phone and for this agent
    again = Caller(ari, dispatcher, channel_id="c2", name=HOTDESK, number="1003")
    again.seen = caller.seen
    again.start("feature", "*21")
    await again.heard()
    again.press(f"101#{PIN}#")
    await again.heard()
    assert await again.heard() == list(prompts.REFUSED_LOGIN)
    await again.done()
    assert await _logins(sessions) == set()
    actions = [(r.action, r.detail.get("subject")) for r in await audit_rows(sessions)]
    assert ("lockout", "agent:101") in actions and ("lockout", "device:PJSIP/1003") in actions
    assert actions[-1] == ("pin_refused_locked", None)


async def test_wrong_input_gets_one_retry_then_goodbye(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*21")
    await caller.heard()
    caller.press("#")  # no digits
    assert await caller.heard() == ["sound:please-try-again", "sound:agent-user"]
    caller.press("12345678901234#")  # too many digits
    assert await caller.heard() == ["sound:goodbye"]
    await caller.done()
    assert await audit_rows(sessions) == []


async def test_a_pause_ends_the_entry_and_silence_gets_a_retry(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await seed(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*21")
    await caller.heard()
    flow = dispatcher.owner("c1")
    assert flow is not None
    caller.press("101")
    flow.deliver(Timer("entry"))  # the caller stopped typing: "101" without "#" counts
    assert await caller.heard() == ["sound:agent-pass"]
    flow.deliver(Timer("entry"))  # nothing typed at all
    assert await caller.heard() == ["sound:please-try-again", "sound:agent-pass"]
    flow.deliver(Timer("entry"))
    assert await caller.heard() == ["sound:goodbye"]
    await caller.done()


async def test_staffing_refusal_hands_over(
    sessions: Sessions, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ari, dispatcher = world
    await seed(sessions, min_agents=1)
    await _login_cli(sessions)
    calls: list[tuple[Any, ...]] = []

    async def fake_handover(flow: Any, agent_id: int, hotline_ids: list[int], **kw: Any) -> Any:
        calls.append((flow.channel_id, agent_id, hotline_ids, kw))
        return HandoverResult(HandoverOutcome.NOBODY)

    monkeypatch.setattr(prompts, "start_handover", fake_handover)
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*22")
    assert await caller.heard() == HandoverResult(HandoverOutcome.NOBODY).requester_media
    await caller.done()
    assert calls == [("c1", 1, [1], {"action": HandoverAction.LOGOUT, "path": "device"})]
    assert await _logins(sessions) == {(1, 1)}  # the fake took over nothing


async def _voicemail(sessions: Sessions, n: int = 2) -> None:
    async with sessions() as session, session.begin():
        for i in range(n):
            session.add(
                Voicemail(
                    hotline_id=1,
                    caller_number=f"03012{i}",
                    duration_s=5,
                    recording_name=f"hotline-vm-{i}",
                )
            )
            await session.flush()


async def test_voicemail_newest_first_mark_done_and_delete(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    await _voicemail(sessions)
    caller = Caller(ari, dispatcher)
    caller.start("feature", "*98500")
    assert await caller.heard() == ["sound:agent-pass"]  # own device: PIN only
    caller.press(PIN + "#")
    first = await caller.heard(finish=False)
    assert first[:3] == ["sound:vm-youhave", "number:2", "sound:vm-messages"]
    assert first[3:5] == ["sound:vm-message", "number:1"]
    assert "digits:030121" in first and "recording:hotline-vm-1" in first  # newest first
    caller.press("9")  # mark done (barge-in)
    second = await caller.heard(finish=False)
    assert second[0] == "sound:vm-msgsaved" and "recording:hotline-vm-0" in second
    caller.press("7")  # delete
    assert await caller.heard() == ["sound:vm-deleted", "sound:vm-nomore"]
    assert await caller.heard() == ["sound:goodbye"]
    await caller.done()
    async with sessions() as session:
        rows = list(await session.scalars(select(Voicemail)))
    assert [(v.recording_name, v.heard_by_agent_id) for v in rows] == [("hotline-vm-1", 1)]
    assert rows[0].done_at is not None and rows[0].heard_at is not None
    assert [c.args[0] for c in ari.called("delete_stored_recording")] == ["hotline-vm-0"]
    actions = [(r.action, r.detail.get("voicemail_id")) for r in await audit_rows(sessions)]
    assert actions == [
        ("voicemail_heard", 2),
        ("voicemail_done", 2),
        ("voicemail_heard", 1),
        ("voicemail_deleted", 1),
    ]


async def test_voicemail_keys_replay_next_and_leave(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await seed(sessions)
    await _voicemail(sessions)
    caller = Caller(ari, dispatcher, name=HOTDESK, number="1003")
    caller.start("feature", "*98500")
    assert await caller.heard() == ["sound:agent-user"]  # hot-desk: agent number + PIN
    caller.press(f"101#{PIN}#")
    await caller.heard(finish=False)  # agent-pass, cut short by the PIN
    assert "recording:hotline-vm-1" in await caller.heard(finish=False)
    caller.press("5")
    replay = await caller.heard(finish=False)
    assert replay[0] == "sound:vm-message" and "recording:hotline-vm-1" in replay
    caller.press("6")
    assert "recording:hotline-vm-0" in await caller.heard(finish=False)
    caller.press("#")
    assert await caller.heard() == ["sound:goodbye"]
    await caller.done()
    async with sessions() as session:
        open_ = list(await session.scalars(select(Voicemail).where(Voicemail.done_at.is_(None))))
    assert len(open_) == 2
