"""The inbound flow with a hand-written fake ARI and the real Postgres: commands sent to
Asterisk and rows written, event by event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher, playback_finished
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from web_support import waiting_call

from ari_app.ari.models import Bridge, Channel
from ari_app.db import session as db_session
from ari_app.db.models import (
    AgentActivity,
    AgentState,
    Call,
    CallEvent,
    CallStatus,
    Hotline,
    Outcome,
    Strategy,
    Voicemail,
)
from ari_app.dispatch import Dispatcher
from ari_app.flows.base import Timer
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.inbound import bridge as inbound_bridge
from ari_app.flows.inbound.call import InboundState
from ari_app.reconcile import reconcile
from ari_app.services import admin, agents, routing

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow})
    yield ari, dispatcher
    await dispatcher.shutdown(0.1)


async def _hotline(sessions: Sessions, *, logged_in: int = 1, **settings: Any) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", **settings)
        for i in range(2):
            agent = await admin.create_agent(
                session, f"10{i + 1}", f"A{i}", device=f"PJSIP/100{i + 1}"
            )
            await admin.add_member(session, hotline, agent)
            if i < logged_in:
                await agents.login(session, agent, target=None, path="cli", actor="t")


def _start(dispatcher: Dispatcher, channel_id: str = "caller", number: str = "500") -> None:
    dispatcher.on_event(event("StasisStart", channel=channel(channel_id), args=["inbound", number]))


async def _call(sessions: Sessions, channel_id: str | None = None) -> Call:
    """The one call (or the call of `channel_id`, among a history of calls)."""
    query = select(Call) if channel_id is None else select(Call).filter_by(channel_id=channel_id)
    async with sessions() as session:
        call = await session.scalar(query)
    assert call is not None
    return call


async def _ended(sessions: Sessions, channel_id: str, timeout: float = 5.0) -> Call:
    """The call of `channel_id` once its end is stored: an end may wait up to
    routing.CARRY_S for a statement to carry it (routing.PendingWrites.end)."""
    async with asyncio.timeout(timeout):
        while (call := await _call(sessions, channel_id)).outcome is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return call


async def test_unknown_number_is_announced_and_recorded(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    _start(dispatcher, number="999")
    play = await ari.wait_command("play")
    assert play.args[1] == "sound:ss-noservice"
    dispatcher.on_event(
        playback_finished(play.kwargs["playback_id"], media_uri="sound:ss-noservice")
    )
    await ari.wait_for(lambda: any(c.args[0] == "caller" for c in ari.called("hangup")))
    assert (await _call(sessions)).outcome is Outcome.REJECTED_UNKNOWN_NUMBER


async def test_agent_answers_and_call_is_bridged_then_wrapup(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, wrapup_s=30)
    _start(dispatcher)
    originate = await ari.wait_command("originate")
    assert originate.args[0] == "PJSIP/1001"
    assert originate.kwargs["app_args"][0] == "agentleg"
    leg = originate.kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg, "500"), args=["agentleg", "x"]))
    add = await ari.wait_command("add_channel")
    assert set(add.args[1]) == {"caller", leg}
    # Bridging shows the caller the leg's caller ID: the hotline, name and number, set in
    # the originate (no request to the caller's channel).
    assert originate.kwargs["variables"]["CALLERID(all)"].endswith(" <500>")
    assert not [c for c in ari.called("set_variable") if c.args[0] == "caller"]
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    await ari.wait_command("destroy_bridge")
    await ari.wait_for(lambda: dispatcher.active_calls == 0)  # stored after the hangups
    call = await _call(sessions)
    assert call.outcome is Outcome.ANSWERED and call.agent_id == 1
    assert call.answered_at is not None and call.first_ring_at is not None
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None and state.activity is AgentActivity.WRAPUP
    assert state.reserved_call_id is None and state.calls_taken == 1


async def test_no_agents_goes_to_voicemail(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _hotline(sessions, logged_in=0)
    _start(dispatcher)
    play = await ari.wait_command("play")
    assert play.args[1] == "sound:vm-intro"
    dispatcher.on_event(playback_finished(play.kwargs["playback_id"]))
    record = await ari.wait_command("record")
    assert record.kwargs["terminate_on"] == "#" and record.kwargs["beep"] is True
    dispatcher.on_event(
        event(
            "RecordingFinished",
            recording={
                "name": record.args[1],
                "format": "wav",
                "state": "done",
                "target_uri": "channel:caller",
                "duration": 4,
                "talking_duration": 3,
            },
        )
    )
    await ari.wait_command("play", 2)
    async with sessions() as session:
        vm = await session.scalar(select(Voicemail))
    assert vm is not None and vm.duration_s == 4 and vm.caller_number == "030123"
    assert (await _call(sessions)).outcome is Outcome.VOICEMAIL


async def test_caller_hangs_up_while_ringing(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _hotline(sessions)
    _start(dispatcher)
    leg = (await ari.wait_command("originate")).kwargs["channel_id"]
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_for(lambda: dispatcher.active_calls == 0)
    assert (await _call(sessions)).outcome is Outcome.ABANDONED
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None and state.reserved_call_id is None
    assert state.activity is AgentActivity.IDLE and state.unanswered_streak == 0


async def test_adopted_waiting_caller_is_answered_only_if_the_dead_process_had_not(
    sessions: Sessions, world: Any
) -> None:
    """SIGKILL between storing a waiting call and answering it: after the restart the
    adopted caller is answered (else they would be bridged unanswered, hearing only early
    media); a caller already answered is not answered twice."""
    ari, dispatcher = world
    await _hotline(sessions, logged_in=0)
    async with sessions() as session:
        hotline = await session.scalar(select(Hotline))
    assert hotline is not None
    for channel_id in ("was-answered", "not-answered"):
        await waiting_call(sessions, hotline, channel_id=channel_id, node=dispatcher.ctx.node)
    ari.channels = [
        Channel("was-answered", "PJSIP/trunk-1", "Up"),
        Channel("not-answered", "PJSIP/trunk-2", "Ring"),
    ]
    result = await reconcile(dispatcher.ctx, dispatcher)
    assert result.adopted_waiting == 2
    await ari.wait_for(lambda: len(ari.called("start_moh")) == 2)
    assert [c.args[0] for c in ari.called("answer")] == ["not-answered"]


async def _history_and_agents_busy(sessions: Sessions) -> None:
    """Five answered calls (290 s talk + 10 s wrap-up: an estimate), every agent on a call."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        hotline = await session.scalar(select(Hotline))
        assert hotline is not None
        for i in range(5):
            session.add(
                Call(
                    hotline_id=hotline.id,
                    dialled_number="500",
                    channel_id=f"old{i}",
                    node="t",
                    status=CallStatus.ENDED,
                    answered_at=now - timedelta(hours=1),
                    ended_at=now - timedelta(hours=1) + timedelta(seconds=290),
                    outcome=Outcome.ANSWERED,
                )
            )
        await session.execute(AgentState.__table__.update().values(activity=AgentActivity.ON_CALL))


