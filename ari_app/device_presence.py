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
that died stop counting after STALE_S. Every query is in services/device_states.py; a batch
of changes is one statement (an SQL function that locks the agents' rows in id order and
recomputes the OR in a later statement of its body, so two nodes writing at once cannot
leave an OR computed from a stale snapshot).

An agent's presence device is the device they are logged in on (a hot desk), else the
device ops bound to them. The device states are a cache: every (re)connect subscribes and
re-reads them, and a periodic resync picks up devices ops added since. Between resyncs the
agents' devices and the stored flags are cached too, so a device state change costs one
statement for what changed and no reads (every call changes its agent's device state
twice); a change that alters no agent's busy/idle (RINGING -> INUSE) writes nothing.
Under load the changes cost no transaction of their own: a change that comes within
COALESCE_S of the last write waits for the process's next start or end of a call, which
takes every change not stored yet (`take`) and writes them last in its statement
(services/routing.py PendingWrites); the tracker writes them itself only when no call did
within CARRY_S of the change. After a quiet spell a change is written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.ari.events import DeviceStateChanged, Event
from ari_app.domain.presence import device_state_busy
from ari_app.services import device_states, nodes
from ari_app.services.device_states import AgentDevices, BatchWritten, DeviceBatch
from ari_app.services.routing import CARRY_S
from ari_app.signals import Broadcast

log = logging.getLogger(__name__)

RESYNC_S = 2.0  # new devices (ops added, hot desks) are picked up this fast
SUBSCRIBE_BATCH = 50  # event sources per subscription request
# Every routed call changes its agent's phone twice (in use, idle): written one statement
# each, that was two of a call's six transactions. A change within COALESCE_S of the last
# write (its own or one a call's statement carried) counts as under load: it waits up to
# CARRY_S for a call's start or end to carry it, else the tracker writes what is pending in
# one statement; after a quiet spell it is written at once. So the tracker writes at most
# 1/COALESCE_S statements of its own a second whatever the call rate, under load almost
# none (the writer process sends a start or end every 0.2 s at 10 calls/s on 2 workers:
# none within 0.5 s about one time in 150), and a change waits at most CARRY_S, under load
# until the process's next statement. The app's own calls do not wait for it: the
# reservation in Postgres keeps an agent from being rung twice, not the device state.
# CARRY_S is the connections' (services/routing.py): what a call's statement may carry
# waits at most that long.
COALESCE_S = 0.25


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


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def devices_to_watch(agents: Iterable[AgentDevices], bound: Iterable[str] = ()) -> set[str]:
    return {a.presence_device for a in agents if a.presence_device} | set(bound)


def compute_busy(
    agent: AgentDevices, device_states: dict[str, str], external: frozenset[str]
) -> bool:
    """Any call on the agent's presence device, or one the app placed to their number."""
    device_busy = bool(
        agent.presence_device and device_state_busy(device_states.get(agent.presence_device, ""))
    )
    return device_busy or bool(agent.external_numbers & external)


