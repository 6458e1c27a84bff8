"""Presence from device states: is there any call on an agent's phone, whatever its kind?

Colleagues see "on a call" for any call on the agent's device (hotline, internal, private),
so the app follows Asterisk's device state of every agent device (`deviceState:PJSIP/1001`
subscriptions), plus the calls it placed itself to agents' external numbers (handover and
escalation calls; no device state exists for a mobile). The result is persisted in
`AgentState.device_busy`, which the presence service reads and which keeps the routing from
ringing a busy phone, and every change is announced on `DevicePresence.changed`.

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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.ari.events import DeviceStateChanged, Event
from ari_app.db.models import Agent, AgentState, AgentTarget, TargetKind
from ari_app.signals import Broadcast

log = logging.getLogger(__name__)

BUSY_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})
RESYNC_S = 2.0  # new devices (ops added, hot desks) are picked up this fast
SUBSCRIBE_BATCH = 50  # event sources per subscription request


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


async def store_busy(session: AsyncSession, busy: dict[int, bool]) -> None:
    """Write `device_busy` for these agents (creating the state row if an agent has none)."""
    for agent_id, value in busy.items():
        await session.execute(
            insert(AgentState)
            .values(agent_id=agent_id, device_busy=value)
            .on_conflict_do_update(
                index_elements=[AgentState.agent_id], set_={"device_busy": value}
            )
        )


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

    def __init__(self, ari: AriClient, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.ari = ari
        self.sessions = sessions
        self.states: dict[str, str] = {}  # device -> last known Asterisk device state
        self.subscribed: set[str] = set()  # on the current connection
        self.changed = Broadcast()  # some agent's device_busy changed
        self._agents: list[AgentDevices] = []  # as of the last sync
        self._stored: dict[int, bool | None] = {}  # device_busy in the DB, as last seen/written
        self._wake = asyncio.Event()
        external_calls.changed.subscribe(self._wake.set)

    async def on_connect(self) -> None:
        """Subscribe to every agent device and re-read their states (Asterisk may have
        restarted: subscriptions and states are gone), then store what changed."""
        self.subscribed = set()
        try:
            await self._sync()
        except Exception as exc:  # reconcile must not stop the stream; the resync retries
            log.warning("device states: initial sync failed: %s", exc)

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
        self._agents = agents
        self._stored = {a.agent_id: a.stored_busy for a in agents}
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

    async def apply(self) -> list[int]:
        """Store `device_busy` where it differs from what the states say (compared with the
        cache of the last sync and writes); returns the agents changed."""
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
                await store_busy(session, changes)
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