async def _heard(ari: FakeAriClient, dispatcher: Dispatcher, items: int) -> list[str]:
    """The caller's first `items` playbacks, each finished by Asterisk in turn."""
    heard = []
    for count in range(1, items + 1):
        play = await ari.wait_command("play", count)
        heard.append(play.args[1])
        if count < items:
            dispatcher.on_event(playback_finished(play.kwargs["playback_id"]))
    return heard


async def test_a_waiting_caller_hears_position_and_estimated_wait_on_entry(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions)
    await _history_and_agents_busy(sessions)
    _start(dispatcher)
    # the only agent is busy: next in line, about 1 * 300 s / 1 agent; one playback per item
    assert await _heard(ari, dispatcher, 4) == [
        "sound:queue-youarenext",
        "sound:queue-holdtime",
        "number:5",
        "sound:minutes",
    ]


async def _agent_answers_during_the_number(
    sessions: Sessions, ari: FakeAriClient, dispatcher: Dispatcher
) -> tuple[InboundFlow, str, str]:
    """The caller hears its position, an agent answers while the number is spoken: the
    flow, the agent's leg and the number's playback (whose stop was asked)."""
    await _hotline(sessions, announce_frequency_s=1)
    await _history_and_agents_busy(sessions)
    _start(dispatcher)
    *_, number = await _heard(ari, dispatcher, 3)  # "you are next", "hold time", now "5"
    assert number == "number:5"
    playing = ari.called("play")[-1].kwargs["playback_id"]
    async with sessions() as session, session.begin():
        await session.execute(AgentState.__table__.update().values(activity=AgentActivity.IDLE))
    flow = dispatcher.owner("caller")
    assert isinstance(flow, InboundFlow)
    flow.deliver(Timer("distribute"))
    leg = (await ari.wait_command("originate")).kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg, "500"), args=["agentleg", "x"]))
    await ari.wait_command("stop_playback")
    await ari.wait_for(lambda: flow.state is InboundState.CONNECTING)
    assert ari.called("stop_playback")[0].args[0] == playing
    return flow, leg, playing


