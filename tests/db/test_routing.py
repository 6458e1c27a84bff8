"""Agent reservation against the real Postgres: atomic, in queue order, per strategy."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from ari_app.db.models import Agent, AgentState, Call, CallStatus, Hotline, Strategy
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
    """The flows' way (FlowContext.statement): the start (its facts read once, then one
    statement while the hotline's configuration is cached), connect and finish on
    AUTOCOMMIT connections, each statement its own transaction; the same functions in a
    session's transaction leave nothing behind when it rolls back."""
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
    configs = routing.HotlineConfigs()
    now = datetime.now(UTC)

    async def call(db: AsyncConnection | AsyncSession, channel: str) -> routing.Start:
        return await routing.start_call(
            db,
            configs,
            number="500",
            call_id=uuid.uuid4(),
            channel_id=channel,
            dialled="500",
            caller_number="030",
            node="n1",
            now=now,
        )

    async with sessions() as session:  # rolled back: nothing stays
        await call(session, "rolled-back")
        await session.rollback()
    configs.forget("500")
    async with statements.connect() as connection:
        start = await call(connection, "kept")
    line = start.hotline
    assert line is not None and start.reason is None
    # a detached copy of the row, typed as the ORM reads it (an enum, a JSON list)
    assert {key: getattr(line, key) for key in columns} == stored
    assert line.strategy is Strategy.LINEAR and line.escalation_numbers == ["0151"]
    assert [offer.agent_id for offer in start.offers] == [1]
    call_id, agent_id = await _call_id(sessions, "kept"), 1
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
        stored_call = await session.get(Call, call_id)
        assert stored_call is not None and stored_call.outcome is Outcome.ANSWERED
        assert stored_call.agent_id == agent_id and stored_call.bridge_id == "b1"
        channels = (await session.scalars(select(Call.channel_id))).all()
        assert channels == ["kept"]
        state = await session.get(AgentState, agent_id)
        assert state is not None and state.reserved_call_id is None and state.calls_taken == 1


async def _call_id(sessions: Sessions, channel: str) -> uuid.UUID:
    async with sessions() as session:
        call_id = await session.scalar(select(Call.id).where(Call.channel_id == channel))
    assert call_id is not None
    return call_id


class _Starts:
    """Starts of calls to "500" on AUTOCOMMIT connections, counting the facts reads (the
    start's second statement, only when the cached configuration is stale)."""

    def __init__(self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements = make_statement_engine(engine)
        self.configs = routing.HotlineConfigs()
        self.reads = 0
        read = routing.start_facts

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return await read(*args, **kwargs)

        monkeypatch.setattr(routing, "start_facts", counted)
        self.n = 0

    async def __call__(self, now: datetime | None = None) -> routing.Start:
        self.n += 1
        async with self.statements.connect() as connection:
            return await routing.start_call(
                connection,
                self.configs,
                number="500",
                call_id=uuid.uuid4(),
                channel_id=f"c{self.n}",
                dialled="500",
                caller_number="030",
                node="n1",
                now=now or datetime.now(UTC),
            )


async def test_a_start_reads_the_hotline_once_then_is_one_statement(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _setup(sessions, 3, Strategy.LINEAR)
    start = _Starts(engine, monkeypatch)
    offered = [[o.agent_id for o in (await start()).offers] for _ in range(4)]
    assert offered == [[1], [2], [3], []], "each caller the next free agent, then none"
    assert start.reads == 1, "only the first start read the hotline's facts"


async def test_a_change_by_ops_is_never_outrun_by_the_cache(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    hotline = await _setup(sessions, 3, Strategy.LINEAR)
    start = _Starts(engine, monkeypatch)
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday
    assert (await start(now)).reason is None
    async with sessions() as session, session.begin():
        line = await session.get(Hotline, hotline.id)
        assert line is not None
        await admin.update_hotline(session, line, opening_hours="sa 09:00-12:00")
    assert (await start(now)).reason is Outcome.CLOSED
    assert start.reads == 2
    async with sessions() as session, session.begin():
        line = await session.get(Hotline, hotline.id)
        assert line is not None
        await admin.update_hotline(session, line, opening_hours=None)
    assert (await start(now)).reason is None
    async with sessions() as session, session.begin():
        line = await session.get(Hotline, hotline.id)
        assert line is not None
        await admin.add_holidays(session, line, [now.date()])
    assert (await start(now)).reason is Outcome.CLOSED, "a holiday added counts at once"
    assert start.reads == 4


async def test_a_cached_start_decides_no_agents_and_a_full_queue_in_the_statement(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    hotline = await _setup(sessions, 1, Strategy.RING_ALL)
    async with sessions() as session, session.begin():
        line = await session.get(Hotline, hotline.id)
        assert line is not None
        await admin.update_hotline(session, line, max_queue_len=2)
    start = _Starts(engine, monkeypatch)
    first = await start()
    assert first.reason is None and [o.agent_id for o in first.offers] == [1]
    assert (await start()).reason is None  # waits: the agent rings for the first
    assert (await start()).reason is Outcome.TIMEOUT, "two waiting: the queue is full"
    async with sessions() as session, session.begin():
        agent = await session.get(Agent, 1)
        assert agent is not None
        await agents.logout(session, agent, path="cli", actor="test")
    assert (await start()).reason is Outcome.NO_AGENTS
    assert start.reads == 1, "decided in the start's one statement"
    async with sessions() as session:
        statuses = (await session.scalars(select(Call.status).order_by(Call.queue_seq))).all()
    assert statuses == [CallStatus.WAITING, CallStatus.WAITING, CallStatus.NEW, CallStatus.NEW]


async def test_a_hotline_created_again_under_its_id_is_a_new_version(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database emptied with RESTART IDENTITY (a restore, a reset) while a process runs:
    the hotline created again gets the same id and number, never the same version."""
    await _setup(sessions, 1, Strategy.LINEAR)
    start = _Starts(engine, monkeypatch)
    assert (await start()).reason is None
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE hotlines, calls RESTART IDENTITY CASCADE"))
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Bürgerbüro", opening_hours="sa 09:00-12:00"
        )
        assert hotline.id == 1
    monday = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert (await start(monday)).reason is Outcome.CLOSED
    assert start.reads == 2
