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

from ari_app.db.models import Agent, AgentState, Call, CallEvent, CallStatus, Hotline, Strategy
from ari_app.db.session import make_statement_engine
from ari_app.domain.enums import AgentActivity, Outcome, TargetKind
from ari_app.services import admin, agents, calls, device_states, routing
from ari_app.services.device_states import BatchWritten, DeviceBatch

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
        connected = routing.Connected(call_id, agent_id, "b1", TargetKind.DEVICE, now)
        await routing.connect_calls(connection, [connected])
    async with statements.connect() as connection:
        await routing.finish_call(
            connection, routing.Ended(call_id, agent_id, 0, Outcome.ANSWERED, now)
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


# ---- connections carried (routing.PendingWrites) ---------------------------------------


async def _answered(sessions: Sessions, engine: AsyncEngine, n: int) -> list[routing.Connected]:
    """`n` calls started on AUTOCOMMIT connections, each with its agent reserved, and
    answered a second apart (not written yet)."""
    await _setup(sessions, n + 1, Strategy.LINEAR)
    statements = make_statement_engine(engine)
    configs, answered = routing.HotlineConfigs(), []
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    for i in range(n):
        call_id = uuid.uuid4()
        async with statements.connect() as connection:
            start = await routing.start_call(
                connection, configs, number="500", call_id=call_id, channel_id=f"c{i}",
                dialled="500", caller_number="030", node="n1", now=at,
            )  # fmt: skip
        (offer,) = start.offers
        answered.append(
            routing.Connected(call_id, offer.agent_id, routing.bridge_of(call_id),
                              offer.target_kind, at.replace(second=i + 1))
        )  # fmt: skip
    return answered


async def _recorded(sessions: Sessions, connected: routing.Connected) -> tuple[Any, ...]:
    """(status, answered_at, bridge_id, the agent's activity, CONNECT events' times)."""
    async with sessions() as session:
        call = await session.get(Call, connected.call_id)
        assert call is not None
        state = await session.get(AgentState, connected.agent_id)
        assert state is not None
        events = (
            await session.scalars(
                select(CallEvent.at).where(
                    CallEvent.call_id == connected.call_id, CallEvent.event == "CONNECT"
                )
            )
        ).all()
    return call.status, call.answered_at, call.bridge_id, state.activity, list(events)


async def _until_bridged(sessions: Sessions, connected: routing.Connected) -> None:
    """Until the record says bridged (written by a task of PendingWrites: the database is
    all there is to watch)."""
    async with asyncio.timeout(5):
        while (await _recorded(sessions, connected))[0] is not CallStatus.BRIDGED:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _start_carrying(
    engine: AsyncEngine, pending: routing.PendingWrites, channel: str
) -> tuple[routing.Start, routing.Carried]:
    """A call to "500" started by the flows' way: carrying what is `pending`."""
    taken: list[routing.Carried] = []
    async with make_statement_engine(engine).connect() as connection:

        async def started(carried: routing.Carried) -> routing.Start:
            taken.append(carried)
            return await routing.start_call(
                connection, routing.HotlineConfigs(), number="500", call_id=uuid.uuid4(),
                channel_id=channel, dialled="500", caller_number="030", node="n1",
                now=datetime.now(UTC), carried=carried,
            )  # fmt: skip

        return await pending.carried_by(started), taken[0]


async def test_connections_go_with_the_next_start_in_its_statement(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """Two answers pending, then a third caller: its start writes both connections, at the
    answers' own times, in its one statement."""
    first, second = await _answered(sessions, engine, 2)
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=60)
    pending.add(first)
    pending.add(second)
    third, carried = await _start_carrying(engine, pending, "third")
    assert [o.agent_id for o in third.offers] == [3]
    assert len(pending) == 0
    assert [c.bridge_id for c in carried.connects] == [first.bridge_id, second.bridge_id]
    for connected in (first, second):
        assert await _recorded(sessions, connected) == (
            CallStatus.BRIDGED, connected.at, connected.bridge_id, AgentActivity.ON_CALL,
            [connected.at],
        )  # fmt: skip


async def test_an_end_writes_its_own_connection_first_and_a_late_one_changes_nothing(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """A call that ends before anything carried its connection: the end writes it, then
    the end (the agent's wrap-up, not on the call any more); the same connection sent
    again afterwards (by a start that carried it meanwhile) leaves the record as it is."""
    (connected,) = await _answered(sessions, engine, 1)
    statements = make_statement_engine(engine)
    ended = connected.at.replace(minute=5)
    async with statements.connect() as connection:
        await routing.finish_call(
            connection,
            routing.Ended(
                connected.call_id, connected.agent_id, 30, Outcome.ANSWERED, ended, connected
            ),
        )
    async with statements.connect() as connection:
        await routing.connect_calls(connection, [connected])
    status, answered_at, bridge, activity, events = await _recorded(sessions, connected)
    assert (status, answered_at, bridge, events) == (
        CallStatus.ENDED,
        connected.at,
        connected.bridge_id,
        [connected.at],
    )
    assert activity is AgentActivity.WRAPUP
    async with sessions() as session:
        call = await session.get(Call, connected.call_id)
        assert call is not None and call.outcome is Outcome.ANSWERED and call.ended_at == ended


async def test_a_connection_nothing_carries_is_written_on_its_own(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    (connected,) = await _answered(sessions, engine, 1)
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=0.05)
    pending.add(connected)
    await _until_bridged(sessions, connected)
    assert len(pending) == 0
    await pending.close()


async def test_connections_of_a_failed_start_are_kept_and_written_later(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """The start's statement fails (here: its connection is closed): the connections it
    carried are pending again, and the next write stores them. Nothing is lost."""
    (connected,) = await _answered(sessions, engine, 1)
    statements = make_statement_engine(engine)
    pending = routing.PendingWrites(statements.connect, carry_s=60)
    pending.add(connected)

    async def fails(carried: routing.Carried) -> None:
        async with statements.connect() as connection:
            await connection.close()
            await routing.connect_calls(connection, carried.connects)

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver says about it
        await pending.carried_by(fails)
    assert len(pending) == 1
    assert (await _recorded(sessions, connected))[0] is CallStatus.WAITING
    await pending.close()  # at shutdown: what is pending is written
    assert (await _recorded(sessions, connected))[0] is CallStatus.BRIDGED


async def test_a_connection_waits_its_own_time_for_a_carrier(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline is each connection's own: one added just before an earlier one's
    deadline is not written on its own then (the earlier one was carried), but only when
    nothing carried it within `carry_s` of its own answer."""
    first, second = await _answered(sessions, engine, 2)
    written: list[tuple[float, list[uuid.UUID]]] = []
    finish = routing.finish_call

    async def spied(db: Any, ended: Any, carried: routing.Carried) -> None:
        calls = [c.call_id for c in carried.connects]
        written.append((asyncio.get_running_loop().time(), calls))
        await finish(db, ended, carried)

    monkeypatch.setattr(routing, "finish_call", spied)
    carry_s = 0.4
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=carry_s)
    pending.add(first)

    async def carrier(carried: routing.Carried) -> None:
        async with make_statement_engine(engine).connect() as connection:
            await routing.finish_call(connection, None, carried)

    await pending.carried_by(carrier)  # the first goes with another statement
    await asyncio.sleep(carry_s * 0.75)
    added = asyncio.get_running_loop().time()
    pending.add(second)
    await _until_bridged(sessions, second)
    assert [ids for _, ids in written] == [[first.call_id], [second.call_id]]
    assert written[1][0] - added >= carry_s * 0.99, "written alone only at its own deadline"
    await pending.close()


async def test_a_start_carries_presence_changes_after_its_own_work(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """Phone presence changes go last in a start's statement (migration
    i11_presence_carried): the reservation decided without them, the start's rows are
    the call's, and their result comes back apart (a locked agent:
    tests/db/test_device_presence.py)."""
    await _setup(sessions, 2, Strategy.LINEAR)
    statements = make_statement_engine(engine)
    carried = routing.Carried(presence=DeviceBatch("pbx:1", {1: True, 2: True}))
    async with statements.connect() as connection:
        start = await routing.start_call(
            connection, routing.HotlineConfigs(), number="500", call_id=uuid.uuid4(),
            channel_id="c1", dialled="500", caller_number="030", node="n1",
            now=datetime.now(UTC), carried=carried,
        )  # fmt: skip
    assert start.reason is None and [o.agent_id for o in start.offers] == [1]
    assert carried.presence_written == BatchWritten(frozenset(), (1, 2))
    async with sessions() as session:
        busy = {s.agent_id: s.device_busy for s in await session.scalars(select(AgentState))}
    assert busy == {1: True, 2: True}
    await statements.dispose()


async def _connected_and_written(
    sessions: Sessions, engine: AsyncEngine, n: int
) -> list[routing.Connected]:
    """`_answered`, with the connections written."""
    answered = await _answered(sessions, engine, n)
    async with make_statement_engine(engine).connect() as connection:
        await routing.connect_calls(connection, answered)
    return answered


async def _end_recorded(sessions: Sessions, call_id: uuid.UUID) -> tuple[Any, ...]:
    """(outcome, ended_at, the END events' times)."""
    async with sessions() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        events = await session.scalars(
            select(CallEvent.at).where(CallEvent.call_id == call_id, CallEvent.event == "ANSWERED")
        )
        return call.outcome, call.ended_at, list(events)


async def test_an_end_goes_with_the_next_start_which_may_pick_its_agent(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """A connected call's end waits for the process's next start (PendingWrites.end) and
    goes first in its statement, at the end's own time: the start picks the agent that
    end freed (linear: agent 1 first), one statement for both."""
    (connected,) = await _connected_and_written(sessions, engine, 1)
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=60)
    at = connected.at.replace(minute=5)
    ended = routing.Ended(connected.call_id, connected.agent_id, 0, Outcome.ANSWERED, at, connected)
    assert pending.end(ended, needed_now=False), "carried: its connection is stored"
    assert len(pending) == 1
    assert (await _recorded(sessions, connected))[0] is CallStatus.BRIDGED
    start, carried = await _start_carrying(engine, pending, "next")
    assert carried.ends == [ended]
    assert [o.agent_id for o in start.offers] == [connected.agent_id]
    assert len(pending) == 0
    assert await _end_recorded(sessions, connected.call_id) == (Outcome.ANSWERED, at, [at])
    async with sessions() as session:
        state = await session.get(AgentState, connected.agent_id)
        assert state is not None and state.last_call_end == at and state.calls_taken == 1


async def test_an_end_goes_now_when_its_connection_is_not_stored_or_callers_wait(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """An end waits for a carrier only when a process killed meanwhile loses nothing but
    its time: not while its own connection is pending, nor for a forward (recovery would
    close either as abandoned), nor while callers of the process wait for an agent."""
    first, second = await _answered(sessions, engine, 2)
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=60)
    pending.add(first)
    at = datetime.now(UTC)
    own_pending = routing.Ended(first.call_id, first.agent_id, 0, Outcome.ANSWERED, at, first)
    assert not pending.end(own_pending, needed_now=False)
    assert len(pending) == 0, "the caller's end writes the connection"
    async with make_statement_engine(engine).connect() as connection:
        await routing.connect_calls(connection, [second])
    waited = routing.Ended(second.call_id, second.agent_id, 0, Outcome.ANSWERED, at, second)
    assert not pending.end(waited, needed_now=True)
    assert len(pending) == 0
    forwarded = routing.Ended(second.call_id, None, 0, Outcome.FORWARDED, at, second)
    assert not pending.end(forwarded, needed_now=False), "recovery needs the agent"
    assert len(pending) == 0
    assert pending.end(waited, needed_now=False)
    await pending.close()


async def test_an_end_nothing_carries_is_written_on_its_own_at_its_own_time(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    (connected,) = await _connected_and_written(sessions, engine, 1)
    pending = routing.PendingWrites(make_statement_engine(engine).connect, carry_s=0.05)
    at = connected.at.replace(minute=7)
    ended = routing.Ended(
        connected.call_id, connected.agent_id, 30, Outcome.ANSWERED, at, connected
    )
    assert pending.end(ended, needed_now=False)
    async with asyncio.timeout(5):
        while (await _end_recorded(sessions, connected.call_id))[0] is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert await _end_recorded(sessions, connected.call_id) == (Outcome.ANSWERED, at, [at])
    assert (await _recorded(sessions, connected))[3] is AgentActivity.WRAPUP
    assert len(pending) == 0
    await pending.close()


async def test_an_end_that_frees_an_agent_tells_the_waiting_callers_of_every_process(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """The end NOTIFYs `hotline_agents` (as a phone that went idle does) when it frees an
    agent whose phone is stored idle while a caller of its hotline waits with nobody
    ringing for it: device presence may have written the phone first, and the waiting
    callers of other processes would hear of the agent only at their next poll."""
    first, second = await _connected_and_written(sessions, engine, 2)
    heard: list[str] = []
    got = asyncio.Event()

    def on_notify(*args: Any) -> None:
        heard.append(args[-1])
        got.set()

    statements = make_statement_engine(engine)
    async with engine.connect() as listening:
        driver: Any = (await listening.get_raw_connection()).driver_connection
        await driver.add_listener(device_states.AGENTS_CHANNEL, on_notify)
        async with statements.connect() as connection:  # nobody waits: no NOTIFY
            await routing.finish_call(
                connection,
                routing.Ended(first.call_id, first.agent_id, 0, Outcome.ANSWERED, first.at),
            )
        async with sessions() as session:
            (hotline,) = await session.scalars(select(Hotline))
        await _waiting_call(sessions, hotline, "waits")
        async with statements.connect() as connection:
            await routing.finish_call(
                connection,
                routing.Ended(second.call_id, second.agent_id, 0, Outcome.ANSWERED, second.at),
            )
        async with asyncio.timeout(5):
            await got.wait()
        await driver.remove_listener(device_states.AGENTS_CHANNEL, on_notify)
    assert heard == ["call end"]
