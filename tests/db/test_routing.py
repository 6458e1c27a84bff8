"""Agent reservation against the real Postgres: atomic, in queue order, per strategy."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from ari_app.db.models import AgentState, Call, CallStatus, Hotline, Strategy
from ari_app.db.session import make_statement_engine
from ari_app.domain.enums import Outcome, TargetKind
from ari_app.services import admin, agents, calls, routing

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]


async def _setup(sessions: Sessions, n_agents: int, strategy: Strategy) -> Hotline:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", strategy=strategy)
        for i in range(n_agents):
            agent = await admin.create_agent(
                session, f"10{i + 1:02d}", f"A{i}", device=f"PJSIP/10{i + 1:02d}"
            )
            await admin.add_member(session, hotline, agent)
            await agents.login(session, agent, target=None, path="cli", actor="test")
    return hotline


async def _waiting_call(
    sessions: Sessions, hotline: Hotline, channel: str
) -> tuple[uuid.UUID, int]:
    async with sessions() as session, session.begin():
        call = await calls.open_call(
            session,
            channel_id=channel,
            dialled="500",
            caller_number="030",
            hotline_id=hotline.id,
            node="t",
        )
        await calls.set_status(session, call.id, CallStatus.WAITING)
    return call.id, call.queue_seq


async def _reserve(
    sessions: Sessions, hotline: Hotline, call: tuple[uuid.UUID, int], tried: set[int] | None = None
) -> list[int]:
    async with sessions() as session, session.begin():
        offers = await routing.reserve_agents(
            session,
            call_id=call[0],
            hotline=hotline,
            queue_seq=call[1],
            tried=tried or set(),
            node="t",
            now=datetime.now(UTC),
        )
    return [o.agent_id for o in offers]


async def test_one_agent_two_simultaneous_calls_rings_once(sessions: Sessions) -> None:
    hotline = await _setup(sessions, 1, Strategy.RING_ALL)
    first = await _waiting_call(sessions, hotline, "c1")
    second = await _waiting_call(sessions, hotline, "c2")
    results = await asyncio.gather(*(_reserve(sessions, hotline, c) for c in (first, second)))
    assert sorted(len(r) for r in results) == [0, 1]
    assert results[0] == [1], "the caller who came first gets the agent"


async def test_concurrent_reservations_never_share_an_agent(sessions: Sessions) -> None:
    hotline = await _setup(sessions, 3, Strategy.LONGEST_IDLE)
    waiting = [await _waiting_call(sessions, hotline, f"c{i}") for i in range(6)]
    results = await asyncio.gather(*(_reserve(sessions, hotline, c) for c in waiting))
    reserved = [a for r in results for a in r]
    assert len(reserved) == len(set(reserved)) == 3
    async with sessions() as session:
        for agent_id in reserved:
            state = await session.get(AgentState, agent_id)
            assert state is not None and state.reserved_call_id is not None


async def test_ring_all_reserves_everyone_and_release_counts_no_answer(sessions: Sessions) -> None:
    hotline = await _setup(sessions, 2, Strategy.RING_ALL)
    call = await _waiting_call(sessions, hotline, "c1")
    assert sorted(await _reserve(sessions, hotline, call)) == [1, 2]
    async with sessions() as session, session.begin():
        for agent_id in (1, 2):
            paused = await routing.release_agent(
                session, agent_id=agent_id, call_id=call[0], unanswered=True, limit=1
            )
            assert paused, "one unanswered call with limit 1 sets the agent not available"
    assert await _reserve(sessions, hotline, call) == []


async def test_linear_tries_untried_before_tried(sessions: Sessions) -> None:
    hotline = await _setup(sessions, 3, Strategy.LINEAR)
    call = await _waiting_call(sessions, hotline, "c1")
    assert await _reserve(sessions, hotline, call) == [1]
    async with sessions() as session, session.begin():
        await routing.release_agent(session, agent_id=1, call_id=call[0], unanswered=True, limit=5)
    assert await _reserve(sessions, hotline, call, tried={1}) == [2]


async def test_the_call_path_on_a_bare_connection(sessions: Sessions, engine: AsyncEngine) -> None:
    """The flows' way (FlowContext.statement): start facts, enqueue with its reservation,
    connect and finish on AUTOCOMMIT connections, each statement its own transaction; the
    same functions in a session's transaction leave nothing behind when it rolls back."""
    hotline = await _setup(sessions, 2, Strategy.LINEAR)
    async with sessions() as session, session.begin():
        line = await session.get(Hotline, hotline.id)
        assert line is not None
        await admin.update_hotline(session, line, escalation_numbers=["0151"])
    async with sessions() as session:
        loaded = await session.get(Hotline, hotline.id)
        assert loaded is not None
        columns = [prop.key for prop in sa_inspect(Hotline).column_attrs]
        stored = {key: getattr(loaded, key) for key in columns}
    statements = make_statement_engine(engine)
    now = datetime.now(UTC)

    async def call(db: AsyncConnection | AsyncSession, channel: str) -> tuple[uuid.UUID, int]:
        found = await routing.start_facts(db, "500", now)
        assert found is not None
        line, facts = found
        # a detached copy of the row, typed as the ORM reads it (an enum, a JSON list)
        assert {key: getattr(line, key) for key in columns} == stored
        assert line.strategy is Strategy.LINEAR and line.escalation_numbers == ["0151"]
        assert facts.logged_in == 2 and len(facts.candidates) == 2
        chosen = routing.choose(line, facts, (), ahead=facts.unserved)
        call_id = uuid.uuid4()
        _, _, offers = await routing.enqueue(
            db,
            call_id=call_id,
            channel_id=channel,
            dialled="500",
            caller_number="030",
            hotline=line,
            node="n1",
            waiting=True,
            agents=chosen,
            now=now,
        )
        assert [offer.agent_id for offer in offers] == chosen and len(chosen) == 1
        return call_id, chosen[0]

    async with sessions() as session:  # rolled back: nothing stays
        await call(session, "rolled-back")
        await session.rollback()
    async with statements.connect() as connection:
        call_id, agent_id = await call(connection, "kept")
    async with statements.connect() as connection:
        await routing.connect_call(
            connection,
            call_id=call_id,
            agent_id=agent_id,
            bridge_id="b1",
            target_kind=TargetKind.DEVICE,
            now=now,
        )
    async with statements.connect() as connection:
        await routing.finish_call(
            connection,
            call_id=call_id,
            agent_id=agent_id,
            wrapup_s=0,
            outcome=Outcome.ANSWERED,
            now=now,
        )
    async with sessions() as session:
        stored = await session.get(Call, call_id)
        assert stored is not None and stored.outcome is Outcome.ANSWERED
        assert stored.agent_id == agent_id and stored.bridge_id == "b1"
        channels = (await session.scalars(select(Call.channel_id))).all()
        assert channels == ["kept"]
        state = await session.get(AgentState, agent_id)
        assert state is not None and state.reserved_call_id is None and state.calls_taken == 1
