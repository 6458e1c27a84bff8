"""Staffing minimum and escalation against the real Postgres: which hotlines are short, one
escalation episode per shortage (audited), and the escalation flow with a fake ARI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentState, AuditEntry
from ari_app.dispatch import Dispatcher
from ari_app.flows import escalation
from ari_app.flows.inbound import InboundFlow
from ari_app.services import admin, agents, staffing

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    monkeypatch.setattr(escalation, "NEXT_CALL_S", 0.05)
    monkeypatch.setattr(escalation, "ROUND_PAUSE_S", 0.05)
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow}, HOTLINE_NODE="node-a")
    yield ari, dispatcher
    await dispatcher.ctx.escalations.stop(1.0)
    await dispatcher.shutdown(0.1)


async def _hotline(
    sessions: Sessions, *, min_agents: int = 1, logged_in: int = 1, **settings: Any
) -> int:
    """Hotline 500 with agents 101 and 102 (devices 1001/1002); the first `logged_in` log in."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Hausmeister", min_agents=min_agents, **settings
        )
        for i in range(2):
            agent = await admin.create_agent(
                session, f"10{i + 1}", f"A{i}", device=f"PJSIP/100{i + 1}"
            )
            await admin.add_member(session, hotline, agent)
            if i < logged_in:
                await agents.login(session, agent, target=None, path="cli", actor="t")
        return hotline.id


async def _pause(sessions: Sessions, number: str) -> None:
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, number)
        await agents.set_paused(
            session, agent, True, path="cli", actor="ops", enforce_staffing=False
        )


async def _audit(sessions: Sessions, prefix: str = "") -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [r for r in rows if r.action.startswith(prefix)]


async def test_shortages_count_logged_in_unpaused_agents(sessions: Sessions) -> None:
    await _hotline(sessions, min_agents=1, logged_in=1)
    async with sessions() as session:
        assert await staffing.shortages(session) == []
    await _pause(sessions, "101")
    async with sessions() as session:
        (short,) = await staffing.shortages(session)
    assert (short.number, short.available, short.min_agents) == ("500", 0, 1)


async def test_a_hotline_without_minimum_is_never_short(sessions: Sessions) -> None:
    await _hotline(sessions, min_agents=0, logged_in=0)
    async with sessions() as session:
        assert await staffing.staffing(session) == []


async def test_one_episode_per_shortage(sessions: Sessions) -> None:
    await _hotline(sessions, escalation_numbers=["0301"])
    await _pause(sessions, "101")

    async def check(node: str = "node-a", running: frozenset[int] = frozenset()) -> list[str]:
        async with sessions() as session, session.begin():
            started = await staffing.open_escalations(
                session, node=node, trigger="test", running=running
            )
        return [s.number for s in started]

    assert await check() == ["500"]
    assert await check(running=frozenset({1})) == []  # running here: nothing new
    assert await check(node="node-b") == []  # another node's episode
    # This node restarted mid-escalation: its unfinished episode is resumed.
    assert await check() == ["500"]
    async with sessions() as session, session.begin():
        await staffing.record_end(session, 1, None)
    assert await check() == []  # over (nobody confirmed): not called again
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, "101")
        await agents.set_paused(session, agent, False, path="cli", actor="ops")
    assert await check() == []
    assert [a.action for a in await _audit(sessions, "staffing")] == ["staffing_restored"]
    await _pause(sessions, "101")
    assert await check() == ["500"]  # a new shortage, a new episode
    started = await _audit(sessions, "escalation_started")
    assert len(started) == 2
    assert started[0].detail["trigger"] == "test" and started[0].detail["node"] == "node-a"
    assert started[0].hotline_id == 1 and started[0].path == "system"


def _finished(leg: str, playback_id: str) -> Any:
    return event(
        "PlaybackFinished",
        playback={
            "id": playback_id,
            "media_uri": "x",
            "target_uri": f"channel:{leg}",
            "state": "done",
        },
    )