async def test_an_agent_answering_during_an_announcement_stops_it_and_nothing_follows(
    sessions: Sessions, world: Any
) -> None:
    """Asterisk 16 ignores the stop of a media-list playback while a number speaks, and the
    bridge request waits behind the rest of the list (the 5 s ARI timeout drops the call):
    the announcement is played item by item, the item playing is stopped on the answer, and
    the bridge waits (in CONNECTING, not in a handler) for that item's PlaybackFinished (a
    stopped number still says its last digits); no later item starts."""
    ari, dispatcher = world
    flow, leg, playing = await _agent_answers_during_the_number(sessions, ari, dispatcher)
    assert not ari.called("create_bridge") and not ari.called("add_channel")
    dispatcher.on_event(playback_finished(playing))
    await ari.wait_command("add_channel")
    names = [c.name for c in ari.commands]
    assert names.index("stop_playback") < names.index("create_bridge")
    await ari.wait_for(lambda: flow.state is InboundState.BRIDGED)
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    assert len(ari.called("play")) == 3, "no item after the answer"
    assert not ari.called("start_moh"), "no music either"
    await ari.wait_for(lambda: dispatcher.owner("caller") is None)  # the call end stored
    assert (await _call(sessions, "caller")).outcome is Outcome.ANSWERED


async def test_without_the_end_of_the_stopped_prompt_the_timer_bridges(
    sessions: Sessions, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound_bridge, "BRIDGE_AFTER_STOP_S", 0.2)
    ari, dispatcher = world
    flow, _, _ = await _agent_answers_during_the_number(sessions, ari, dispatcher)
    assert not ari.called("add_channel")
    await ari.wait_command("add_channel")  # no PlaybackFinished: the timer's bridge
    await ari.wait_for(lambda: flow.state is InboundState.BRIDGED)
    await _until_status(sessions, "caller", CallStatus.BRIDGED)  # written within CARRY_S