def default_tracker(node: str | None = None) -> str:
    """This process's tracker name: its node and process id (several workers on a node
    each place their own calls to mobiles)."""
    return f"{node or socket.gethostname()}:{os.getpid()}"[:96]


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
        *,
        statement_sessions: async_sessionmaker[AsyncSession] | None = None,
        external_calls: ExternalCalls | None = None,
        node: str | None = None,
        pbx: str | None = None,
    ) -> None:
        self.ari = ari
        # Where the flows of this app say which external numbers they call (the app's one).
        self.external_calls = external_calls if external_calls is not None else ExternalCalls()
        self.sessions = sessions
        # The writes are one statement each (services/device_states.py): sent on an
        # AUTOCOMMIT session they need no BEGIN and COMMIT round trips.
        self.statement_sessions = statement_sessions or sessions
        # The processes of one PBX (workers of `hotline serve --workers N`) all see the same
        # device states: only the first live one (services/nodes.py) writes them, the others
        # write only the calls they placed to mobiles. Without a PBX: always.
        self.node, self.pbx = node, pbx
        self.writes_devices = True
        self.tracker = tracker or default_tracker()
        # False while the ARI stream is down: this tracker's rows are then left to go stale
        # (its Asterisk may be dead, and with it every call it saw).
        self.live = True
        self.states: dict[str, str] = {}  # device -> last known Asterisk device state
        self.subscribed: set[str] = set()  # on the current connection
        self.followed: frozenset[str] = frozenset()  # whose device_busy is kept current
        self.changed = Broadcast()  # some agent's device_busy changed (the panel)
        # Some agent's phone went idle: waiting callers may have an agent (app.py wires it
        # to them, or Postgres' NOTIFY does for every process: device_states.py).
        self.freed = Broadcast()
        self._agents: list[AgentDevices] = []  # as of the last sync
        self._stored: dict[int, bool] = {}  # this tracker's rows, as last seen/written
        self._wake = asyncio.Event()
        self._changed_at: float | None = None  # loop time of the first change not taken
        self.writes = 0  # statements of its own that stored changes
        self.carried_writes = 0  # calls' statements that stored changes (take)
        self._last_write = float("-inf")  # loop time of the last of either
        # One write at a time: a batch a call's statement carries (`take`) or one of the
        # tracker's own (`_alone`).
        self._in_flight: DeviceBatch | None = None
        self._landed = asyncio.Event()
        self._landed.set()
        self._writing = False
        self.external_calls.changed.subscribe(self._changed)

    async def on_connect(self) -> None:
        """Subscribe to every agent device and re-read their states (Asterisk may have
        restarted: subscriptions and states are gone), then store what changed."""
        self.subscribed = set()
        self.live = True
        try:
            await self._sync()
            await self.apply()
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
                if old is None or device_state_busy(old) != device_state_busy(state.state):
                    self._changed()  # RINGING -> INUSE changes nobody's presence

    def _changed(self) -> None:
        if self._changed_at is None:
            self._changed_at = loop_time()
        self._wake.set()

    async def run(self) -> None:
        """Apply changes as they come (a change under load waits for a call's statement to
        carry it, at most CARRY_S); resync devices every RESYNC_S, busy or not."""
        loop = asyncio.get_running_loop()
        next_sync = loop.time() + RESYNC_S
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation at shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_sync):
                    await self._wake.wait()
            self._wake.clear()
            while True:  # a call's statement may take the changes meanwhile
                due = self._due()
                if due is None or min(due, next_sync) <= loop.time():
                    break
                await asyncio.sleep(min(due, next_sync) - loop.time())
            try:
                if loop.time() >= next_sync:
                    next_sync = loop.time() + RESYNC_S
                    await self._sync()
                    self._changed()  # what the resync changed, as any change
                elif due is not None:
                    await self.apply()
            except Exception as exc:
                log.warning("device states: update failed: %s", exc)

    def _due(self) -> float | None:
        """When the tracker writes what changed (None: a call's statement took it)."""
        at = self._changed_at
        if at is None:
            return None
        return at + CARRY_S if at - self._last_write < COALESCE_S else at

    async def _sync(self) -> None:
        async with self.sessions() as session:
            facts = await device_states.device_facts(session, self.tracker)
            if self.pbx is not None:
                first = await nodes.first_alive(session, pbx=self.pbx)
                writes = first is None or first == self.node
                if writes != self.writes_devices:
                    log.info(
                        "device presence: %s",
                        "this process writes the device states"
                        if writes
                        else f"{first} writes the device states",
                    )
                self.writes_devices = writes
        self._agents = facts.agents
        self._stored = facts.stored
        wanted = devices_to_watch(facts.agents, facts.bound)
        # Only the writer subscribes: Asterisk would send every device's changes to each
        # process, and the others would parse and drop them.
        new = sorted(wanted - self.subscribed) if self.writes_devices else []
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
        # The PBX's writer (this process or a sibling, within a resync) keeps `device_busy`
        # of these devices current: flows need not ask Asterisk before ringing one.
        self.followed = frozenset(wanted)
        # Alone: a carried batch locks rows too.
        async with self._alone(), self.statement_sessions() as session, session.begin():
            corrected = await device_states.refresh(session, self.tracker if self.live else None)
        if corrected:
            log.info("device presence: corrected agent(s) %s from all nodes", corrected)
            self.changed.notify()
            self.freed.notify()

    def _changes(self) -> dict[int, bool]:
        """Where this tracker's view differs from what it last stored (compared with the
        cache of the last sync and writes)."""
        external = self.external_calls.numbers
        states = self.states if self.writes_devices else {}
        changes = {}
        for agent in self._agents:
            busy = compute_busy(agent, states, external)
            stored = self._stored.get(agent.agent_id)
            if stored is None and not busy:
                continue  # no row and nothing to say
            if busy != stored:
                changes[agent.agent_id] = busy
        return changes

    async def apply(self) -> list[int]:
        """Store this tracker's view where it differs from what the states say, in a
        statement of its own; returns the agents changed."""
        async with self._alone():
            self._changed_at = None  # what changes from here on waits for the next write
            changes = self._changes()
            if not changes:
                return []
            try:
                async with self.statement_sessions() as session, session.begin():
                    flipped = await device_states.store_busy(session, changes, self.tracker)
            except BaseException:
                if self._changed_at is None:  # tried again at the next wake (or resync)
                    self._changed_at = loop_time()
                raise
        self.writes += 1
        self._stored_now(changes, flipped)
        return list(changes)

    @contextlib.asynccontextmanager
    async def _alone(self) -> AsyncIterator[None]:
        """A write of the tracker's own, once no call's statement carries a batch of it:
        one write at a time, so that an older view never lands after a newer one (`take`
        gives nothing meanwhile)."""
        while not self._landed.is_set():  # another call may take one before this wakes
            await self._landed.wait()
        self._writing = True
        try:
            yield
        finally:
            self._writing = False

    def take(self) -> DeviceBatch | None:
        """The changes not stored yet, for a call's start or end to write (PendingWrites);
        None while another write is under way, or when nothing changed."""
        if self._writing or self._in_flight is not None:
            return None
        changes = self._changes()
        if not changes:
            return None
        self._changed_at = None
        self._in_flight = DeviceBatch(self.tracker, changes)
        self._landed.clear()
        return self._in_flight

    def carried(self, batch: DeviceBatch, written: BatchWritten | None) -> None:
        """The statement that took `batch` is over; what it did not write (it failed, or
        an agent's row was locked) goes out with the next write."""
        if batch is not self._in_flight:
            log.error("device presence: a batch not in flight came back (%s)", batch)
            return
        self._in_flight = None
        self._landed.set()
        if written is None or written.unwritten:
            self._changed()
        if written is None:
            return
        stored = {a: b for a, b in batch.busy.items() if a not in written.unwritten}
        if stored:
            self.carried_writes += 1
            self._stored_now(stored, list(written.flipped))

    def _stored_now(self, changes: dict[int, bool], flipped: list[int]) -> None:
        self._stored.update(changes)  # only once stored: a failed write is retried
        self._last_write = loop_time()
        if log.isEnabledFor(logging.DEBUG):  # two per routed call: not at INFO
            log.debug(
                "device presence: %s",
                ", ".join(f"agent {a} {'busy' if b else 'idle'}" for a, b in changes.items()),
            )
        if flipped:
            self.changed.notify()
        # A phone gone idle may free an agent (even when another node's tracker had
        # stored the flag first and `flipped` is empty).
        if not all(changes.values()):
            self.freed.notify()

    def close(self) -> None:
        self.external_calls.changed.unsubscribe(self._changed)