def _leg_ids(ari: FakeAriClient) -> list[str]:
    return [c.kwargs["channel_id"] for c in ari.called("originate")]


async def test_escalation_calls_numbers_in_order_until_one_confirms(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, escalation_numbers=["0301", "0302"])
    await _pause(sessions, "101")
    assert await escalation.check_staffing(dispatcher.ctx, "test") == ["500"]
    first = await ari.wait_command("originate")
    assert first.args[0] == "PJSIP/0301@trunk"
    assert first.kwargs["app_args"][0] == "escalationleg"
    # No answer: the next number.
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(_leg_ids(ari)[0]), cause=19))
    second = await ari.wait_command("originate", 2)
    assert second.args[0] == "PJSIP/0302@trunk"
    leg = second.kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg), args=["escalationleg", "1"]))
    # The announcement, one item per playback (so that a key really stops it).
    media = escalation.announcement("500")
    for index, item in enumerate(media[:3]):
        play = await ari.wait_command("play", index + 1)
        assert play.args == (leg, item)
        if index < 2:
            dispatcher.on_event(_finished(leg, play.kwargs["playback_id"]))
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel(leg), digit="1"))
    await ari.wait_command("stop_playback")
    thanks = await ari.wait_command("play", 4)
    assert thanks.args[1] == escalation.THANK_YOU[0]
    dispatcher.on_event(_finished(leg, thanks.kwargs["playback_id"]))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await ari.wait_for(lambda: not dispatcher.ctx.escalations.flows())
    rows = await _audit(sessions, "escalation")
    assert [(r.action, r.detail.get("number"), r.detail.get("outcome")) for r in rows] == [
        ("escalation_started", None, None),
        ("escalation_call", "0301", "no_answer"),
        ("escalation_call", "0302", "confirmed"),
        ("escalation_confirmed", "0302", None),
    ]
    # The episode is over: later checks do not call again while the shortage lasts.
    assert await escalation.check_staffing(dispatcher.ctx, "test") == []


async def test_escalation_stops_when_the_hotline_is_staffed_again(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, escalation_numbers=["0301"])
    await _pause(sessions, "101")
    await escalation.check_staffing(dispatcher.ctx, "test")
    leg = (await ari.wait_command("originate")).kwargs["channel_id"]
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, "102")
        await agents.login(session, agent, target=None, path="cli", actor="ops")
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=19))
    await ari.wait_for(lambda: not dispatcher.ctx.escalations.flows())
    assert len(ari.called("originate")) == 1
    await escalation.check_staffing(dispatcher.ctx, "test")
    actions = [a.action for a in await _audit(sessions) if a.action != "login"]
    assert actions[-3:] == ["escalation_started", "escalation_call", "staffing_restored"]


async def test_without_numbers_the_shortage_is_audited(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _hotline(sessions, logged_in=0)
    assert await escalation.check_staffing(dispatcher.ctx, "test") == ["500"]
    await ari.wait_for(lambda: not dispatcher.ctx.escalations.flows())
    assert [a.action for a in await _audit(sessions, "escalation")] == [
        "escalation_started",
        "escalation_unconfirmed",
    ]
    assert not ari.called("originate")


async def test_auto_pause_of_the_last_agent_escalates(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _hotline(sessions, escalation_numbers=["0301"], no_answer_limit=1)
    dispatcher.on_event(event("StasisStart", channel=channel("caller"), args=["inbound", "500"]))
    agent_leg = await ari.wait_command("originate")
    assert agent_leg.args[0] == "PJSIP/1001"
    dispatcher.on_event(
        event("ChannelDestroyed", channel=channel(agent_leg.kwargs["channel_id"]), cause=19)
    )
    call = await ari.wait_command("originate", 2)
    assert call.args[0] == "PJSIP/0301@trunk"
    async with sessions() as session:
        state = await session.get(AgentState, 1)
    assert state is not None and state.paused
    (started,) = await _audit(sessions, "escalation_started")
    assert started.detail["trigger"] == "auto_pause"
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
