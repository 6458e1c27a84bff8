"""Callbacks in the call flows with a hand-written fake ARI and the real Postgres (issue 15):
the offer and the press of 1 in the inbound flow; the attempt flow's agent-first dialling,
its retries and its giving up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher, playback_finished
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentActivity, AgentState, Call, Callback, CallStatus, Outcome
from ari_app.dispatch import Dispatcher
from ari_app.flows import callback as callback_flow
from ari_app.flows.callback import CallbackDialler
from ari_app.flows.inbound import InboundFlow
from ari_app.services import admin, agents

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]
World = tuple[FakeAriClient, Dispatcher]


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[World]:
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow})
    yield ari, dispatcher
    await dispatcher.shutdown(0.1)


async def _hotline(sessions: Sessions, *, paused: bool, **settings: Any) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Buergerbuero", announce_frequency_s=0, retry_delay_s=0, **settings
        )
        agent = await admin.create_agent(session, "101", "A", device="PJSIP/1001")
        await admin.add_member(session, hotline, agent)
        await agents.login(session, agent, target=None, path="cli", actor="t")
        if paused:
            await agents.set_paused(
                session, agent, True, path="cli", actor="t", enforce_staffing=False
            )


def _plays(ari: FakeAriClient, channel_id: str) -> list[Any]:
    return [c.args[1] for c in ari.called("play") if c.args[0] == channel_id]


async def _rows(sessions: Sessions) -> tuple[Call, Callback | None]:
    async with sessions() as session:
        call = await session.scalar(select(Call))
        row = await session.scalar(select(Callback))
    assert call is not None
    return call, row


async def test_offer_after_the_wait_and_press_1_keeps_the_place(
    sessions: Sessions, world: World
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, paused=True, callback_after_s=1)
    dispatcher.on_event(event("StasisStart", channel=channel("caller"), args=["inbound", "500"]))
    await ari.wait_for(lambda: "sound:hotline/callback-offer" in _plays(ari, "caller"), timeout=5)
    offer = next(c for c in ari.called("play") if c.args[1] == "sound:hotline/callback-offer")
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel("caller"), digit="1"))
    await ari.wait_for(lambda: "sound:hotline/callback-confirmed" in _plays(ari, "caller"))
    call, row = await _rows(sessions)
    assert call.status is CallStatus.CALLBACK and call.outcome is None
    assert row is not None and (row.state, row.number) == ("pending", "030123")
    assert (row.queue_seq, row.entered_at) == (call.queue_seq, call.entered_at)
    confirmed = ari.called("play")[-1]
    assert offer.kwargs["playback_id"] != confirmed.kwargs["playback_id"]
    dispatcher.on_event(playback_finished(confirmed.kwargs["playback_id"]))
    await ari.wait_for(lambda: any(c.args[0] == "caller" for c in ari.called("hangup")))
    await ari.wait_for(lambda: dispatcher.active_calls == 0)
    call, _ = await _rows(sessions)
    assert call.status is CallStatus.CALLBACK and call.outcome is None  # still to be made


async def test_no_offer_to_a_withheld_number_and_no_1_before_the_offer(
    sessions: Sessions, world: World
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, paused=True, callback_after_s=1)
    dispatcher.on_event(
        event("StasisStart", channel=channel("caller", "anonymous"), args=["inbound", "500"])
    )
    await ari.wait_command("start_moh")
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel("caller"), digit="1"))
    with pytest.raises(TimeoutError):
        await ari.wait_for(lambda: bool(_plays(ari, "caller")), timeout=1.5)
    call, row = await _rows(sessions)
    assert call.status is CallStatus.WAITING and row is None


async def _requested(sessions: Sessions, world: World) -> None:
    """A caller of 030123 asked for a callback; the agent is available again."""
    ari, dispatcher = world
    dispatcher.on_event(event("StasisStart", channel=channel("caller"), args=["inbound", "500"]))
    await ari.wait_for(lambda: "sound:hotline/callback-offer" in _plays(ari, "caller"), timeout=5)
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel("caller"), digit="1"))
    await ari.wait_for(lambda: "sound:hotline/callback-confirmed" in _plays(ari, "caller"))
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: dispatcher.active_calls == 0)
    async with sessions() as session, session.begin():
        await agents.set_paused(
            session, await admin.get_agent(session, "101"), False, path="cli", actor="t"
        )


async def _agent_answers(ari: FakeAriClient, dispatcher: Dispatcher, attempt: int) -> str:
    """The attempt's agent leg answers and hears its prompt to the end; returns the leg."""
    originate = await ari.wait_command("originate", attempt)
    assert originate.args[0] == "PJSIP/1001" and originate.kwargs["app_args"][0] == "callbackleg"
    leg = originate.kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg, "500"), args=["callbackleg"]))
    for item in ("sound:hotline/callback-for", "digits:500"):
        await ari.wait_for(lambda item=item: item in _plays(ari, leg))
        played = next(c for c in ari.called("play") if c.args[0] == leg and c.args[1] == item)
        dispatcher.on_event(playback_finished(played.kwargs["playback_id"], leg))
    return str(leg)


