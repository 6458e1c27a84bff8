"""Device presence against the real Postgres with a fake ARI: subscriptions to agents'
devices, `AgentState.device_busy` from device states and from calls the app placed to
agents' external numbers, and the exposed presence that results."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flow_fakes import FakeAriClient, event
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ari_app import device_presence
from ari_app.db.models import Agent, AgentState, TargetKind
from ari_app.db.session import make_sessionmaker, make_statement_engine
from ari_app.device_presence import RESYNC_S, DevicePresence
from ari_app.domain.enums import Outcome
from ari_app.services import admin, agents, presence, routing
from ari_app.services.device_states import BatchWritten, DeviceBatch

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]


class Ari(FakeAriClient):
    async def subscribe(self, event_source: Any, **_: Any) -> None:
        self._note("subscribe", event_source)


async def _agents(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
        anna = await admin.create_agent(
            session, "101", "Anna", device="PJSIP/1001", external_numbers=["01701"]
        )
        bert = await admin.create_agent(session, "102", "Bert", device="PJSIP/1002")
        for agent in (anna, bert):
            await admin.add_member(session, hotline, agent)
        await agents.login(session, anna, target=None, path="cli", actor="t")


async def _busy(sessions: Sessions) -> dict[int, bool]:
    async with sessions() as session:
        return {
            agent_id: (await session.get(AgentState, agent_id)).device_busy  # type: ignore[union-attr]
            for agent_id in (1, 2)
        }


async def _presence(sessions: Sessions) -> dict[str, str]:
    async with sessions() as session:
        return {r["agent"]: r["presence"] for r in await presence.read_presence(session)}


def _device_event(device: str, state: str) -> Any:
    return event("DeviceStateChanged", device_state={"name": device, "state": state})


@contextlib.asynccontextmanager
async def _running(sessions: Sessions, ari: Ari) -> AsyncIterator[DevicePresence]:
    """A connected tracker with its run() loop going; stopped and closed afterwards."""
    tracker = DevicePresence(ari, sessions)  # type: ignore[arg-type]
    await tracker.on_connect()
    runner = asyncio.create_task(tracker.run())
    try:
        yield tracker
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        tracker.close()


async def test_connect_subscribes_and_seeds(sessions: Sessions) -> None:
    await _agents(sessions)
    ari = Ari(device_states={"PJSIP/1002": "INUSE"})
    tracker = DevicePresence(ari, sessions)  # type: ignore[arg-type]
    changed = asyncio.Event()
    tracker.changed.subscribe(changed.set)
    await tracker.on_connect()
    (subscribe,) = ari.called("subscribe")
    assert sorted(subscribe.args[0]) == ["deviceState:PJSIP/1001", "deviceState:PJSIP/1002"]
    assert await _busy(sessions) == {1: False, 2: True}
    assert changed.is_set()
    # Bert is logged out, yet on a call: colleagues see "on a call", whatever the call.
    assert await _presence(sessions) == {"101": "available", "102": "on_call"}
    # A reconnect subscribes again (Asterisk may have restarted and forgotten them).
    await tracker.on_connect()
    assert len(ari.called("subscribe")) == 2
    tracker.close()


async def test_device_state_events_update_presence(sessions: Sessions) -> None:
    await _agents(sessions)
    async with _running(sessions, Ari()) as tracker:
        for state, expected in (("RINGING", True), ("INUSE", True), ("NOT_INUSE", False)):
            tracker.on_event(_device_event("PJSIP/1001", state))
            await _until(tracker, sessions, {1: expected, 2: False})
        tracker.on_event(_device_event("PJSIP/1001", "ONHOLD"))
        await _until(tracker, sessions, {1: True, 2: False})
        assert (await _presence(sessions))["101"] == "on_call"
        tracker.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
        await _until(tracker, sessions, {1: False, 2: False})
        # A call the app placed to Anna's mobile counts as a call too.
        with tracker.external_calls.call("01701"):
            await _until(tracker, sessions, {1: True, 2: False})
        await _until(tracker, sessions, {1: False, 2: False})


async def test_changes_after_a_write_wait_and_go_out_together(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writes per routed call were two of its transactions: a change within
    COALESCE_S of the last write waits CARRY_S (for a call's statement to carry it: none
    here), and the tracker then stores everything that changed meanwhile in one
    statement."""
    monkeypatch.setattr(device_presence, "COALESCE_S", 1.0)
    monkeypatch.setattr(device_presence, "CARRY_S", 1.0)
    await _agents(sessions)
    loop = asyncio.get_running_loop()
    async with _running(sessions, Ari()) as tracker:
        before = tracker.writes
        started = loop.time()
        tracker.on_event(_device_event("PJSIP/1001", "INUSE"))
        await _until(tracker, sessions, {1: True, 2: False})
        assert tracker.writes == before + 1
        assert loop.time() - started < 0.9  # after a quiet spell: at once
        # Four changes of both phones, spread over 0.3 s, all within the wait.
        changed = loop.time()
        for device, state in (
            ("PJSIP/1002", "INUSE"),
            ("PJSIP/1001", "NOT_INUSE"),
            ("PJSIP/1001", "INUSE"),
            ("PJSIP/1001", "NOT_INUSE"),
        ):
            tracker.on_event(_device_event(device, state))
            await asyncio.sleep(0.1)
        assert tracker.writes == before + 1  # nothing written during the wait
        await _until(tracker, sessions, {1: False, 2: True})
        assert tracker.writes == before + 2  # one statement for all four
        assert loop.time() - changed >= 1.0

    tracker.close()


