"""Base of every call flow: one asyncio task and one inbox per call, an explicit state
machine (an Enum of states, one handler per event type, one `_transition()` that logs),
cleanup in `finally` (DESIGN.md, conventions 1-3)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ari_app.ari.errors import AriError
from ari_app.ari.events import Event
from ari_app.db.session import make_sessionmaker
from ari_app.device_presence import ExternalCalls
from ari_app.domain.sounds import localise
from ari_app.services.routing import HotlineConfigs, PendingWrites
from ari_app.signals import Broadcast, WaitQueue

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )

    from ari_app.ari.client import AriClient
    from ari_app.config import Settings
    from ari_app.db.session import Db
    from ari_app.web.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
# What "the database is unavailable" looks like: SQLAlchemy's wrappers, refused connections.
DB_ERRORS = (SQLAlchemyError, OSError)
PERSIST_FOR_S = 600.0


@dataclass(frozen=True)
class Timer:
    """A flow-internal event: a timer the flow started has fired. A name `kind:subject`
    (e.g. `confirm:<leg channel>`) is one timer per subject, handled by `on_timer_<kind>`."""

    name: str

    @property
    def kind(self) -> str:
        return self.name.partition(":")[0]

    @property
    def subject(self) -> str:
        return self.name.partition(":")[2]


@dataclass(frozen=True)
class Stop:
    """A flow-internal event: the app shuts down or wants this flow gone."""

    reason: str


FlowEvent = Event | Timer | Stop


class ChannelRegistry:
    """Which flow owns which channel: the dispatcher routes a channel's events to its owner;
    a flow claims the extra channels it creates (agent legs) so their events come to it."""

    def __init__(self) -> None:
        self._owners: dict[str, CallFlow[Any]] = {}

    def claim(self, channel_id: str, flow: CallFlow[Any]) -> None:
        self._owners[channel_id] = flow

    def release(self, channel_id: str) -> None:
        self._owners.pop(channel_id, None)

    def owner(self, channel_id: str) -> CallFlow[Any] | None:
        return self._owners.get(channel_id)

    def channels(self) -> list[str]:
        return list(self._owners)

    def flows(self) -> list[CallFlow[Any]]:
        """Each owning flow once."""
        return list({id(f): f for f in self._owners.values()}.values())

    def release_flow(self, flow: CallFlow[Any]) -> None:
        for channel_id, owner in list(self._owners.items()):
            if owner is flow:
                del self._owners[channel_id]


K = TypeVar("K")


class FlowTasks(Generic[K]):
    """Flows running in their own tasks outside the dispatcher (handovers, escalations),
    by key; a reference keeps each task from being garbage-collected. One per kind and app,
    a member of the FlowContext (never module state: tests and apps do not share them)."""

    def __init__(self) -> None:
        self._running: dict[K, tuple[CallFlow[Any], asyncio.Task[None]]] = {}

    def start(self, key: K, flow: CallFlow[Any]) -> asyncio.Task[None]:
        task = asyncio.create_task(flow.run(), name=flow.channel_id)
        self._running[key] = (flow, task)

        def done(_: asyncio.Task[None]) -> None:
            if self._running.get(key, (None, None))[1] is task:
                del self._running[key]

        task.add_done_callback(done)
        return task

    def __contains__(self, key: object) -> bool:
        return key in self._running

    def keys(self) -> frozenset[K]:
        return frozenset(self._running)

    def flows(self) -> list[CallFlow[Any]]:
        return [flow for flow, _ in self._running.values()]

    @property
    def active(self) -> int:
        return sum(not task.done() for _, task in self._running.values())

    async def wait(self, timeout: float) -> None:
        """Until every flow ended by itself, for up to `timeout`."""
        tasks = [task for _, task in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def stop(self, timeout: float, reason: str = "shutdown") -> None:
        """Tell every flow to stop; cancel (and await) those still running after `timeout`."""
        entries = list(self._running.values())
        for flow, _ in entries:
            flow.deliver(Stop(reason))
        tasks = [task for _, task in entries]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@dataclass(kw_only=True)
class FlowContext:
    """Everything a flow may use; built once by the composition root (app.py)."""

    ari: AriClient
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    registry: ChannelRegistry = field(default_factory=ChannelRegistry)
    # Notified whenever an agent may have become free (call end, wrap-up over, login).
    agents_changed: Broadcast = field(default_factory=Broadcast)
    # This process's waiting callers: a notification wakes them one after another, as
    # long as each gets an agent (signals.WaitQueue), not all at once.
    waiting: WaitQueue = field(default_factory=WaitQueue)
    metrics: Metrics | None = None
    # The pool's connections where each statement commits on its own (no BEGIN/COMMIT
    # round trips), for units of work that are one statement: bare connections for the
    # call path (statement(), services/routing.py), sessions for the rest
    # (one_statement()). None: `sessions` serves those too.
    statement_engine: AsyncEngine | None = None
    # The hotlines' configuration as this process last read it (a call's start checks its
    # version in the same statement: services/routing.py).
    hotline_configs: HotlineConfigs = field(default_factory=HotlineConfigs)
    # Connections (agents who answered) and phone presence changes that the process's next
    # start or end writes (services/routing.py PendingWrites).
    pending: PendingWrites = field(init=False)
    _statement_sessions: async_sessionmaker[AsyncSession] = field(init=False, repr=False)

    # Devices whose state device presence follows (ari_app/device_presence.py): their
    # `device_busy` is already in the reservation's condition, so no ARI request asks
    # again before ringing them. Empty (tests, no tracker): every device is asked.
    followed_devices: Callable[[], Collection[str]] = frozenset
    # Calls this app placed to external numbers (device presence counts their agents busy).
    external_calls: ExternalCalls = field(default_factory=ExternalCalls)
    # Flows with their own task: handovers by id, escalations by hotline id, callback
    # attempts by callback id.
    handovers: FlowTasks[str] = field(default_factory=FlowTasks)
    escalations: FlowTasks[int] = field(default_factory=FlowTasks)
    callbacks: FlowTasks[int] = field(default_factory=FlowTasks)

    def __post_init__(self) -> None:
        self.agents_changed.subscribe(self.waiting.notify)
        self.pending = PendingWrites(self.statement)
        self._statement_sessions = (
            self.sessions
            if self.statement_engine is None
            else make_sessionmaker(self.statement_engine)
        )

    def one_statement(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for a unit of work that is one statement (see statement_engine)."""
        return self._statement_sessions

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for one statement that commits on its own, without a session
        (the call path's, services/routing.py: the ORM session costs more client CPU than
        the statement). Without a statement engine: a session's connection, committed."""
        if self.statement_engine is not None:
            async with self.statement_engine.connect() as connection:
                yield connection
            return
        async with self.sessions() as session, session.begin():
            yield await session.connection()

    @property
    def node(self) -> str:
        return self.settings.node

    @property
    def app_name(self) -> str:
        return self.settings.ari_app


