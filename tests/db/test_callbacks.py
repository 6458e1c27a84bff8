"""Callbacks against the real Postgres: the SQL queue head agrees with the domain model,
one attempt at a time across sessions, only delivered numbers, ops' list and cancel."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Call, CallStatus, Hotline
from ari_app.db.models import Callback as CallbackRow
from ari_app.domain.callbacks import CallbackState, Entry, QueueModel
from ari_app.domain.errors import Conflict, Refused
from ari_app.services import admin, callbacks, calls

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def _hotline(sessions: Sessions, number: str = "500", after: int = 60) -> Hotline:
    async with sessions() as session, session.begin():
        return await admin.create_hotline(
            session, number, "Bürgerbüro", callback_after_s=after, callback_attempts=2,
            callback_interval_s=120,
        )  # fmt: skip


async def _waiting(sessions: Sessions, hotline: Hotline, caller: str | None = "030123") -> Call:
    async with sessions() as session, session.begin():
        call = await calls.open_call(
            session,
            channel_id=f"ch-{uuid.uuid4().hex[:8]}",
            dialled=hotline.number,
            caller_number=caller,
            hotline_id=hotline.id,
            node="t",
            status=CallStatus.WAITING,
        )
    return call


async def _request(sessions: Sessions, call: Call, now: datetime = NOW) -> int:
    async with sessions() as session, session.begin():
        row = await callbacks.request(session, call.id, now)
        await calls.set_status(session, call.id, CallStatus.ENDED)  # the caller hung up
        return row.id


async def test_sql_queue_head_agrees_with_the_model(sessions: Sessions) -> None:
    """Random queues of live callers and callbacks (pending, due or not, dialling): the
    SQL of next_in_line picks the entry QueueModel.next_entry picks."""
    rng = random.Random(15)
    for round_ in range(12):
        hotline = await _hotline(sessions, f"5{round_:02d}")
        model = QueueModel()
        refs: dict[int, str] = {}  # model seq -> call id or callback id
        for _ in range(rng.randint(0, 7)):
            call = await _waiting(sessions, hotline)
            seq = model.arrive()
            kind = rng.choice(["live", "pending", "later", "dialling", "gone"])
            if kind == "live":
                refs[seq] = str(call.id)
                continue
            if kind == "gone":  # hung up without a callback
                async with sessions() as session, session.begin():
                    await calls.set_status(session, call.id, CallStatus.ENDED)
                model.hang_up(seq)
                continue
            refs[seq] = str(await _request(sessions, call))
            model.request_callback(seq)
            entry: Entry = model.entries[seq]
            async with sessions() as session, session.begin():
                if kind == "later":  # a failed attempt: the next one in two minutes
                    entry.due_at = 120
                    await session.execute(
                        update(CallbackRow)
                        .where(CallbackRow.id == int(refs[seq]))
                        .values(next_attempt_at=NOW + timedelta(seconds=120))
                    )
                elif kind == "dialling":
                    entry.state = CallbackState.DIALLING
                    assert await callbacks.start_attempt(
                        session, int(refs[seq]), node="t", agent_id=None, now=NOW
                    )
        for at in (0, 130):
            expected = model.next_entry(at)
            async with sessions() as session:
                got = await callbacks.next_in_line(session, hotline.id, NOW + timedelta(seconds=at))
            want = None if expected is None else (expected.kind, refs[expected.seq])
            assert got == want, (round_, at, model.entries)


async def test_one_attempt_at_a_time_across_sessions(sessions: Sessions) -> None:
    hotline = await _hotline(sessions)
    callback_id = await _request(sessions, await _waiting(sessions, hotline))

    async def claim(node: str) -> bool:
        async with sessions() as session, session.begin():
            return await callbacks.start_attempt(
                session, callback_id, node=node, agent_id=None, now=NOW
            )

    results = await asyncio.gather(*(claim(f"n{i}") for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    async with sessions() as session, session.begin():
        state = await callbacks.finish_attempt(session, callback_id, connected=False, now=NOW)
        assert state is CallbackState.PENDING  # 1 of 2 attempts: again in two minutes
        row = await session.get(CallbackRow, callback_id)
        assert row is not None and row.next_attempt_at == NOW + timedelta(seconds=120)
    async with sessions() as session, session.begin():
        assert not await callbacks.start_attempt(
            session, callback_id, node="t", agent_id=None, now=NOW + timedelta(seconds=60)
        )  # not due yet
        assert await callbacks.start_attempt(
            session, callback_id, node="t", agent_id=None, now=NOW + timedelta(seconds=120)
        )
        with pytest.raises(Conflict):
            await callbacks.cancel(session, callback_id, NOW)  # being dialled
    async with sessions() as session, session.begin():
        state = await callbacks.finish_attempt(session, callback_id, connected=False, now=NOW)
        assert state is CallbackState.FAILED
        with pytest.raises(Conflict):
            await callbacks.finish_attempt(session, callback_id, connected=True, now=NOW)


async def test_only_the_calling_number_and_only_when_offered(sessions: Sessions) -> None:
    hotline = await _hotline(sessions)
    off = await _hotline(sessions, "600", after=0)
    for withheld in (None, "anonymous", ""):
        call = await _waiting(sessions, hotline, caller=withheld)
        with pytest.raises(Refused):
            async with sessions() as session, session.begin():
                await callbacks.request(session, call.id, NOW)
    with pytest.raises(Refused):
        async with sessions() as session, session.begin():
            await callbacks.request(session, (await _waiting(sessions, off)).id, NOW)
    call = await _waiting(sessions, hotline, caller="+4930555")
    await _request(sessions, call)
    with pytest.raises(Conflict):
        async with sessions() as session, session.begin():
            await callbacks.request(session, call.id, NOW)
    async with sessions() as session:
        row = await session.scalar(select(CallbackRow))
        assert row is not None
        assert (row.number, row.queue_seq, row.entered_at) == (
            "+4930555",
            call.queue_seq,
            call.entered_at,
        )


async def test_cli_list_and_cancel(cli: Cli, sessions: Sessions) -> None:
    hotline = await _hotline(sessions)
    first = await _request(sessions, await _waiting(sessions, hotline, caller="0301"))
    second = await _request(sessions, await _waiting(sessions, hotline, caller="0302"))
    rows = await cli.json("callback", "list", "--hotline", "500")
    assert [(r["id"], r["number"], r["state"]) for r in rows] == [
        (first, "0301", "pending"),
        (second, "0302", "pending"),
    ]
    await cli.ok("callback", "cancel", str(first))
    assert [r["id"] for r in await cli.json("callback", "list")] == [second]
    assert [r["state"] for r in await cli.json("callback", "list", "--all")] == [
        "cancelled",
        "pending",
    ]
    assert "cancelled already" in await cli.fails("callback", "cancel", str(first))
    assert "no callback" in await cli.fails("callback", "cancel", "999")
    assert "no hotline" in await cli.fails("callback", "list", "--hotline", "999")
    table = (await cli.ok("callback", "list")).stdout
    assert "0302" in table and "pending" in table
    shown = (await cli.ok("line", "show", "500")).stdout
    assert "callback after" in shown
    await cli.ok("line", "update", "500", "--callback-after", "0")
    async with sessions() as session:
        assert (await admin.get_hotline(session, "500")).callback_after_s == 0


async def test_callbacks_in_the_report(cli: Cli, sessions: Sessions) -> None:
    from zoneinfo import ZoneInfo

    from ari_app.services import reports

    hotline = await _hotline(sessions)
    made = [await _waiting(sessions, hotline, caller=f"030{i}") for i in range(3)]
    ids = [await _request(sessions, call, now=call.entered_at) for call in made]
    for call, callback_id, outcomes in zip(made, ids, ([True], [False, False], []), strict=True):
        at = call.entered_at
        for connected in outcomes:
            async with sessions() as session, session.begin():
                assert await callbacks.start_attempt(
                    session, callback_id, node="t", agent_id=None, now=at
                )
                at += timedelta(seconds=300)
                await callbacks.finish_attempt(session, callback_id, connected=connected, now=at)
            at += timedelta(seconds=120)  # the hotline's interval before the next attempt
    today = made[0].entered_at.astimezone(ZoneInfo(hotline.timezone)).date()
    async with sessions() as session:
        [row] = await reports.hotline_report(session, today, today, hotline_number="500")
    assert (row.callbacks_requested, row.callbacks_completed, row.callbacks_failed) == (3, 1, 1)
    assert row.avg_time_to_callback_s == pytest.approx(300, abs=1)
    day = today.isoformat()  # the hotline's day (the machine's may differ near midnight)
    table = (await cli.ok("report", "--hotline", "500", "--from", day, "--to", day)).stdout
    assert "3 (1 ok, 1 failed, avg 5m)" in table


async def test_purge_forgets_the_number_of_finished_callbacks(sessions: Sessions) -> None:
    from ari_app.services import retention

    hotline = await _hotline(sessions)
    done = await _request(sessions, await _waiting(sessions, hotline, caller="0301"))
    open_ = await _request(sessions, await _waiting(sessions, hotline, caller="0302"))
    async with sessions() as session, session.begin():
        await callbacks.cancel(session, done, NOW)
    async with sessions() as session, session.begin():
        await retention.purge_older_than(session, datetime.now(UTC) + timedelta(seconds=5), None)
    async with sessions() as session:
        numbers = dict((await session.execute(select(CallbackRow.id, CallbackRow.number))).all())
    assert numbers == {done: "", open_: "0302"}  # an open callback still has to be made


async def test_panel_shows_callbacks_waiting(sessions: Sessions) -> None:
    from ari_app.services.hotline_stats import hotline_stats

    hotline = await _hotline(sessions)
    await _hotline(sessions, "600", after=0)
    first = await _request(sessions, await _waiting(sessions, hotline, caller="0301"))
    await _request(sessions, await _waiting(sessions, hotline, caller="0302"))
    async with sessions() as session, session.begin():
        await callbacks.cancel(session, first, NOW)
    async with sessions() as session:
        stats = {s.number: s for s in await hotline_stats(session, datetime.now(UTC))}
    assert stats["500"].callbacks_waiting == 1
    assert stats["600"].callbacks_waiting is None  # offers none: nothing shown
    assert stats["500"].as_dict()["callbacks_waiting"] == 1


async def test_reservations_serve_live_callers_and_callbacks_in_entry_order(
    sessions: Sessions,
) -> None:
    """One agent, callers 1 and 3 waiting live, caller 2 asked for a callback: the agent
    goes to 1, then to the callback (one attempt at a time), then to 3; a live caller
    behind a due callback never takes its agent, a callback behind a live caller neither."""
    from ari_app.db.models import Outcome, Strategy
    from ari_app.services import agents, routing

    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Bürgerbüro", callback_after_s=60, strategy=Strategy.RING_ALL
        )
        agent = await admin.create_agent(session, "101", "A", device="PJSIP/1001")
        await admin.add_member(session, hotline, agent)
        await agents.login(session, agent, target=None, path="cli", actor="test")
    first, second, third = [await _waiting(sessions, hotline, f"030{i}") for i in (1, 2, 3)]
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await callbacks.request(session, second.id, now)

    async def reserve(call: Call) -> list[int]:
        async with sessions() as session, session.begin():
            offers = await routing.reserve_agents(
                session, call_id=call.id, hotline=hotline, queue_seq=call.queue_seq,
                tried=(), node="t", now=datetime.now(UTC),
            )  # fmt: skip
        return [o.agent_id for o in offers]

    async def take() -> list[callbacks.Attempt]:
        async with sessions() as session, session.begin():
            return await callbacks.take_due(session, node="t", now=datetime.now(UTC))

    async def finish(call_id: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            await routing.finish_call(
                session,
                routing.Ended(call_id, agent.id, 0, Outcome.ANSWERED, datetime.now(UTC)),
            )

    async with sessions() as session:  # the caller hears the callback counted ahead
        assert await routing.position_in_queue(session, third) == 3
    assert await reserve(third) == []  # caller 1 and the callback are ahead
    assert await take() == []  # caller 1 is ahead of the callback
    assert await reserve(first) == [agent.id]
    await finish(first.id)
    assert await reserve(third) == []  # the callback is ahead now
    [attempt] = await take()
    assert (attempt.call_id, attempt.number, attempt.offer.agent_id) == (
        second.id,
        "0302",
        agent.id,
    )
    assert await take() == []  # one attempt in flight
    async with sessions() as session:
        row = await session.get(CallbackRow, attempt.callback_id)
        assert row is not None and (row.state, row.attempts) == ("dialling", 1)
        call = await session.get(Call, second.id)
        assert call is not None and call.status is CallStatus.CALLBACK
    # The agent did not answer: the attempt is given back uncounted, the agent released.
    async with sessions() as session, session.begin():
        assert await callbacks.give_back(session, attempt.callback_id, now=datetime.now(UTC))
        await routing.release_agent(
            session, agent_id=agent.id, call_id=second.id, unanswered=True, limit=0
        )
    assert await reserve(third) == []  # still the callback's turn
    [again] = await take()
    assert again.attempt == 1
    async with sessions() as session, session.begin():
        await callbacks.connected(
            session, again, channel_id="cb-citizen", bridge_id="cb-bridge", node="t",
            target_kind=again.offer.target_kind, now=datetime.now(UTC),
        )  # fmt: skip
    await finish(second.id)
    assert await reserve(third) == [agent.id]
    async with sessions() as session:
        row = await session.get(CallbackRow, again.callback_id)
        assert row is not None and row.state == "completed"
        call = await session.get(Call, second.id)
        assert call is not None and call.outcome is Outcome.ANSWERED
        assert (call.channel_id, call.bridge_id) == ("cb-citizen", "cb-bridge")


async def test_recover_gives_back_the_attempts_of_a_dead_process(sessions: Sessions) -> None:
    hotline = await _hotline(sessions)
    mine = await _request(sessions, await _waiting(sessions, hotline, caller="0301"))
    running = await _request(sessions, await _waiting(sessions, hotline, caller="0302"))
    async with sessions() as session, session.begin():
        for callback_id in (mine, running):
            assert await callbacks.start_attempt(
                session, callback_id, node="n1", agent_id=None, now=NOW
            )
    async with sessions() as session, session.begin():
        back = await callbacks.recover(session, node="n1", running=frozenset({running}), now=NOW)
    async with sessions() as session:
        rows = {r.id: r for r in await session.scalars(select(CallbackRow))}
    assert back == [rows[mine].call_id]
    assert (rows[mine].state, rows[mine].attempts, rows[mine].next_attempt_at) == (
        "pending", 0, NOW,
    )  # fmt: skip
    assert rows[running].state == "dialling"


async def test_routing_serves_entry_order_under_random_operations(sessions: Sessions) -> None:
    """Done-when 4 against the real SQL: random arrivals, callbacks, hang-ups, agents
    becoming free and attempts failing or connecting. Whenever agents are free, every
    waiting caller (in random order) and the dialler try to take one; the entries that
    get an agent are exactly those QueueModel serves (the lowest entry order among what
    can be served now), and no callback ever has two attempts at once."""
    from ari_app.db.models import Outcome, Strategy
    from ari_app.services import agents, routing

    rng = random.Random(1515)
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Bürgerbüro", strategy=Strategy.LONGEST_IDLE,
            callback_after_s=60, callback_attempts=2, callback_interval_s=60,
        )  # fmt: skip
        staff = []
        for i in (1, 2):
            agent = await admin.create_agent(session, f"10{i}", f"A{i}", device=f"PJSIP/100{i}")
            await admin.add_member(session, hotline, agent)
            await agents.login(session, agent, target=None, path="cli", actor="test")
            staff.append(agent.id)
    model = QueueModel(max_attempts=2, interval_s=60)
    call_of: dict[int, Call] = {}  # model seq -> call
    seq_of: dict[uuid.UUID, int] = {}
    busy: dict[int, tuple[int, callbacks.Attempt | None]] = {}  # agent -> (seq, attempt)
    requested: set[int] = set()
    t = 0.0

    def at() -> datetime:
        return NOW + timedelta(seconds=t)

    async def contend(live: list[int]) -> set[int]:
        """Every live waiting caller and the dialler try for the free agents."""
        won: set[int] = set()
        tries: list[int | None] = [*live, None]  # None: the dialler
        rng.shuffle(tries)
        for seq in tries:
            async with sessions() as session, session.begin():
                if seq is None:
                    for attempt in await callbacks.take_due(session, node="t", now=at()):
                        won_seq = seq_of[attempt.call_id]
                        assert won_seq not in {s for s, _ in busy.values()}, "two attempts"
                        busy[attempt.offer.agent_id] = (won_seq, attempt)
                        won.add(won_seq)
                    continue
                call = call_of[seq]
                offers = await routing.reserve_agents(
                    session, call_id=call.id, hotline=hotline, queue_seq=call.queue_seq,
                    tried=(), node="t", now=at(),
                )  # fmt: skip
                for offer in offers:
                    busy[offer.agent_id] = (seq, None)
                    won.add(seq)
                    await calls.set_status(session, call.id, CallStatus.BRIDGED)
        return won

    from ari_app.domain.callbacks import Kind

    for _ in range(120):
        op = rng.choice(["arrive", "arrive", "callback", "hang_up", "free", "tick"])
        live = sorted(s for s, e in model.entries.items() if e.kind is Kind.LIVE)
        if op == "arrive":
            call = await _waiting(sessions, hotline, caller=f"030{len(call_of)}")
            seq = model.arrive()
            call_of[seq], seq_of[call.id] = call, seq
        elif op == "callback" and live:
            seq = rng.choice(live)
            async with sessions() as session, session.begin():
                await callbacks.request(session, call_of[seq].id, at())
            model.request_callback(seq)
            requested.add(seq)
        elif op == "hang_up" and live:
            seq = rng.choice(live)
            async with sessions() as session, session.begin():
                await calls.close_call(session, call_of[seq].id, Outcome.ABANDONED, now=at())
            model.hang_up(seq)
        elif op == "free" and busy:
            agent_id = rng.choice(sorted(busy))
            seq, attempt = busy.pop(agent_id)
            connected = rng.random() < 0.5
            async with sessions() as session, session.begin():
                if attempt is not None and connected:
                    await callbacks.connected(
                        session, attempt, channel_id="c", bridge_id="b", node="t",
                        target_kind=attempt.offer.target_kind, now=at(),
                    )  # fmt: skip
                if attempt is None or connected:
                    await routing.finish_call(
                        session,
                        routing.Ended(call_of[seq].id, agent_id, 0, Outcome.ANSWERED, at()),
                    )
                else:
                    await routing.release_agent(
                        session, agent_id=agent_id, call_id=attempt.call_id, unanswered=False,
                        limit=0,
                    )  # fmt: skip
                    await callbacks.finish_attempt(
                        session, attempt.callback_id, connected=False, now=at()
                    )
            if attempt is not None:
                model.attempt_done(seq, t, connected=connected)
        elif op == "tick":
            t += rng.randint(0, 10) * 10
        # Agents that are free are taken now, by the entries the rule picks.
        waiting = [s for s, e in model.entries.items() if e.kind is Kind.LIVE]
        expected = set()
        for _ in range(len(staff) - len(busy)):
            entry = model.serve(t)
            if entry is not None:
                expected.add(entry.seq)
        assert await contend(waiting) == expected, (op, t, model.entries)
    served_callbacks = {s for s in model.assigned if s in requested}
    async with sessions() as session:
        states = sorted((r.state, r.attempts) for r in await session.scalars(select(CallbackRow)))
    # The run covers completed callbacks, retries and callbacks failed for good.
    assert {"completed", "failed"} <= {state for state, _ in states}, states
    assert served_callbacks and set(model.assigned) - served_callbacks, model.assigned


async def test_no_callback_starts_while_the_hotline_is_closed(sessions: Sessions) -> None:
    from ari_app.services import agents

    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "500", "Bürgerbüro", callback_after_s=60, opening_hours="sa 09:00-12:00"
        )
        agent = await admin.create_agent(session, "101", "A", device="PJSIP/1001")
        await admin.add_member(session, hotline, agent)
        await agents.login(session, agent, target=None, path="cli", actor="test")
    await _request(sessions, await _waiting(sessions, hotline))
    friday, saturday = NOW, NOW + timedelta(days=1)  # 10:00 UTC, 11:00 in Berlin
    async with sessions() as session, session.begin():
        assert await callbacks.take_due(session, node="t", now=friday) == []
    async with sessions() as session, session.begin():
        [attempt] = await callbacks.take_due(session, node="t", now=saturday)
    assert attempt.offer.agent_id == agent.id
