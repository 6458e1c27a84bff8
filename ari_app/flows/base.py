"""Base of every call flow: one asyncio task and one inbox per call, an explicit state
machine (an Enum of states, one handler per event type, one `_transition()` that logs),
cleanup in `finally` (DESIGN.md, conventions 1-3)."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ari_app.ari.errors import AriError
from ari_app.ari.events import Event
from ari_app.domain.sounds import localise
from ari_app.signals import Broadcast

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from ari_app.ari.client import AriClient
    from ari_app.config import Settings
    from ari_app.web.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
# What "the database is unavailable" looks like: SQLAlchemy's wrappers, refused connections.
DB_ERRORS = (SQLAlchemyError, OSError)
PERSIST_FOR_S = 600.0


@dataclass(frozen=True)
class Timer:
    """A flow-internal event: a timer the flow started has fired."""

    name: str


@dataclass(frozen=True)
class Stop:
    """A flow-internal event: the app shuts down or wants this flow gone."""

    reason: str


FlowEvent = Event | Timer | Stop


class ChannelRegistry(Protocol):
    """What a flow needs from the dispatcher: route events of extra channels to it."""

    def claim(self, channel_id: str, flow: CallFlow[Any]) -> None: ...

    def release(self, channel_id: str) -> None: ...


@dataclass
class FlowContext:
    """Everything a flow may use; built once by the composition root."""

    ari: AriClient
    registry: ChannelRegistry
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # Notified whenever an agent may have become free (call end, wrap-up over, login).
    agents_changed: Broadcast = field(default_factory=Broadcast)
    metrics: Metrics | None = None
    # Sessions whose statements each commit on their own (no BEGIN/COMMIT round trips), for
    # units of work that are one statement (the call path's, see services/routing.py).
    # None: `sessions` serves those too.
    statement_sessions: async_sessionmaker[AsyncSession] | None = None

    # Devices whose state device presence follows (ari_app/device_presence.py): their
    # `device_busy` is already in the reservation's condition, so no ARI request asks
    # again before ringing them. Empty (tests, no tracker): every device is asked.
    followed_devices: Callable[[], Collection[str]] = frozenset

    def one_statement(self) -> async_sessionmaker[AsyncSession]:
        return self.statement_sessions or self.sessions

    @property
    def node(self) -> str:
        return self.settings.node

    @property
    def app_name(self) -> str:
        return self.settings.ari_app


S = TypeVar("S", bound=enum.Enum)


class CallFlow(Generic[S]):
    """Subclasses set `name` and `initial`, implement `start()` and `on_<EventType>` handlers."""

    name: ClassVar[str] = "flow"
    initial: S

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.ari = ctx.ari
        self.channel_id = channel_id
        self.args = args
        self.state: S = self.initial
        self.inbox: asyncio.Queue[FlowEvent] = asyncio.Queue()
        self.finished = False
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- plumbing ---------------------------------------------------------------------
    def deliver(self, event: FlowEvent) -> None:
        self.inbox.put_nowait(event)

    def _transition(self, new: S, cause: str) -> None:
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

    async def run(self) -> None:
        try:
            await self.start()
            while not self.finished:
                event = await self.inbox.get()
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
        key = event.name if isinstance(event, Timer) else type(event).__name__
        if isinstance(event, Timer):
            # Done with, also when the event was delivered directly (a wake-up): a pending
            # handle of that name would fire again later.
            pending = self._timers.pop(event.name, None)
            if pending is not None:
                pending.cancel()
            handler = getattr(self, f"on_timer_{event.name}", None)
        else:
            handler = getattr(self, f"on_{key}", None)
        if handler is None:
            log.debug(
                "call=%s flow=%s unexpected %s in %s (ignored)",
                self.channel_id,
                self.name,
                key,
                self.state.name,
            )
            return
        result: Awaitable[None] | None = handler(event)
        if result is not None:
            await result

    async def persist(
        self,
        what: str,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        one_statement: bool = False,
    ) -> T:
        """One unit of work that must not be lost (a call's end, an agent's release): retried
        with backoff while the database is down, for up to PERSIST_FOR_S. `one_statement`:
        `work` sends a single statement, which commits on its own."""
        delay, deadline = 0.5, time.monotonic() + PERSIST_FOR_S
        sessions = self.ctx.one_statement() if one_statement else self.ctx.sessions
        while True:
            try:
                async with sessions() as session, session.begin():
                    return await work(session)
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