S = TypeVar("S", bound=enum.Enum)

START = "start"  # the event of a flow's start(): before anything came through its inbox
# An event handler that takes longer holds up every later event of its call (and the
# caller hears nothing new): the watchdog logs it (asyncari does the same).
SLOW_HANDLER_S = 0.5


def event_key(event: FlowEvent) -> str:
    """The event's name in transition tables: the ARI event type, `timer:<kind>`, `Stop`."""
    return f"timer:{event.kind}" if isinstance(event, Timer) else type(event).__name__


def handler_name(key: str) -> str:
    """The method that handles the event `key` (see event_key)."""
    if key == START:
        return "start"
    if key.startswith("timer:"):
        return f"on_timer_{key.removeprefix('timer:')}"
    return f"on_{key}"


@dataclass(frozen=True)
class On(Generic[S]):
    """One row of a transition table: in each of `states`, each of `events` is handled, and
    its handler may move the flow to any of `to` (none: it stays where it is)."""

    states: tuple[S, ...]
    events: tuple[str, ...]
    to: tuple[S, ...] = ()


def on(states: S | Iterable[S], events: str | Iterable[str], to: S | Iterable[S] = ()) -> On[S]:
    def many(value: Any) -> tuple[Any, ...]:
        return (value,) if isinstance(value, (enum.Enum, str)) else tuple(value)

    return On(many(states), many(events), many(to))


def but(states: type[S], *final: S) -> list[S]:
    """Every state but `final` ones: a flow that reached one has finished, and handles
    nothing any more (not even Stop)."""
    return [state for state in states if state not in final]


