"""Presence from device states: is there any call on an agent's phone, whatever its kind?

Colleagues see "on a call" for any call on the agent's device (hotline, internal, private),
so the app follows Asterisk's device state of every agent device (`deviceState:PJSIP/1001`
subscriptions), plus the calls it placed itself to agents' external numbers (handover and
escalation calls; no device state exists for a mobile). The result is persisted in
`AgentState.device_busy`, which the presence service reads and which keeps the routing from
ringing a busy phone, and every change is announced on `DevicePresence.changed`.

Several nodes (each an Asterisk with its own `hotline serve`) share the agents, and each
sees only the calls on its own Asterisk. So every tracker writes its own view as rows of
`node_device_states` (tracker = node and process) and `AgentState.device_busy` is the OR
over the fresh rows: busy on any node is busy everywhere. Rows count while their tracker
touches them (every resync, only while its ARI stream is connected), so the calls of a node
that died stop counting after STALE_S. Every writer locks the agents' `agent_states` rows
(in id order) before it writes and recomputes the OR in a later statement, so two nodes
writing at once cannot leave an OR computed from a stale snapshot.

An agent's presence device is the device they are logged in on (a hot desk), else the
device ops bound to them. The device states are a cache: every (re)connect subscribes and
re-reads them, and a periodic resync picks up devices ops added since. Between resyncs the
agents' devices and the stored flags are cached too, so a device state change costs one
write of what changed and no reads (every call changes its agent's device state twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.ari.events import DeviceStateChanged, Event
from ari_app.db.models import Agent, AgentState, AgentTarget, NodeDeviceState, TargetKind
from ari_app.signals import Broadcast

log = logging.getLogger(__name__)

BUSY_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})
RESYNC_S = 2.0  # new devices (ops added, hot desks) are picked up this fast
SUBSCRIBE_BATCH = 50  # event sources per subscription request
# A tracker's rows count this long after its last touch (it touches every RESYNC_S while its
# Asterisk is connected): a dead node's calls stop making agents busy after this.
STALE_S = 10.0
# Rows of trackers gone this long (restarted processes) are deleted.
FORGET_S = 3600.0


def is_busy(device_state: str) -> bool:
    return device_state.upper() in BUSY_STATES


class ExternalCalls:
    """Calls this process placed to external numbers (handover, escalation), by number.

    A mobile has no device state, so a flow that calls one says so here and the tracker
    counts the agent whose configured number it is as on a call.
    """

    def __init__(self) -> None:
        self._active: Counter[str] = Counter()
        self.changed = Broadcast()

    @property
    def numbers(self) -> frozenset[str]:
        return frozenset(n for n, c in self._active.items() if c > 0)

    def started(self, number: str) -> None:
        self._active[number] += 1
        self.changed.notify()

    def ended(self, number: str) -> None:
        if self._active[number] > 1:
            self._active[number] -= 1
        else:
            self._active.pop(number, None)
        self.changed.notify()

    @contextlib.contextmanager
    def call(self, number: str) -> Iterator[None]:
        self.started(number)
        try:
            yield
        finally:
            self.ended(number)


# One per process: flows and the tracker meet here.
external_calls = ExternalCalls()


@dataclass(frozen=True)
class AgentDevices:
    agent_id: int
    presence_device: str | None  # hot-desk device while logged in on one, else the bound one
    external_numbers: frozenset[str]
    stored_busy: bool | None  # AgentState.device_busy; None: no state row yet


async def agent_devices(session: AsyncSession) -> list[AgentDevices]:
    bound = {
        agent_id: address
        for agent_id, address in await session.execute(
            select(AgentTarget.agent_id, AgentTarget.address).where(
                AgentTarget.kind == TargetKind.DEVICE
            )
        )
    }
    externals: dict[int, set[str]] = {}
    for agent_id, address in await session.execute(
        select(AgentTarget.agent_id, AgentTarget.address).where(
            AgentTarget.kind == TargetKind.EXTERNAL
        )
    ):
        externals.setdefault(agent_id, set()).add(address)
    rows = await session.execute(
        select(Agent.id, AgentState.target, AgentState.target_kind, AgentState.device_busy)
        .outerjoin(AgentState, AgentState.agent_id == Agent.id)
        .order_by(Agent.id)
    )
    result = []
    for agent_id, target, target_kind, busy in rows:
        device = target if target_kind is TargetKind.DEVICE and target else bound.get(agent_id)
        result.append(AgentDevices(agent_id, device, frozenset(externals.get(agent_id, ())), busy))
    return result


def devices_to_watch(agents: Iterable[AgentDevices], bound: Iterable[str] = ()) -> set[str]:
    return {a.presence_device for a in agents if a.presence_device} | set(bound)


def compute_busy(
    agent: AgentDevices, device_states: dict[str, str], external: frozenset[str]
) -> bool:
    """Any call on the agent's presence device, or one the app placed to their number."""
    device_busy = bool(
        agent.presence_device and is_busy(device_states.get(agent.presence_device, ""))
    )
    return device_busy or bool(agent.external_numbers & external)