async def test_hot_desk_device_counts_not_the_bound_one(sessions: Sessions) -> None:
    await _agents(sessions)
    async with sessions() as session, session.begin():
        anna = await admin.get_agent(session, "101")
        await agents.login(
            session,
            anna,
            target=agents.Target("PJSIP/1005", TargetKind.DEVICE),
            path="hotdesk",
            actor="t",
        )
    ari = Ari(device_states={"PJSIP/1001": "INUSE", "PJSIP/1005": "NOT_INUSE"})
    tracker = DevicePresence(ari, sessions)  # type: ignore[arg-type]
    await tracker.on_connect()
    sources = ari.called("subscribe")[0].args[0]
    assert "deviceState:PJSIP/1005" in sources
    # Someone else uses Anna's desk phone: Anna, at the hot desk, is free.
    assert await _busy(sessions) == {1: False, 2: False}
    tracker.on_event(_device_event("PJSIP/1005", "INUSE"))
    await tracker.apply()
    assert await _busy(sessions) == {1: True, 2: False}
    tracker.close()


async def _until(
    tracker: DevicePresence, sessions: Sessions, expected: dict[int, bool], timeout: float = 3.0
) -> None:
    """Until the stored flags are as expected; woken by the tracker's change signal."""
    changed = asyncio.Event()
    tracker.changed.subscribe(changed.set)
    try:
        async with asyncio.timeout(timeout):
            while await _busy(sessions) != expected:
                await changed.wait()
                changed.clear()
    finally:
        tracker.changed.unsubscribe(changed.set)


async def test_many_devices_are_subscribed_in_batches(sessions: Sessions) -> None:
    """Asterisk answers 400 to one subscription with 150 event sources (seen in the
    benchmark): every device is followed, in requests Asterisk accepts."""
    async with sessions() as session, session.begin():
        for i in range(120):
            await admin.create_agent(session, f"{200 + i}", f"A{i}", device=f"PJSIP/{8000 + i}")
    ari = Ari()
    tracker = DevicePresence(ari, sessions)  # type: ignore[arg-type]
    await tracker.on_connect()
    batches = [c.args[0] for c in ari.called("subscribe")]
    assert all(len(b) <= 50 for b in batches) and len(batches) == 3
    assert sorted(s for b in batches for s in b) == sorted(
        f"deviceState:PJSIP/{8000 + i}" for i in range(120)
    )
    tracker.close()


async def test_a_steady_stream_of_changes_does_not_stop_the_resync(sessions: Sessions) -> None:
    """The resync (new devices, hot desks) runs every RESYNC_S even while device changes
    keep waking the tracker more often than that."""
    await _agents(sessions)
    ari = Ari()
    async with _running(sessions, ari) as tracker:
        async with sessions() as session, session.begin():
            await admin.create_agent(session, "103", "Cleo", device="PJSIP/1003")
        async with asyncio.timeout(RESYNC_S * 3):
            state = "INUSE"
            while not any("deviceState:PJSIP/1003" in c.args[0] for c in ari.called("subscribe")):
                state = "NOT_INUSE" if state == "INUSE" else "INUSE"
                tracker.on_event(_device_event("PJSIP/1002", state))
                await asyncio.sleep(RESYNC_S / 10)