class Table(Generic[S]):
    """A flow's state machine: (state, event) -> the states its handler may move to. The
    runtime uses it: an event without an entry in the current state is not handled (one
    debug line), a transition the table does not list is logged and counted."""

    def __init__(self, states: type[S], rows: Iterable[On[S]]) -> None:
        self.states = states
        self.moves: dict[tuple[S, str], set[S]] = {}
        for row in rows:
            for state in row.states:
                for event in row.events:
                    moves = self.moves.setdefault((state, event), set())
                    moves |= set(row.to)

    def handles(self, state: S, event: str) -> bool:
        return (state, event) in self.moves

    def allows(self, state: S, event: str, new: S) -> bool:
        return new in self.moves.get((state, event), ())

    def events(self) -> list[str]:
        return sorted({event for _, event in self.moves})

    def reachable(self, initial: S) -> set[S]:
        seen, todo = {initial}, [initial]
        while todo:
            state = todo.pop()
            for (start, _), targets in self.moves.items():
                if start is state:
                    todo += [t for t in targets if t not in seen]
                    seen |= targets
        return seen


class CallFlow(Generic[S]):
    """Subclasses set `name`, `initial` and `table`, implement `start()` and the handlers
    the table names (`on_<EventType>`, `on_timer_<kind>`)."""

    name: ClassVar[str] = "flow"
    initial: S
    # Every flow of the app has one (tests/unit/test_flow_tables.py); None (a test's
    # scaffolding flow): any event with a handler is handled, no transition is checked.
    table: ClassVar[Table[Any] | None] = None

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.ari = ctx.ari
        self.channel_id = channel_id
        self.args = args
        self.state: S = self.initial
        self.inbox: asyncio.Queue[FlowEvent] = asyncio.Queue()
        self.finished = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # What is being handled, and the state it found the flow in: every transition its
        # handler makes is checked against the table's row for the two.
        self._event, self._from = START, self.state
        self._excused_s = 0.0  # of the current handler: waits it does on purpose

    # -- plumbing ---------------------------------------------------------------------
    def deliver(self, event: FlowEvent) -> None:
        self.inbox.put_nowait(event)

    def _transition(self, new: S, cause: str) -> None:
        if self.table is not None and not self.table.allows(self._from, self._event, new):
            # Not in the table: made all the same (the call must go on), but a decision the
            # table does not describe is a bug to fix, in the table or in the flow.
            log.warning(
                "call=%s flow=%s transition %s -[%s]-> %s not in the table (%s in %s)",
                self.channel_id,
                self.name,
                self.state.name,
                cause,
                new.name,
                self._event,
                self._from.name,
            )
            if self.ctx.metrics is not None:
                self.ctx.metrics.flow_anomaly(self.name, "illegal_transition")
        log.info(
            "call=%s flow=%s %s -[%s]-> %s",
            self.channel_id,
            self.name,
            self.state.name,
            cause,
            new.name,
        )
        self.state = new

    def start_timer(self, name: str, seconds: float) -> None:
        self.cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(seconds, self.deliver, Timer(name))

    # -- languages ----------------------------------------------------------------------
    def language_of(self, configured: str | None) -> str:
        """A hotline's or agent's language; unset: the server's HOTLINE_LANGUAGE."""
        return configured or self.ctx.settings.language

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        lang: str,
        *,
        playback_id: str | None = None,
    ) -> None:
        """Every prompt a flow plays goes through here: the sounds of `lang` from the one
        table (domain/sounds.py); numbers and digits spoken with `lang`'s grammar."""
        await self.ari.play(channel_id, localise(media, lang), lang=lang, playback_id=playback_id)

    def cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def finish(self) -> None:
        self.finished = True

    @contextlib.contextmanager
    def excused_wait(self) -> Iterator[None]:
        """A wait the handler does on purpose (a handover: the requester hears music on
        hold meanwhile): not counted by the slow-handler watchdog."""
        started = time.monotonic()
        try:
            yield
        finally:
            self._excused_s += time.monotonic() - started

    def _watch(self, key: str, state: S, started: float) -> None:
        took = time.monotonic() - started - self._excused_s
        if took > SLOW_HANDLER_S:
            log.warning(
                "call=%s flow=%s slow handler: %s in %s took %.2f s",
                self.channel_id,
                self.name,
                key,
                state.name,
                took,
            )
            if self.ctx.metrics is not None:
                self.ctx.metrics.flow_anomaly(self.name, "slow_handler")

    async def run(self) -> None:
        try:
            started, self._excused_s = time.monotonic(), 0.0
            try:
                await self.start()
            finally:
                self._watch(START, self.initial, started)
            while not self.finished:
                event = await self.inbox.get()
                self._event, self._from = event_key(event), self.state
                started, self._excused_s = time.monotonic(), 0.0
                try:
                    await self._handle(event)
                except DB_ERRORS as exc:
                    # The call goes on without the database; the flow decides what that means.
                    log.error(
                        "call=%s flow=%s database unavailable in %s: %s",
                        self.channel_id,
                        self.name,
                        self.state.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    )
                    await self.on_database_unavailable(event)
                except AriError as exc:
                    # A channel went away meanwhile (404, or 409/500 while it hangs up): its
                    # events follow. Or the link is down: after the reconnect, reconciliation
                    # tells the flow which channels are gone. Either way the flow stays in
                    # charge; a crash here would leave the call's channels to nobody.
                    log.warning(
                        "call=%s flow=%s ARI request failed in %s: %s",
                        self.channel_id,
                        self.name,
                        self.state.name,
                        exc,
                    )
                finally:
                    self._watch(self._event, self._from, started)
        except asyncio.CancelledError:
            log.info("call=%s flow=%s cancelled in %s", self.channel_id, self.name, self.state.name)
            raise
        except Exception:
            log.exception(
                "call=%s flow=%s failed in %s", self.channel_id, self.name, self.state.name
            )
        finally:
            for name in list(self._timers):
                self.cancel_timer(name)
            await self.cleanup()

    async def _handle(self, event: FlowEvent) -> None:
        key = event_key(event)
        if isinstance(event, Timer):
            # Done with, also when the event was delivered directly (a wake-up): a pending
            # handle of that name would fire again later.
            pending = self._timers.pop(event.name, None)
            if pending is not None:
                pending.cancel()
        if self.table is not None and not self.table.handles(self.state, key):
            self.ignore(key, "not in the table")
            return
        handler = getattr(self, handler_name(key), None)
        if handler is None:
            self.ignore(key, "no handler")
            return
        result: Awaitable[None] | None = handler(event)
        if result is not None:
            await result

    def ignore(self, what: str, why: str) -> None:
        """An event with nothing to do (one debug line, never a silent drop)."""
        log.debug(
            "call=%s flow=%s %s in %s ignored: %s",
            self.channel_id,
            self.name,
            what,
            self.state.name,
            why,
        )

    async def persist(self, what: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """One unit of work that must not be lost (a call's end, an agent's release): retried
        with backoff while the database is down, for up to PERSIST_FOR_S."""

        async def attempt() -> T:
            async with self.ctx.sessions() as session, session.begin():
                return await work(session)

        return await self._retried(what, attempt)

    async def persist_statement(self, what: str, work: Callable[[Db], Awaitable[T]]) -> T:
        """As persist, for `work` that sends a single statement, which commits on its own
        (FlowContext.statement)."""

        async def attempt() -> T:
            async with self.ctx.statement() as connection:
                return await work(connection)

        return await self._retried(what, attempt)

    async def _retried(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        delay, deadline = 0.5, time.monotonic() + PERSIST_FOR_S
        while True:
            try:
                return await attempt()
            except DB_ERRORS as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning(
                    "call=%s flow=%s %s not stored yet (database unavailable, retry in %.1fs): %s",
                    self.channel_id,
                    self.name,
                    what,
                    delay,
                    type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- to override ------------------------------------------------------------------
    async def on_database_unavailable(self, event: FlowEvent) -> None:
        """A handler failed for want of the database; by default the event is dropped."""

    async def start(self) -> None:
        """Called once when the flow's task starts (the channel is in Stasis)."""

    async def cleanup(self) -> None:
        """Hang up what the flow created, destroy its bridges. 404s are expected races."""

    async def on_Stop(self, event: Stop) -> None:
        self.finish()


FlowFactory = Callable[[FlowContext, str, tuple[str, ...]], CallFlow[Any]]