async def _until_status(sessions: Sessions, channel_id: str, status: CallStatus) -> None:
    """Until the call's record has `status` (a connection is written by a task of
    routing.PendingWrites: the database is all there is to watch)."""
    async with asyncio.timeout(5):
        while (await _call(sessions, channel_id)).status is not status:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_an_agent_hanging_up_before_the_bridge_puts_the_caller_back_in_the_queue(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    flow, leg, playing = await _agent_answers_during_the_number(sessions, ari, dispatcher)
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_command("start_moh")  # waiting again, with music
    assert flow.state is InboundState.QUEUED
    dispatcher.on_event(playback_finished(playing))  # the number ends: no bridge now
    await ari.wait_for(lambda: flow.inbox.empty())
    assert not ari.called("create_bridge")
    call = await _call(sessions, "caller")
    assert call.status is CallStatus.WAITING and call.outcome is None


async def test_a_caller_hanging_up_before_the_bridge_releases_the_agent(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    _, leg, _ = await _agent_answers_during_the_number(sessions, ari, dispatcher)
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    await ari.wait_for(lambda: dispatcher.owner("caller") is None)
    assert not ari.called("create_bridge")
    assert (await _call(sessions, "caller")).outcome is Outcome.ABANDONED
    async with sessions() as session:
        activities = set(await session.scalars(select(AgentState.activity)))
    assert AgentActivity.RINGING not in activities and AgentActivity.ON_CALL not in activities


async def test_no_announcement_is_queued_over_one_still_playing(
    sessions: Sessions, world: Any
) -> None:
    """A second playback would wait behind the first on the channel's control queue, and
    so would the bridge of an agent answering meanwhile (seen as a 5 s bridging timeout)."""
    ari, dispatcher = world
    await _hotline(sessions, announce_frequency_s=5)
    async with sessions() as session, session.begin():
        await session.execute(AgentState.__table__.update().values(activity=AgentActivity.ON_CALL))
    _start(dispatcher)
    first = await ari.wait_command("play")
    flow = dispatcher.owner("caller")
    assert flow is not None
    flow.deliver(Timer("announce"))  # the entry announcement is still playing: skipped
    dispatcher.on_event(playback_finished(first.kwargs["playback_id"]))
    flow.deliver(Timer("announce"))  # now it is announced again
    await ari.wait_command("play", count=2)
    media = [c.name for c in ari.commands if c.name in ("play", "start_moh")]
    assert media[:3] == ["play", "start_moh", "play"], "no play before the first one ended"


async def test_a_routed_call_costs_two_statements_and_five_requests(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call path's load-independent cost (issue 11; the benchmark measures the same as
    DB round trips, transactions and ARI requests per call): the start (the call's insert,
    the hotline's decision and its agent's reservation, with the hotline's configuration
    cached by the process) and the end are one statement each, and the connection goes
    with the next of the process's statements (here the call's own end: nothing else
    carried it); Asterisk gets originate (with the leg's caller ID: the hotline, which
    bridging shows the caller), bridge, add, the caller's hangup and the bridge's
    destruction. A path that grows fails here, whatever the machine's load."""
    await _hotline(sessions, wrapup_s=30)
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow})
    dispatcher.ctx.pending.carry_s = 3600  # not on its own: carried
    ari.device_states["PJSIP/1001"] = "NOT_INUSE"
    dispatcher.ctx.followed_devices = lambda: {"PJSIP/1001"}  # device presence follows it
    async with engine.connect() as connection:  # an earlier call read the hotline
        found = await routing.start_facts(connection, "500", datetime.now(UTC))
    assert found is not None
    dispatcher.ctx.hotline_configs.keep(found[0], found[1].holidays)
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    # The call path's statements go out by asyncpg itself, past SQLAlchemy's events.
    fetch = db_session._fetch

    async def counted(connection: Any, statement: str, args: Any) -> Any:
        sent.append(statement)
        return await fetch(connection, statement, args)

    monkeypatch.setattr(db_session, "_fetch", counted)
    sa_event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        _start(dispatcher)
        originate = await ari.wait_command("originate")
        leg = originate.kwargs["channel_id"]
        assert originate.kwargs["variables"]["CALLERID(all)"].endswith("<500>")
        dispatcher.on_event(
            event("StasisStart", channel=channel(leg, "500"), args=["agentleg", "x"])
        )
        await ari.wait_command("add_channel")
        dispatcher.on_event(event("StasisEnd", channel=channel(leg)))
        dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
        await ari.wait_command("destroy_bridge")
        await ari.wait_for(lambda: dispatcher.active_calls == 0)
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", note)
        await dispatcher.shutdown(0.1)
    assert len(sent) == 2, sent
    call = await _call(sessions)
    assert call.outcome is Outcome.ANSWERED and call.agent_id == 1
    assert call.answered_at is not None and call.ended_at is not None
    assert call.first_ring_at is not None and call.answered_at <= call.ended_at
    async with sessions() as session:
        state = await session.get(AgentState, 1)
        events = (
            await session.scalars(select(CallEvent.event).order_by(CallEvent.at, CallEvent.id))
        ).all()
    assert state is not None and state.activity is AgentActivity.WRAPUP
    assert state.calls_taken == 1 and state.reserved_call_id is None
    assert events == ["ENTERQUEUE", "RING", "CONNECT", "ANSWERED"]
    requests = [c.name for c in ari.commands]
    assert sorted(requests) == sorted(
        [
            "originate",
            "create_bridge",
            "add_channel",
            "hangup",
            "destroy_bridge",
        ]
    ), requests


