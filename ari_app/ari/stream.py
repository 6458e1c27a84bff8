"""The ARI event WebSocket, kept alive: heartbeat, reconnect with backoff, hooks.

Handlers are registered on the stream, not on a socket, so none is lost across
reconnects. After every (re)connect the `on_connect` hooks run (reconciliation)
before any event of that connection is dispatched: events arriving meanwhile wait
in the socket buffer. So an `on_connect` hook may call REST but must not wait for
an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ari_app.ari.events import ApplicationReplaced, Event, parse_event

if TYPE_CHECKING:
    from ari_app.ari.client import AriClient

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_HEARTBEAT",
    "ConnectHook",
    "EventHandler",
    "EventStream",
]

# A ping after 5 s of silence, the pong awaited 2.5 s: a dead link shows in < 10 s.
DEFAULT_HEARTBEAT = 5.0
DEFAULT_BACKOFF_INITIAL = 0.5
DEFAULT_BACKOFF_MAX = 10.0

EventHandler = Callable[[Event], Awaitable[None] | None]
ConnectHook = Callable[[], Awaitable[None] | None]


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


def _disarm_heartbeat(ws: aiohttp.ClientWebSocketResponse) -> None:
    # aiohttp 3.14 re-arms the heartbeat timer when close() reads the peer's close
    # frame, so a ping would later go to the dead socket (and fail noisily when the
    # loop shuts down). Cancel it; guarded, as this is a private method.
    cancel = getattr(ws, "_cancel_heartbeat", None)
    if callable(cancel):
        cancel()


class EventStream:
    """Receives the app's events and hands each parsed `Event` to every handler.

    `run()` loops until `close()`; `start()` runs it in a task. A failing handler
    or hook is logged and never stops the stream.
    """

    def __init__(
        self,
        client: AriClient,
        on_event: EventHandler | None = None,
        *,
        on_connect: ConnectHook | None = None,
        on_disconnect: ConnectHook | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._client = client
        self._handlers: list[EventHandler] = [on_event] if on_event is not None else []
        self._connect_hooks: list[ConnectHook] = [on_connect] if on_connect is not None else []
        self._disconnect_hooks: list[ConnectHook] = (
            [on_disconnect] if on_disconnect is not None else []
        )
        self._heartbeat = heartbeat if heartbeat else None
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._stop = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._connects = 0
        self._events_received = 0
        self._last_error: str | None = None

    # --- registration ----------------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def remove_handler(self, handler: EventHandler) -> None:
        self._handlers.remove(handler)

    def add_connect_hook(self, hook: ConnectHook) -> None:
        self._connect_hooks.append(hook)

    def add_disconnect_hook(self, hook: ConnectHook) -> None:
        self._disconnect_hooks.append(hook)

    # --- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the socket is up and the on_connect hooks of this connection ran."""
        return self._connected

    @property
    def connects(self) -> int:
        """Successful connections so far (the first one included)."""
        return self._connects

    @property
    def reconnects(self) -> int:
        """Successful connections after the first one."""
        return max(0, self._connects - 1)

    @property
    def events_received(self) -> int:
        return self._events_received

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the last connection ended."""
        return self._last_error

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until `connected`; raises `TimeoutError` after `timeout` seconds."""
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    # --- running ---------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the stream in a background task (returned; `close()` ends it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"ari-events-{self._client.app}")
        return self._task

    async def run(self) -> None:
        """Connect, dispatch, reconnect with capped exponential backoff, until `close()`."""
        if self._running:
            raise RuntimeError("EventStream.run() is already running")
        self._running = True
        delay = self._backoff_initial
        where = f"{self._client.events_url}?app={self._client.app}"
        try:
            while not self._stop.is_set():
                try:
                    ws = await self._client.connect_events(heartbeat=self._heartbeat)
                except Exception as exc:  # AriError mostly; anything else must not end us
                    self._last_error = str(exc)
                    log.warning(
                        "ARI events: cannot connect to %s: %s (retry in %.1fs)", where, exc, delay
                    )
                else:
                    delay = self._backoff_initial
                    await self._serve(ws, where)
                if self._stop.is_set():
                    break
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff_max)
        finally:
            self._running = False
            self._set_connected(False)
            log.info("ARI events: stream for app %s stopped", self._client.app)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the stream and close the socket (idempotent; a closed stream stays closed)."""
        self._stop.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        _done, pending = await asyncio.wait({task}, timeout=timeout)
        if pending:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- internals -------------------------------------------------------------------------

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        if value:
            self._connected_event.set()
        else:
            self._connected_event.clear()

    async def _sleep(self, delay: float) -> None:
        # Wakes early when close() is called.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, where: str) -> None:
        self._ws = ws
        self._connects += 1
        log.info(
            "ARI events: connected to %s (connection %d, heartbeat %ss)",
            where,
            self._connects,
            self._heartbeat,
        )
        try:
            if self._stop.is_set():
                return
            for hook in list(self._connect_hooks):
                await self._run_hook(hook, "on_connect")
            self._set_connected(True)
            await self._receive_loop(ws)
        except Exception:
            self._last_error = "receive loop failed"
            log.exception("ARI events: receive loop failed")
        finally:
            self._ws = None
            was_connected = self._connected
            self._set_connected(False)
            if not ws.closed:
                await ws.close()
            _disarm_heartbeat(ws)
            if not self._stop.is_set():
                log.warning("ARI events: disconnected from %s: %s", where, self._last_error)
                await self._client.drop_connections()
            if was_connected:
                for hook in list(self._disconnect_hooks):
                    await self._run_hook(hook, "on_disconnect")

    async def _receive_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._events_received += 1
                await self._dispatch_text(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                self._last_error = f"closed by peer (code {ws.close_code})"
                return
            elif msg.type == aiohttp.WSMsgType.CLOSED:
                self._last_error = "closed"
                return
            elif msg.type == aiohttp.WSMsgType.ERROR:
                # Heartbeat timeouts land here (ServerTimeoutError: no PONG).
                self._last_error = f"{type(msg.data).__name__}: {msg.data}"
                return
            else:
                log.debug("ARI events: ignoring WebSocket message of type %s", msg.type)

    async def _dispatch_text(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json allows
            log.warning("ARI events: dropping a message that is not JSON (%d chars)", len(text))
            return
        event = parse_event(data)
        if event is None:
            return
        if isinstance(event, ApplicationReplaced):
            log.error(
                "ARI events: another client took over app %s; it no longer gets events here",
                event.application,
            )
        for handler in list(self._handlers):
            try:
                await _call(handler, event)
            except Exception:
                log.exception("ARI events: handler %r failed on %s", handler, event.type)

    async def _run_hook(self, hook: ConnectHook, what: str) -> None:
        try:
            await _call(hook)
        except Exception:
            log.exception("ARI events: %s hook %r failed", what, hook)