@contextlib.contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent on `engine` meanwhile (BEGIN and COMMIT are not among them:
    the AUTOCOMMIT sessions below send none)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_a_batch_of_device_changes_is_one_statement(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """Changes that arrive together are written in one statement (a transaction of its
    own), and a change that alters nobody's busy/idle writes nothing: the load-independent
    cost the benchmark's DB round trips per call are made of."""
    await _agents(sessions)
    tracker = DevicePresence(
        Ari(),  # type: ignore[arg-type]
        sessions,
        statement_sessions=make_sessionmaker(make_statement_engine(engine)),
    )
    await tracker.on_connect()
    with _statements(engine) as sent:
        tracker.on_event(_device_event("PJSIP/1001", "RINGING"))
        tracker.on_event(_device_event("PJSIP/1002", "RINGING"))
        assert sorted(await tracker.apply()) == [1, 2]
    assert len(sent) == 1 and "hotline_device_busy" in sent[0]
    assert await _busy(sessions) == {1: True, 2: True}
    with _statements(engine) as sent:
        tracker.on_event(_device_event("PJSIP/1001", "INUSE"))  # still busy
        assert await tracker.apply() == []
        tracker.on_event(_device_event("PJSIP/1002", "NOT_INUSE"))
        tracker.on_event(_device_event("PJSIP/1002", "INUSE"))  # idle and back: no change
        assert await tracker.apply() == []
    assert sent == []
    tracker.close()


async def _end_of_no_call(db: Any, carried: routing.Carried) -> None:
    """A call's end as the flows send it (a call this test never started: only what it
    carries is written)."""
    await routing.finish_call(
        db, routing.Ended(uuid.uuid4(), None, 0, Outcome.ANSWERED, datetime.now(UTC)), carried
    )


@contextlib.asynccontextmanager
async def _carrying(
    sessions: Sessions, engine: AsyncEngine
) -> AsyncIterator[tuple[DevicePresence, routing.PendingWrites]]:
    """A running tracker whose changes the calls' statements of `PendingWrites` carry."""
    statements = make_statement_engine(engine)
    tracker = DevicePresence(
        Ari(),  # type: ignore[arg-type]
        sessions,
        statement_sessions=make_sessionmaker(statements),
    )
    pending = routing.PendingWrites(statements.connect)
    pending.presence = tracker
    await tracker.on_connect()
    runner = asyncio.create_task(tracker.run())
    try:
        yield tracker, pending
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        tracker.close()
        await pending.close()
        await statements.dispose()


async def _carry(pending: routing.PendingWrites, engine: AsyncEngine) -> routing.Carried:
    async with make_statement_engine(engine).connect() as connection:

        async def end(carried: routing.Carried) -> routing.Carried:
            await _end_of_no_call(connection, carried)
            return carried

        return await pending.carried_by(end)


async def test_under_load_the_changes_go_with_the_calls_statements(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change within COALESCE_S of the last write waits for a call's start or end: the
    call's statement writes it (no transaction of the tracker's own), and the tracker,
    finding it stored when its time comes, writes nothing."""
    monkeypatch.setattr(device_presence, "COALESCE_S", 0.5)
    await _agents(sessions)
    async with _carrying(sessions, engine) as (tracker, pending):
        tracker.on_event(_device_event("PJSIP/1001", "INUSE"))
        await _until(tracker, sessions, {1: True, 2: False})
        assert (tracker.writes, tracker.carried_writes) == (1, 0)  # a quiet spell: at once
        tracker.on_event(_device_event("PJSIP/1002", "INUSE"))
        tracker.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
        carried = await _carry(pending, engine)
        assert carried.presence == DeviceBatch(tracker.tracker, {1: False, 2: True})
        assert carried.presence_written == BatchWritten(frozenset(), (1, 2))
        assert await _busy(sessions) == {1: False, 2: True}
        assert (tracker.writes, tracker.carried_writes) == (1, 1)
        # Nothing left for the tracker's own write at its deadline; a change after it is
        # written by the tracker (no call carried it), in one statement of its own.
        tracker.on_event(_device_event("PJSIP/1002", "NOT_INUSE"))
        await _until(tracker, sessions, {1: False, 2: False})
        assert (tracker.writes, tracker.carried_writes) == (2, 1)
        assert (await _carry(pending, engine)).presence is None  # nothing to carry


@pytest.mark.parametrize("table", [AgentState, Agent])
async def test_a_carried_change_never_waits_for_a_locked_agent(
    sessions: Sessions, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, table: Any
) -> None:
    """The batch is the last work of a call's statement and takes only the rows it gets
    at once (SKIP LOCKED: waiting there could deadlock two starts). An agent whose state
    row another transaction holds, or whose own row (a login by phone locks it, then the
    state row), is left unwritten, and the tracker's next write stores it."""
    monkeypatch.setattr(device_presence, "COALESCE_S", 60.0)  # only calls carry here
    monkeypatch.setattr(device_presence, "RESYNC_S", 120.0)
    await _agents(sessions)
    async with _carrying(sessions, engine) as (tracker, pending):
        tracker._last_write = asyncio.get_running_loop().time()  # as under load
        async with sessions() as holder, holder.begin():
            await holder.execute(
                select(table).where(sa_inspect(table).primary_key[0] == 2).with_for_update()
            )
            tracker.on_event(_device_event("PJSIP/1001", "INUSE"))
            tracker.on_event(_device_event("PJSIP/1002", "INUSE"))
            async with asyncio.timeout(2):  # a wait for the lock would be a deadlock
                carried = await _carry(pending, engine)
            assert carried.presence_written == BatchWritten(frozenset({2}), (1,))
            assert (tracker.writes, tracker.carried_writes) == (0, 1)
        assert await _busy(sessions) == {1: True, 2: False}
        assert await tracker.apply() == [2]  # still to write, and written now
        assert await _busy(sessions) == {1: True, 2: True}
