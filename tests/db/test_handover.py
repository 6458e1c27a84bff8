"""Handover of an on-call duty with a fake ARI and the real Postgres: colleagues are called
in membership order on their configured targets; on 1 the colleague is logged in and only
then the requester logged out; nobody accepting leaves the requester logged in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher
from handover_support import RESULTS, Requester, ask, finished, result
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentLogin, AgentState, AuditEntry, TargetKind
from ari_app.dispatch import Dispatcher
from ari_app.flows import handover
from ari_app.flows.handover import HandoverOutcome
from ari_app.services import admin, agents

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    RESULTS.clear()
    ari, dispatcher = fake_dispatcher(sessions, {"requester": Requester})
    yield ari, dispatcher
    await dispatcher.shutdown(0.5)
    await dispatcher.ctx.handovers.wait(1.0)


async def _duty(sessions: Sessions, *, min_agents: int = 1, logged_in: int = 1) -> None:
    """Hotline 500 (min_agents); members in order: 101 (requester), 102 (device + mobile),
    103 (device only). The first `logged_in` are logged in."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Hausmeister", min_agents=min_agents, ring_timeout_s=15
        )
        targets = {
            "101": ("PJSIP/1001", []),
            "102": ("PJSIP/1002", ["01702"]),
            "103": ("PJSIP/1003", []),
        }
        for index, (number, (device, mobiles)) in enumerate(targets.items()):
            agent = await admin.create_agent(
                session, number, f"Agent {number}", device=device, external_numbers=mobiles
            )
            await admin.add_member(session, hotline, agent)
            if index < logged_in:
                await agents.login(session, agent, target=None, path="cli", actor="t")


def _ask(dispatcher: Dispatcher, action: str = "logout", timeout: float = 10) -> None:
    ask(dispatcher, action, timeout)


async def _logged_in(sessions: Sessions) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(select(AgentLogin.agent_id).order_by(AgentLogin.agent_id))
        return {f"10{agent_id}" for (agent_id,) in rows}


_result = result


def _originated(ari: FakeAriClient) -> list[tuple[str, str]]:
    return [(c.args[0], c.kwargs["channel_id"]) for c in ari.called("originate")]


_finished = finished


async def test_colleague_accepts_then_requester_is_logged_out(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _duty(sessions)
    _ask(dispatcher)
    await ari.wait_command("originate", 2)
    (device, device_leg), (mobile, mobile_leg) = _originated(ari)
    assert (device, mobile) == ("PJSIP/1002", "PJSIP/01702@trunk")  # all targets at once
    assert ari.called("start_moh")[0].args[0] == "req"  # the requester waits with music
    dispatcher.on_event(event("StasisStart", channel=channel(device_leg), args=["handoverleg"]))
    ask = await ari.wait_command("play")
    assert ask.args[0] == device_leg
    assert ask.args[1] == handover.ask_media("101", ["500"])[0]  # one item per playback
    await ari.wait_for(lambda: any(c.args[0] == mobile_leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(mobile_leg), cause=16))
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel(device_leg), digit="1"))
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.DONE and result.done
    assert result.colleagues == ("102",) and result.hotlines == ("500",)
    assert "digits:102" in result.requester_media
    assert await _logged_in(sessions) == {"102"}
    async with sessions() as session:
        audit = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        state = await session.get(AgentState, 2)
    steps = [(a.action, a.agent_id) for a in audit if a.actor != "t"]
    # The colleague is logged in first, and only then is the requester logged out.
    assert steps == [("login", 2), ("handover", 1), ("logout", 1)]
    assert audit[-1].actor == "agent:101" and audit[-3].actor == "agent:102"
    assert state is not None and state.target == "PJSIP/1002"
    assert state.target_kind is TargetKind.DEVICE
    # The colleague hears the confirmation, then the app hangs up.
    confirm = await ari.wait_command("play", 2)
    assert confirm.args == (device_leg, handover.COLLEAGUE_CONFIRMED[0])
    dispatcher.on_event(_finished(device_leg, confirm.kwargs["playback_id"]))
    await ari.wait_for(lambda: any(c.args[0] == device_leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(device_leg), cause=16))
    await dispatcher.ctx.handovers.wait(2)
    assert not dispatcher.ctx.handovers.keys()
    assert ari.called("stop_moh")[0].args[0] == "req"


async def test_declined_and_unanswered_leave_the_requester_logged_in(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _duty(sessions)
    _ask(dispatcher)
    await ari.wait_command("originate", 2)
    (_, device_leg), (_, mobile_leg) = _originated(ari)
    dispatcher.on_event(event("StasisStart", channel=channel(mobile_leg), args=["handoverleg"]))
    await ari.wait_command("play")
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(device_leg), cause=16))
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel(mobile_leg), digit="2"))
    await ari.wait_for(lambda: any(c.args[0] == mobile_leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(mobile_leg), cause=16))
    # Next in membership order: 103.
    third = await ari.wait_command("originate", 3)
    assert third.args[0] == "PJSIP/1003"
    dispatcher.on_event(
        event("ChannelDestroyed", channel=channel(third.kwargs["channel_id"]), cause=19)
    )
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.NOBODY and not result.done
    assert await _logged_in(sessions) == {"101"}
    await dispatcher.ctx.handovers.wait(2)
    assert not dispatcher.ctx.handovers.keys()


async def test_nobody_within_the_handover_time(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _duty(sessions)
    _ask(dispatcher, timeout=0.3)
    await ari.wait_command("originate", 2)
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.NOBODY
    legs = [leg for _, leg in _originated(ari)]
    await ari.wait_for(lambda: {c.args[0] for c in ari.called("hangup")} >= set(legs))
    for leg in legs:
        dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await dispatcher.ctx.handovers.wait(2)
    assert not dispatcher.ctx.handovers.keys()
    assert await _logged_in(sessions) == {"101"}


async def test_not_needed_when_staffing_allows(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _duty(sessions, logged_in=2)
    _ask(dispatcher)
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.NOT_NEEDED and result.done
    assert not ari.called("originate")
    assert await _logged_in(sessions) == {"102"}


async def test_pause_handover_pauses_the_requester_once_a_colleague_is_in(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _duty(sessions)
    _ask(dispatcher, action="pause")
    await ari.wait_command("originate", 2)
    (_, device_leg), (_, mobile_leg) = _originated(ari)
    dispatcher.on_event(event("StasisStart", channel=channel(device_leg), args=["handoverleg"]))
    await ari.wait_command("play")
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel(device_leg), digit="1"))
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.DONE
    async with sessions() as session:
        requester = await session.get(AgentState, 1)
        colleague = await session.get(AgentState, 2)
    assert requester is not None and requester.paused
    assert colleague is not None and not colleague.paused
    assert await _logged_in(sessions) == {"101", "102"}  # pause keeps the login
    for leg in (device_leg, mobile_leg):
        dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await dispatcher.ctx.handovers.wait(2)


async def test_no_colleague_to_ask(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _duty(sessions, logged_in=1)
    async with sessions() as session, session.begin():
        hotline = await admin.get_hotline(session, "500")
        for number in ("102", "103"):
            await admin.remove_member(session, hotline, await admin.get_agent(session, number))
    _ask(dispatcher)
    result = await _result(ari)
    assert result.outcome is HandoverOutcome.NO_COLLEAGUES
    assert await _logged_in(sessions) == {"101"}
