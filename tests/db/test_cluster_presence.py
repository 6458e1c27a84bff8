"""Device presence across nodes against the real Postgres: each node's tracker sees only
the calls on its own Asterisk, and an agent busy on any node is busy for every node (not
last writer wins); a dead node's view stops counting; concurrent writers from two nodes
always leave `device_busy` equal to the OR of their views."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from flow_fakes import FakeAriClient, event
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ari_app.db.models import AgentState, CallStatus, NodeDeviceState, Strategy
from ari_app.device_presence import DevicePresence
from ari_app.services import admin, agents, calls, device_states, nodes, presence, routing
from ari_app.services.device_states import STALE_S, store_busy

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]


class Ari(FakeAriClient):
    async def subscribe(self, event_source: object, **_: object) -> None:
        self._note("subscribe", event_source)


def _device_event(device: str, state: str) -> object:
    return event("DeviceStateChanged", device_state={"name": device, "state": state})


async def _setup(sessions: Sessions, n: int = 2) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", strategy=Strategy.LINEAR)
        for i in range(n):
            agent = await admin.create_agent(
                session, f"10{i + 1}", f"A{i}", device=f"PJSIP/100{i + 1}"
            )
            await admin.add_member(session, hotline, agent)
            await agents.login(session, agent, target=None, path="cli", actor="t")


async def _busy(sessions: Sessions) -> dict[int, bool]:
    async with sessions() as session:
        rows = await session.execute(select(AgentState.agent_id, AgentState.device_busy))
        return {agent_id: busy for agent_id, busy in rows}


async def _offered(sessions: Sessions) -> list[int]:
    """Which agent(s) a new caller of hotline 500 would be offered now (then undone)."""
    async with sessions() as session, session.begin():
        hotline = await admin.get_hotline(session, "500")
        call = await calls.open_call(
            session,
            channel_id="c",
            dialled="500",
            caller_number="030",
            hotline_id=hotline.id,
            node="t",
        )
        await calls.set_status(session, call.id, CallStatus.WAITING)
        offers = await routing.reserve_agents(
            session,
            call_id=call.id,
            hotline=hotline,
            queue_seq=call.queue_seq,
            tried=set(),
            node="t",
            now=datetime.now(UTC),
        )
        await session.rollback()
    return [o.agent_id for o in offers]


async def _node(sessions: Sessions, name: str, states: dict[str, str]) -> DevicePresence:
    tracker = DevicePresence(Ari(device_states=states), sessions, f"{name}:1")  # type: ignore[arg-type]
    await tracker.on_connect()
    return tracker


async def test_busy_on_one_node_is_busy_for_all(sessions: Sessions) -> None:
    await _setup(sessions)
    # Agent 1 is on a private call on node a; node b sees the phone idle.
    a = await _node(sessions, "a", {"PJSIP/1001": "INUSE"})
    b = await _node(sessions, "b", {})
    b.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
    await b.apply()  # node b writes last: still busy, its view is only one of two
    assert await _busy(sessions) == {1: True, 2: False}
    assert await _offered(sessions) == [2], "no node rings an agent busy on another"
    async with sessions() as session:
        shown = {r["agent"]: r["presence"] for r in await presence.read_presence(session)}
    assert shown == {"101": "on_call", "102": "available"}
    # The call on node a ends: free again, whoever wrote last.
    a.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
    await a.apply()
    assert await _busy(sessions) == {1: False, 2: False}
    assert await _offered(sessions) == [1]
    # Busy on node b now: node a's idle view does not hide it.
    b.on_event(_device_event("PJSIP/1001", "RINGING"))
    await b.apply()
    a.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
    await a.apply()
    assert await _busy(sessions) == {1: True, 2: False}
    a.close()
    b.close()


async def test_a_dead_nodes_view_goes_stale(sessions: Sessions) -> None:
    """Node a dies with agent 1 on a call there: once its rows are older than STALE_S,
    any living node's resync frees the agent; a disconnected tracker stops touching."""
    await _setup(sessions)
    a = await _node(sessions, "a", {"PJSIP/1001": "INUSE"})
    b = await _node(sessions, "b", {})
    assert (await _busy(sessions))[1] is True
    await a.on_disconnect()  # its Asterisk is gone: a stops touching its rows
    async with sessions() as session, session.begin():
        # What STALE_S seconds without a touch look like (no sleeping in tests).
        await session.execute(
            update(NodeDeviceState)
            .where(NodeDeviceState.tracker == "a:1")
            .values(seen_at=datetime.now(UTC) - timedelta(seconds=2 * STALE_S))
        )
    await b.on_connect()  # a resync, as the run loop does every RESYNC_S
    assert await _busy(sessions) == {1: False, 2: False}
    a.close()
    b.close()


