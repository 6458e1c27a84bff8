"""Estimated wait against the real Postgres: the handling times and agents it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentState, Call, CallStatus, Hotline, Outcome
from ari_app.domain.waits import SpokenWait, WaitKind
from ari_app.services import admin, agents, waits

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


async def _setup(sessions: Sessions) -> tuple[Hotline, list[int]]:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
        hotline.wrapup_s = 20
        ids = []
        for i in range(2):
            agent = await admin.create_agent(
                session, f"10{i + 1:02d}", f"A{i}", device=f"PJSIP/10{i + 1:02d}"
            )
            await admin.add_member(session, hotline, agent)
            await agents.login(session, agent, target=None, path="cli", actor="test")
            ids.append(agent.id)
        other = await admin.create_hotline(session, "600", "Other")
    async with sessions() as session, session.begin():
        # an answered call of another hotline and an abandoned one of this: not counted
        for hotline_id, outcome in ((other.id, Outcome.ANSWERED), (hotline.id, Outcome.ABANDONED)):
            session.add(_call(hotline_id, 0, 1000, outcome))
    return hotline, ids


def _call(hotline_id: int, i: int, talk_s: int, outcome: Outcome = Outcome.ANSWERED) -> Call:
    answered = NOW - timedelta(hours=1) + timedelta(minutes=i)
    return Call(
        hotline_id=hotline_id,
        dialled_number="500",
        channel_id=f"c{hotline_id}-{i}-{outcome}",
        node="t",
        status=CallStatus.ENDED,
        answered_at=answered,
        ended_at=answered + timedelta(seconds=talk_s),
        outcome=outcome,
    )


async def test_estimate_from_this_hotlines_answered_calls(sessions: Sessions) -> None:
    hotline, ids = await _setup(sessions)
    async with sessions() as session, session.begin():
        for i in range(4):
            session.add(_call(hotline.id, i, 100 + i))
    async with sessions() as session:
        samples, logged_in = await waits.recent_handling(session, hotline, NOW)
        assert samples == [120.0, 121.0, 122.0, 123.0]  # talk + wrap-up, oldest first
        assert logged_in == 2
        assert await waits.estimate(session, hotline, 3, NOW) is None  # too little data
    async with sessions() as session, session.begin():
        session.add(_call(hotline.id, 4, 100))
    async with sessions() as session:
        # 3 * mean(120, 121, 122, 123, 120) / 2 agents = 182 s
        assert await waits.estimate(session, hotline, 3, NOW) == SpokenWait(WaitKind.ABOUT, 3)
    async with sessions() as session, session.begin():
        await session.execute(
            update(AgentState).where(AgentState.agent_id == ids[0]).values(paused=True)
        )
    async with sessions() as session:
        assert (await waits.recent_handling(session, hotline, NOW))[1] == 1
        assert await waits.estimate(session, hotline, 3, NOW) == SpokenWait(WaitKind.ABOUT, 6)
        # calls older than the history are not today's handling
        assert await waits.estimate(session, hotline, 3, NOW + timedelta(days=31)) is None