def default_tracker(node: str | None = None) -> str:
    """This process's tracker name: its node and process id (several workers on a node
    each place their own calls to mobiles)."""
    return f"{node or socket.gethostname()}:{os.getpid()}"[:96]


def _busy_anywhere() -> ColumnElement[bool]:
    """Some tracker touched within STALE_S says the agent's device is busy (correlated with
    the `agent_states` row of the enclosing statement)."""
    return exists().where(
        NodeDeviceState.agent_id == AgentState.agent_id,
        NodeDeviceState.busy.is_(True),
        NodeDeviceState.seen_at > func.now() - timedelta(seconds=STALE_S),
    )


async def _lock_agents(session: AsyncSession, agent_ids: Iterable[int]) -> list[int]:
    """Lock these agents' state rows in id order (every writer does, so trackers do not
    deadlock each other); returns the ids locked."""
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    return list(
        await session.scalars(
            select(AgentState.agent_id)
            .where(AgentState.agent_id.in_(ids))
            .order_by(AgentState.agent_id)
            .with_for_update()
        )
    )


async def _combine(session: AsyncSession, agent_ids: list[int]) -> None:
    """`device_busy` := busy on any node, for agents whose rows the caller locked. A
    statement of its own: it sees every row committed before the lock was granted.

    A device going from busy to idle also stamps `device_idle_at` (both SET expressions
    see the old row): presence then shows the agent as not available for a wrap-up time,
    whatever the call was (services/presence.py, issue 13 finding 8)."""
    if agent_ids:
        busy = _busy_anywhere()
        await session.execute(
            update(AgentState)
            .where(AgentState.agent_id.in_(agent_ids))
            .values(
                device_busy=busy,
                device_idle_at=case(
                    (and_(AgentState.device_busy, ~busy), func.now()),
                    else_=AgentState.device_idle_at,
                ),
            )
        )


async def store_busy(session: AsyncSession, busy: dict[int, bool], tracker: str) -> None:
    """Write this tracker's view of these agents and recompute their `device_busy`
    (creating state rows for agents that have none)."""
    if not busy:
        return
    await session.execute(
        insert(AgentState)
        .values([{"agent_id": a, "device_busy": False} for a in sorted(busy)])
        .on_conflict_do_nothing(index_elements=[AgentState.agent_id])
    )
    locked = await _lock_agents(session, busy)
    if not locked:
        return
    rows = insert(NodeDeviceState).values(
        [{"tracker": tracker, "agent_id": a, "busy": busy[a]} for a in locked]
    )
    await session.execute(
        rows.on_conflict_do_update(
            index_elements=[NodeDeviceState.tracker, NodeDeviceState.agent_id],
            set_={"busy": rows.excluded.busy, "seen_at": func.now()},
        )
    )
    await _combine(session, locked)


async def refresh(session: AsyncSession, tracker: str | None) -> list[int]:
    """Touch this tracker's rows (None: its Asterisk is not connected, let them go stale),
    forget long-gone trackers, and correct `device_busy` where it no longer is the OR of
    the fresh rows (a node died, or `mark_busy` said busy and no device followed). Returns
    the agents corrected."""
    if tracker is not None:
        await session.execute(
            update(NodeDeviceState)
            .where(NodeDeviceState.tracker == tracker)
            .values(seen_at=func.now())
        )
    await session.execute(
        delete(NodeDeviceState).where(
            NodeDeviceState.seen_at < func.now() - timedelta(seconds=FORGET_S)
        )
    )
    stale = await session.scalars(
        select(AgentState.agent_id).where(AgentState.device_busy.is_distinct_from(_busy_anywhere()))
    )
    ids = await _lock_agents(session, list(stale))
    await _combine(session, ids)
    return ids


async def tracker_rows(session: AsyncSession, tracker: str) -> dict[int, bool]:
    """This tracker's view as stored: agent -> busy."""
    rows = await session.execute(
        select(NodeDeviceState.agent_id, NodeDeviceState.busy).where(
            NodeDeviceState.tracker == tracker
        )
    )
    return {agent_id: busy for agent_id, busy in rows}


async def bound_devices(session: AsyncSession) -> list[str]:
    return list(
        await session.scalars(
            select(AgentTarget.address).where(AgentTarget.kind == TargetKind.DEVICE)
        )
    )