async def test_agent_first_then_the_citizen_retried_then_failed(
    sessions: Sessions, world: World
) -> None:
    ari, dispatcher = world
    await _hotline(
        sessions, paused=True, callback_after_s=1, callback_attempts=2, callback_interval_s=0
    )
    await _requested(sessions, world)
    dialler = CallbackDialler(dispatcher.ctx)

    # Attempt 1: the agent is rung first, hears "callback for 500"; then the citizen's
    # number is dialled over the trunk showing the hotline; busy.
    assert await dialler.dial_due() == 1
    assert await dialler.dial_due() == 0  # one attempt in flight
    leg = await _agent_answers(ari, dispatcher, 1)
    citizen = await ari.wait_command("originate", 2)
    assert citizen.args[0] == "PJSIP/030123@trunk"
    assert citizen.kwargs["caller_id"] == '"Buergerbuero" <500>'
    dispatcher.on_event(
        event("ChannelDestroyed", channel=channel(citizen.kwargs["channel_id"]), cause=17)
    )
    await ari.wait_for(lambda: "sound:number-not-answering" in _plays(ari, leg))
    _, row = await _rows(sessions)
    assert row is not None and (row.state, row.attempts) == ("pending", 1)
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))

    # The agent does not answer the next one: not the citizen's attempt, it is given back.
    await ari.wait_for(lambda: not dispatcher.ctx.callbacks.active)  # attempt 1 over
    assert await dialler.dial_due() == 1
    unanswered = (await ari.wait_command("originate", 3)).kwargs["channel_id"]
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(unanswered), cause=19))
    await ari.wait_for(lambda: not dispatcher.ctx.callbacks.active)
    _, row = await _rows(sessions)
    assert row is not None and (row.state, row.attempts) == ("pending", 1)

    # Attempt 2: not reached either; the attempts are used up.
    assert await dialler.dial_due() == 1
    leg = await _agent_answers(ari, dispatcher, 4)
    citizen = await ari.wait_command("originate", 5)
    dispatcher.on_event(
        event("ChannelDestroyed", channel=channel(citizen.kwargs["channel_id"]), cause=19)
    )
    await ari.wait_for(lambda: _plays(ari, leg)[-1:] == ["sound:number-not-answering"])
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_for(lambda: not dispatcher.ctx.callbacks.active)
    call, row = await _rows(sessions)
    assert row is not None and (row.state, row.attempts) == ("failed", 2)
    assert call.status is CallStatus.ENDED and call.outcome is Outcome.ABANDONED
    assert await dialler.dial_due() == 0
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None and state.reserved_call_id is None
    assert state.activity is AgentActivity.IDLE
    await dialler.stop()


async def test_agent_hangs_up_while_the_citizen_rings(sessions: Sessions, world: World) -> None:
    """Not the citizen's attempt, but the citizen's phone rang: it is hung up, and the
    callback waits the interval before the next try (nobody is rung again at once)."""
    ari, dispatcher = world
    await _hotline(sessions, paused=True, callback_after_s=1, callback_interval_s=300)
    await _requested(sessions, world)
    dialler = CallbackDialler(dispatcher.ctx)
    assert await dialler.dial_due() == 1
    leg = await _agent_answers(ari, dispatcher, 1)
    citizen = (await ari.wait_command("originate", 2)).kwargs["channel_id"]
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_for(lambda: any(c.args[0] == citizen for c in ari.called("hangup")))
    await ari.wait_for(lambda: not dispatcher.ctx.callbacks.active)
    _, row = await _rows(sessions)
    assert row is not None and (row.state, row.attempts) == ("pending", 0)
    assert row.next_attempt_at > row.requested_at + timedelta(seconds=200)
    assert await dialler.dial_due() == 0
    await dialler.stop()


async def test_the_poll_finds_a_callback_while_agents_keep_changing(
    sessions: Sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load agents change more often than the dialler's poll period. A callback that
    became due after the dialler's last look (none was pending: wake-ups cost nothing then)
    is still dialled at the poll's time; the wake-ups used to restart the poll's wait, so
    under steady load it never came."""
    monkeypatch.setattr(callback_flow, "POLL_S", 0.3)
    ari, dispatcher = world
    await _hotline(sessions, paused=True, callback_after_s=1)
    dialler = CallbackDialler(dispatcher.ctx)
    task = asyncio.create_task(dialler.run())
    try:
        await ari.wait_for(lambda: dialler.none_pending)  # looked: nothing pending
        await _requested(sessions, world)
        async with asyncio.timeout(5):
            while not dispatcher.ctx.callbacks.active:
                dialler.wake()  # an agent changed, as every 0.1 s under load
                await asyncio.sleep(0.1)
        assert ari.called("originate"), "the attempt rings the agent first"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
