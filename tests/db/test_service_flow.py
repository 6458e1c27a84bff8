"""The remote service line with the fake ARI and the real Postgres: agent number + PIN
always, the menu, login only to the configured number that is the caller ID."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_fakes import FakeAriClient
from phone_support import PIN, Caller, Sessions, audit_rows, phone_world, seed
from sqlalchemy import select

from ari_app.db.models import AgentLogin, AgentState, TargetKind, Voicemail
from ari_app.dispatch import Dispatcher
from ari_app.flows import prompts, service
from ari_app.flows.handover import HandoverAction, HandoverOutcome, HandoverResult
from ari_app.services import admin, agents

pytestmark = pytest.mark.db
MOBILE = "+4915112345"
MENU = list(service.MENU.prompt)


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    async with phone_world(sessions) as w:
        yield w


def _caller(world: Any, number: str = MOBILE, channel_id: str = "c1") -> Caller:
    ari, dispatcher = world
    return Caller(
        ari,
        dispatcher,
        channel_id=channel_id,
        name=f"PJSIP/trunk-0000000{channel_id[-1]}",
        number=number,
    )


async def _log_on(caller: Caller, agent: str = "101", pin: str = PIN) -> None:
    caller.start("service", "0800")
    assert await caller.heard() == ["sound:agent-user"]
    caller.press(f"{agent}#")
    assert await caller.heard() == ["sound:agent-pass"]
    caller.press(f"{pin}#")


async def _state(sessions: Sessions) -> AgentState:
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None
    return state


def test_menu_names_every_option() -> None:
    assert service.MENU.keys == frozenset("123456")
    assert [m for m in MENU if m.startswith("digits:")] == [f"digits:{n}" for n in "123456"]


async def test_login_from_the_configured_number(sessions: Sessions, world: Any) -> None:
    await seed(sessions)
    caller = _caller(world)
    await _log_on(caller)
    assert await caller.heard(finish=False) == MENU
    caller.press("1")
    assert await caller.heard() == ["sound:agent-loginok"]
    assert await caller.heard(finish=False) == MENU  # back to the menu
    state = await _state(sessions)
    assert (state.target, state.target_kind) == (MOBILE, TargetKind.EXTERNAL)
    caller.press("3")  # not available, then available again
    assert await caller.heard() == ["sound:do-not-disturb", "sound:activated"]
    await caller.heard(finish=False)
    caller.press("3")
    assert await caller.heard() == ["sound:do-not-disturb", "sound:de-activated"]
    await caller.heard(finish=False)
    caller.press("4")
    status = await caller.heard()
    assert status[:3] == ["sound:for", "digits:500", "sound:agent-loginok"]
    await caller.heard(finish=False)
    caller.press("2")
    assert await caller.heard() == ["sound:agent-loggedoff"]
    await caller.heard(finish=False)
    caller.hang_up()
    rows = await audit_rows(sessions)
    assert [(r.action, r.path) for r in rows] == [
        ("login", "service"),
        ("pause", "service"),
        ("unpause", "service"),
        ("status", "service"),
        ("logout", "service"),
    ]
    assert rows[0].detail == {"target_kind": "external"}


async def test_login_from_another_number_is_refused(sessions: Sessions, world: Any) -> None:
    await seed(sessions)
    caller = _caller(world, number="+4917099999")
    await _log_on(caller)
    await caller.heard(finish=False)
    caller.press("1")
    assert await caller.heard() == ["sound:feature-not-avail-line"]
    await caller.heard(finish=False)
    caller.hang_up()
    async with sessions() as session:
        assert list(await session.scalars(select(AgentLogin))) == []
    rows = await audit_rows(sessions)
    assert [(r.action, r.detail["caller"]) for r in rows] == [("login_refused", "+4917099999")]


async def test_keys_typed_during_a_confirmation_answer_the_menu(
    sessions: Sessions, world: Any
) -> None:
    await seed(sessions)
    caller = _caller(world)
    await _log_on(caller)
    await caller.heard(finish=False)
    caller.press("1")
    confirmation = await caller.heard(finish=False)
    caller.press("2")  # typed ahead while "logged in" plays
    caller.finish(caller.ari.called("play")[-1])
    assert confirmation == ["sound:agent-loginok"]
    assert await caller.heard() == ["sound:agent-loggedoff"]  # the menu prompt is skipped
    caller.hang_up()


async def test_three_wrong_pins_lock_agent_and_number(sessions: Sessions, world: Any) -> None:
    await seed(sessions)
    caller = _caller(world)
    caller.start("service", "0800")
    await caller.heard()
    for wrong in ("111112", "222223"):
        caller.press(f"101#{wrong}#")
        await caller.heard()  # agent-pass
        assert await caller.heard() == ["sound:agent-incorrect"]
    caller.press("101#333334#")
    await caller.heard()
    assert await caller.heard() == list(prompts.REFUSED_LOGIN)
    await caller.done()
    # the right PIN from the same number: refused
    again = _caller(world, channel_id="c2")
    again.seen = caller.seen
    await _log_on(again)
    assert await again.heard() == list(prompts.REFUSED_LOGIN)
    await again.done()
    actions = [(r.action, r.detail.get("subject")) for r in await audit_rows(sessions)]
    assert actions.count(("pin_failed", None)) == 3
    assert ("lockout", "agent:101") in actions and ("lockout", f"number:{MOBILE}") in actions
    assert actions[-1] == ("pin_refused_locked", None)


async def test_handover_option_calls_the_handover(
    sessions: Sessions, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        ada = await admin.get_agent(session, "101")
        await agents.login(session, ada, target=None, path="cli", actor="t")
    calls: list[tuple[Any, ...]] = []

    async def fake_handover(flow: Any, agent_id: int, hotline_ids: list[int], **kw: Any) -> Any:
        calls.append((agent_id, hotline_ids, kw))
        return HandoverResult(HandoverOutcome.NOBODY)

    monkeypatch.setattr(prompts, "start_handover", fake_handover)
    caller = _caller(world)
    await _log_on(caller)
    await caller.heard(finish=False)
    caller.press("6")
    assert await caller.heard() == HandoverResult(HandoverOutcome.NOBODY).requester_media
    await caller.heard(finish=False)
    caller.hang_up()
    assert calls == [(1, [1], {"action": HandoverAction.LOGOUT, "path": "service"})]


async def test_voicemail_of_all_hotlines(sessions: Sessions, world: Any) -> None:
    await seed(sessions)
    async with sessions() as session, session.begin():
        second = await admin.create_hotline(session, "600", "Wohngeld")
        await admin.add_member(session, second, await admin.get_agent(session, "101"))
        session.add(Voicemail(hotline_id=1, caller_number=None, recording_name="vm-a"))
        await session.flush()
        session.add(
            Voicemail(hotline_id=second.id, caller_number="+4930555", recording_name="vm-b")
        )
    caller = _caller(world)
    await _log_on(caller)
    await caller.heard(finish=False)
    caller.press("5")
    first = await caller.heard(finish=False)
    assert "recording:vm-b" in first
    assert first[5:7] == ["sound:for", "digits:600"]  # which hotline, as there are two
    assert "digits:4930555" in first
    caller.press("6")
    second_message = await caller.heard(finish=False)
    assert "recording:vm-a" in second_message and "sound:vm-unknown-caller" in second_message
    caller.press("#")  # back to the menu
    assert await caller.heard(finish=False) == MENU
    caller.hang_up()


async def test_caller_numbers_reach_the_log_only_at_debug(
    sessions: Sessions, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13, finding 12: the app's INFO log never names a caller (they are personal data
    kept only for HOTLINE_RETENTION); DEBUG may, for troubleshooting."""
    await seed(sessions)
    caplog.set_level(logging.DEBUG, logger="ari_app")
    stranger = "+4917099999"
    caller = _caller(world, number=stranger)
    await _log_on(caller)  # right PIN, then a login from an unconfigured number
    await caller.heard(finish=False)
    caller.press("1")
    assert await caller.heard() == ["sound:feature-not-avail-line"]
    await caller.heard(finish=False)
    caller.hang_up()
    # three wrong PINs from another number lock it (the lockout warning names the subject)
    guesser = _caller(world, number="+4917088888", channel_id="c2")
    guesser.start("service", "0800")
    guesser.press("101#111112#101#222223#101#333334#")
    await world[0].wait_for(lambda: "PIN lockout" in caplog.text, timeout=10.0)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    quiet = [r.getMessage() for r in caplog.records if r.levelno < logging.INFO]
    for number in (stranger, "+4917088888", "4917099999", "4917088888"):
        assert not [m for m in loud if number in m], number
    assert any(stranger in m for m in quiet), "DEBUG still helps troubleshooting"
    assert any("caller=<redacted>" in m for m in loud)
    assert any("number:<redacted>" in m for m in loud)