class DevicePresence:
    """Follows agents' device states and keeps `AgentState.device_busy` in step.

    Wiring (app.py): `on_connect()` after every (re)connect, `on_event` as an extra stream
    handler, `run()` as a task; subscribe to `changed` to hear about presence changes.
    """

    def __init__(
        self,
        ari: AriClient,
        sessions: async_sessionmaker[AsyncSession],
        tracker: str | None = None,
    ) -> None:
        self.ari = ari
        self.sessions = sessions
        self.tracker = tracker or default_tracker()
        # False while the ARI stream is down: this tracker's rows are then left to go stale
        # (its Asterisk may be dead, and with it every call it saw).
        self.live = True
        self.states: dict[str, str] = {}  # device -> last known Asterisk device state
        self.subscribed: set[str] = set()  # on the current connection
        self.changed = Broadcast()  # some agent's device_busy changed
        self._agents: list[AgentDevices] = []  # as of the last sync
        self._stored: dict[int, bool] = {}  # this tracker's rows, as last seen/written
        self._wake = asyncio.Event()
        external_calls.changed.subscribe(self._wake.set)

    async def on_connect(self) -> None:
        """Subscribe to every agent device and re-read their states (Asterisk may have
        restarted: subscriptions and states are gone), then store what changed."""
        self.subscribed = set()
        self.live = True
        try:
            await self._sync()
        except Exception as exc:  # reconcile must not stop the stream; the resync retries
            log.warning("device states: initial sync failed: %s", exc)

    async def on_disconnect(self) -> None:
        self.live = False

    def on_event(self, event: Event) -> None:
        if isinstance(event, DeviceStateChanged):
            state = event.device_state
            old = self.states.get(state.name)
            if old != state.state:
                log.debug("device %s is %s", state.name, state.state)
                self.states[state.name] = state.state
                if old is None or is_busy(old) != is_busy(state.state):
                    self._wake.set()  # RINGING -> INUSE changes nobody's presence

    async def run(self) -> None:
        """Apply changes as they come; resync devices every RESYNC_S, busy or not."""
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + RESYNC_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sync - loop.time()))
            self._wake.clear()
            try:
                if loop.time() >= next_sync:
                    next_sync = loop.time() + RESYNC_S
                    await self._sync()  # applies too
                else:
                    await self.apply()
            except Exception as exc:
                log.warning("device states: update failed: %s", exc)

    async def _sync(self) -> None:
        async with self.sessions() as session:
            agents = await agent_devices(session)
            bound = await bound_devices(session)
            stored = await tracker_rows(session, self.tracker)
        self._agents = agents
        self._stored = stored
        wanted = devices_to_watch(agents, bound)
        new = sorted(wanted - self.subscribed)
        if new:
            # Asterisk refuses too many event sources in one request (HTTP 400 at 150).
            for start in range(0, len(new), SUBSCRIBE_BATCH):
                batch = new[start : start + SUBSCRIBE_BATCH]
                await self.ari.subscribe([f"deviceState:{d}" for d in batch])
            for device in new:
                try:
                    self.states[device] = (await self.ari.get_device_state(device)).state
                except AriError as exc:
                    log.debug("device %s: no state (%s)", device, exc)
            self.subscribed.update(new)
            log.info("device states: following %d device(s)", len(self.subscribed))
        await self.apply()
        async with self.sessions() as session, session.begin():
            corrected = await refresh(session, self.tracker if self.live else None)
        if corrected:
            log.info("device presence: corrected agent(s) %s from all nodes", corrected)
            self.changed.notify()

    async def apply(self) -> list[int]:
        """Store this tracker's view where it differs from what the states say (compared
        with the cache of the last sync and writes); returns the agents changed."""
        external = external_calls.numbers
        changes = {}
        for agent in self._agents:
            busy = compute_busy(agent, self.states, external)
            stored = self._stored.get(agent.agent_id)
            if stored is None and not busy:
                continue  # no row and nothing to say
            if busy != stored:
                changes[agent.agent_id] = busy
        if changes:
            async with self.sessions() as session, session.begin():
                await store_busy(session, changes, self.tracker)
            self._stored.update(changes)  # only once stored: a failed write is retried
            log.info(
                "device presence: %s",
                ", ".join(f"agent {a} {'busy' if b else 'idle'}" for a, b in changes.items()),
            )
            self.changed.notify()
        return list(changes)

    def close(self) -> None:
        external_calls.changed.unsubscribe(self._wake.set)


async def mark_busy(session: AsyncSession, agent_ids: Iterable[int]) -> None:
    """Set device_busy at once (e.g. a flow placed a call); the tracker corrects it later."""
    ids = list(agent_ids)
    if ids:
        await session.execute(
            update(AgentState).where(AgentState.agent_id.in_(ids)).values(device_busy=True)
        )