async def test_concurrent_writers_leave_the_or_of_their_views(sessions: Sessions) -> None:
    """Two nodes write random views of the same agents at once, many times: the stored
    flag always ends as the OR of the last views (no write lost to a stale snapshot)."""
    await _setup(sessions, n=4)
    rng = random.Random(12)
    last: dict[str, dict[int, bool]] = {"a:1": {}, "b:1": {}}

    async def writer(tracker: str) -> None:
        for _ in range(40):
            view = {agent: rng.random() < 0.5 for agent in rng.sample([1, 2, 3, 4], 3)}
            async with sessions() as session, session.begin():
                await store_busy(session, view, tracker)
            last[tracker].update(view)

    await asyncio.gather(writer("a:1"), writer("b:1"))
    expected = {
        agent: last["a:1"].get(agent, False) or last["b:1"].get(agent, False)
        for agent in (1, 2, 3, 4)
    }
    assert await _busy(sessions) == expected


async def test_one_process_per_pbx_writes_its_device_states(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    """Two workers of one node see the same device states: only the first live one writes
    them (one statement per change instead of one per worker), the other only its own calls
    to mobiles; when the writer dies, the other takes over at its next resync. A phone
    gone idle is announced through Postgres to every process, whichever wrote it."""
    await _setup(sessions)
    async with sessions() as session, session.begin():
        for name in ("n-w0", "n-w1"):
            await nodes.register(session, name=name, pbx="pbx", pid=1)
    states = {"PJSIP/1001": "INUSE"}

    def worker(name: str) -> DevicePresence:
        return DevicePresence(
            Ari(device_states=states),  # type: ignore[arg-type]
            sessions,
            f"{name}:1",
            node=name,
            pbx="pbx",
        )

    w0, w1 = worker("n-w0"), worker("n-w1")
    await w0.on_connect()
    await w1.on_connect()
    assert (w0.writes_devices, w1.writes_devices) == (True, False)
    # Only the writer subscribes to the device states; both know which devices are followed.
    assert w0.ari.called("subscribe") and not w1.ari.called("subscribe")  # type: ignore[attr-defined]
    assert w0.followed == w1.followed == {"PJSIP/1001", "PJSIP/1002"}
    assert await _rows(sessions) == {("n-w0:1", 1): True}
    assert await _busy(sessions) == {1: True, 2: False}

    heard = asyncio.Event()
    listener = asyncio.create_task(device_states.listen_agents_freed(engine, heard.set))
    try:
        await asyncio.sleep(0.2)  # LISTEN issued (an early wake-up is harmless here)
        heard.clear()
        for w in (w0, w1):
            w.on_event(_device_event("PJSIP/1001", "NOT_INUSE"))
        assert await w1.apply() == []  # the non-writer writes nothing
        await w0.apply()
        async with asyncio.timeout(5):
            await heard.wait()
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert await _busy(sessions) == {1: False, 2: False}

    # The writer dies (its supervisor marks it dead): the other one writes from now on.
    async with sessions() as session, session.begin():
        await nodes.mark_dead(session, name="n-w0", pid=1)
    w1.on_event(_device_event("PJSIP/1001", "RINGING"))
    await w1.on_connect()  # a resync, as the run loop does every RESYNC_S
    assert w1.writes_devices
    assert await _busy(sessions) == {1: True, 2: False}
    w0.close()
    w1.close()


async def _rows(sessions: Sessions) -> dict[tuple[str, int], bool]:
    async with sessions() as session:
        rows = await session.execute(
            select(NodeDeviceState.tracker, NodeDeviceState.agent_id, NodeDeviceState.busy)
        )
        return {(tracker, agent_id): busy for tracker, agent_id, busy in rows}