async def test_waiting_callers_cost_one_attempt_a_poll_not_one_each(
    sessions: Sessions, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every agent busy, five callers wait: a caller that nobody was free for at its start
    makes no second attempt, and the process's poll of the waiting queue (HotlineApp.sweep)
    wakes the first of them only; who gets nothing ends the chain. With a poll of its own
    per caller, a queue of n callers cost n attempts (two statements each) every poll:
    what overloaded the database once callers backed up."""
    ari, dispatcher = world
    await _hotline(sessions, logged_in=2, announce_frequency_s=0)
    await _history_and_agents_busy(sessions)
    attempts: list[str] = []
    done: list[str] = []
    reserve = routing.reserve_agents

    async def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append(str(kwargs["call_id"]))
        try:
            return await reserve(*args, **kwargs)
        finally:
            done.append(str(kwargs["call_id"]))

    monkeypatch.setattr(routing, "reserve_agents", counted)
    callers = [f"caller{i}" for i in range(5)]
    for caller in callers:
        _start(dispatcher, caller)
    await ari.wait_for(lambda: len(ari.called("start_moh")) == len(callers))
    assert all(
        isinstance(flow := dispatcher.owner(c), InboundFlow) and flow.state is InboundState.QUEUED
        for c in callers
    )
    assert attempts == [], "nobody was free: no second attempt at the start"
    dispatcher.ctx.waiting.notify()
    await ari.wait_for(lambda: len(done) == 1)
    for _ in range(20):  # the chain would go on in these turns of the loop
        await asyncio.sleep(0)
    flows = [dispatcher.owner(c) for c in callers]
    first = min((f for f in flows if isinstance(f, InboundFlow)), key=lambda f: f.queue_seq)
    assert attempts == [str(first.call_id)], "the first caller in the queue only"


async def test_a_call_bridged_before_its_process_wrote_it_is_adopted_bridged(
    sessions: Sessions, world: Any
) -> None:
    """SIGKILL after the bridge, before the connection was written (routing.PendingWrites
    carries it with a later statement): Postgres says waiting with the agent reserved,
    Asterisk has the call's bridge with the caller and the agent's leg. The next process
    adopts it bridged (the caller stays with the agent; never back into the queue),
    writes the connection, and stores the end as answered."""
    await _hotline(sessions, wrapup_s=30)
    dead_ari, dead = fake_dispatcher(sessions, {"inbound": InboundFlow})
    dead.ctx.pending.carry_s = 3600  # nothing written before it dies
    try:
        _start(dead)
        leg = (await dead_ari.wait_command("originate")).kwargs["channel_id"]
        dead.on_event(event("StasisStart", channel=channel(leg, "500"), args=["agentleg", "x"]))
        add = await dead_ari.wait_command("add_channel")
        bridge_id = add.args[0]
        assert (await _call(sessions, "caller")).status is CallStatus.WAITING
        ari, dispatcher = world
        ari.channels = [Channel("caller", "PJSIP/trunk-1", "Up"), Channel(leg, "PJSIP/1001", "Up")]
        ari.bridges = [Bridge(bridge_id, channels=("caller", leg))]
        result = await reconcile(dispatcher.ctx, dispatcher)
        assert (result.adopted_bridged, result.adopted_waiting, result.orphans) == (1, 0, [])
        call = await _call(sessions, "caller")
        assert call.status is CallStatus.BRIDGED and call.agent_id == 1
        assert call.bridge_id == bridge_id and call.answered_at is not None
        async with sessions() as session:
            state = await session.get(AgentState, 1)
        assert state is not None and state.activity is AgentActivity.ON_CALL
        assert not ari.called("hangup") and not ari.called("start_moh")
        dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
        await ari.wait_for(lambda: dispatcher.active_calls == 0)
        call = await _ended(sessions, "caller")
        assert call.outcome is Outcome.ANSWERED
        async with sessions() as session:
            state = await session.get(AgentState, 1)
            connects = await session.scalar(
                select(func.count()).select_from(CallEvent).where(CallEvent.event == "CONNECT")
            )
        assert state is not None and state.activity is AgentActivity.WRAPUP
        assert connects == 1
    finally:
        await dead.shutdown(0.1)


async def test_ring_all_killed_before_the_connection_keeps_the_one_who_answered(
    sessions: Sessions, world: Any
) -> None:
    """ring_all: both agents rung, the second answered and was bridged; the process died
    before writing the connection and before freeing the first. The next process connects
    the call to the agent whose leg is in the bridge (not any agent reserved for it), frees
    the other one and leaves that leg to the orphans' flow."""
    await _hotline(sessions, logged_in=2, strategy=Strategy.RING_ALL)
    dead_ari, dead = fake_dispatcher(sessions, {"inbound": InboundFlow})
    dead.ctx.pending.carry_s = 3600
    try:
        _start(dead)
        await dead_ari.wait_command("originate", count=2)
        legs = {c.args[0]: c.kwargs["channel_id"] for c in dead_ari.called("originate")}
        first, second = legs["PJSIP/1001"], legs["PJSIP/1002"]
        dead.on_event(event("StasisStart", channel=channel(second, "500"), args=["agentleg", "x"]))
        bridge_id = (await dead_ari.wait_command("add_channel")).args[0]
        call = await _call(sessions, "caller")
        async with sessions() as session, session.begin():  # the first not freed yet
            await session.execute(
                update(AgentState)
                .where(AgentState.agent_id == 1)
                .values(reserved_call_id=call.id, activity=AgentActivity.RINGING)
            )
        ari, dispatcher = world
        ari.channels = [
            Channel("caller", "PJSIP/trunk-1", "Up"),
            Channel(second, "PJSIP/1002", "Up"),
            Channel(first, "PJSIP/1001", "Ringing"),
        ]
        ari.bridges = [Bridge(bridge_id, channels=("caller", second))]
        result = await reconcile(dispatcher.ctx, dispatcher)
        assert (result.adopted_bridged, result.orphans) == (1, [first])
        call = await _call(sessions, "caller")
        assert call.status is CallStatus.BRIDGED and call.agent_id == 2
        async with sessions() as session:
            states = {s.agent_id: s for s in await session.scalars(select(AgentState))}
        assert states[2].activity is AgentActivity.ON_CALL and states[2].reserved_call_id == call.id
        assert states[1].reserved_call_id is None
        assert states[1].activity is not AgentActivity.RINGING
    finally:
        await dead.shutdown(0.1)


async def test_an_end_waiting_for_a_carrier_is_written_before_reconciliation_looks(
    sessions: Sessions, world: Any
) -> None:
    """A connected call's end waits for the process's next start or end
    (routing.PendingWrites.end). A reconnect to ARI meanwhile reconciles: it writes that
    end first, so the call is closed at its own time, not found open and closed again at
    reconciliation's."""
    await _hotline(sessions, wrapup_s=30)
    ari, dispatcher = world
    pending = dispatcher.ctx.pending
    pending.carry_s = 3600  # nothing on its own: only what carries it
    _start(dispatcher)
    leg = (await ari.wait_command("originate")).kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg, "500"), args=["agentleg", "x"]))
    await ari.wait_for(lambda: len(pending) == 1)  # bridged: the connection is pending
    await pending.flush()  # as the next start would carry it
    assert (await _call(sessions, "caller")).status is CallStatus.BRIDGED
    dispatcher.on_event(event("StasisEnd", channel=channel(leg)))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_for(lambda: dispatcher.active_calls == 0)
    assert len(pending) == 1 and (await _call(sessions, "caller")).outcome is None
    ari.channels, ari.bridges = [], []
    before = datetime.now(UTC)
    result = await reconcile(dispatcher.ctx, dispatcher)
    call = await _call(sessions, "caller")
    assert result.closed == 0 and len(pending) == 0
    assert call.outcome is Outcome.ANSWERED and call.ended_at is not None
    assert call.ended_at < before
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None and state.activity is AgentActivity.WRAPUP
