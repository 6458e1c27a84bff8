"""Composition root of `hotline serve`: wiring, connect + reconcile, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.ari.events import KNOWN_EVENT_TYPES, ApplicationReplaced, DeviceStateChanged
from ari_app.ari.stream import EventStream
from ari_app.config import Settings
from ari_app.db.session import (
    make_engine,
    make_sessionmaker,
    make_statement_engine,
)
from ari_app.device_presence import DevicePresence, ExternalCalls, default_tracker
from ari_app.dispatch import Dispatcher
from ari_app.flows import escalation
from ari_app.flows.base import CallFlow, ChannelRegistry, FlowContext, FlowFactory, FlowTasks
from ari_app.flows.callback import CallbackDialler
from ari_app.flows.feature import FeatureFlow
from ari_app.flows.greeting import GreetingFlow
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.inbound.queue import POLL_S as WAITING_POLL_S
from ari_app.flows.service import ServiceFlow
from ari_app.mailer import Mailer
from ari_app.reconcile import LostAsterisk, reconcile
from ari_app.roster_scheduler import RosterScheduler
from ari_app.services import device_states, nodes, retention, routing
from ari_app.web.metrics import Metrics
from ari_app.web.server import PanelServer

log = logging.getLogger(__name__)

SWEEP_S = 1.0
PURGE_EVERY_S = 24 * 3600
STAFFING_S = 2.0  # below-minimum checks (ops logout from the CLI, other nodes)
ARI_CONNECTIONS_PER_NODE = 64  # of Asterisk's 100 HTTP sessions (ari/client.py)


def flow_table() -> dict[str, FlowFactory]:
    """Flow name (Stasis args[0], see dialplan/extensions_hotline.conf) -> flow class."""
    return {
        "inbound": InboundFlow,
        "greeting": GreetingFlow,
        "feature": FeatureFlow,
        "service": ServiceFlow,
    }


class HotlineApp:
    def __init__(self, settings: Settings, *, workers: int = 1) -> None:
        self.settings = settings
        self.workers = workers  # of this node (ari_app/workers.py); the dialplan needs it
        self._reconcile_lock = asyncio.Lock()
        # The workers of one node share the connections a single process would open (a
        # call's statements are short: a few connections per worker carry 10 calls/s).
        self.engine = make_engine(
            settings.database_url,
            pool_size=max(5, 20 // workers),
            max_overflow=max(5, 10 // workers),
        )
        self.sessions = make_sessionmaker(self.engine)
        # The node's workers together open at most ARI_CONNECTIONS_PER_NODE connections to
        # Asterisk (DEFAULT_MAX_CONNECTIONS says why), the rest of its 100 HTTP sessions stay
        # for other ARI users and admins.
        self.ari = AriClient(
            settings.ari_url,
            settings.ari_user,
            settings.ari_password,
            settings.ari_app,
            max_connections=max(4, ARI_CONNECTIONS_PER_NODE // workers),
        )
        # The app's runtime state, one of each, shared by whoever needs it (no module
        # globals): channel owners, external calls, handover and escalation tasks.
        self.ctx = FlowContext(
            ari=self.ari,
            settings=settings,
            sessions=self.sessions,
            statement_engine=make_statement_engine(self.engine),
            registry=ChannelRegistry(),
            external_calls=ExternalCalls(),
            handovers=FlowTasks(),
            escalations=FlowTasks(),
            callbacks=FlowTasks(),
        )
        self.dispatcher = Dispatcher(flow_table(), self.ctx)
        self.stream = EventStream(
            self.ari, on_event=self.dispatcher.on_event, on_connect=self.on_connect
        )
        self._stopping = asyncio.Event()
        self.dialler = CallbackDialler(self.ctx)  # callbacks keeping the place (issue 15)
        self._wire_presence_and_staffing()
        self._wire_panel()

    async def on_connect(self) -> None:
        """After every (re)connect: reconcile Postgres with what Asterisk still has."""
        log.info(
            "connected to ARI as app %s (reconnects=%d)",
            self.settings.ari_app,
            self.stream.reconnects,
        )
        try:
            # Only the events something here handles: Asterisk serialises every event and
            # the app parses and routes it, and most of a call's are not needed
            # (ChannelVarset, ChannelDialplan, Dial, bridge and state changes ...).
            await self.ari.set_event_filter(handled_event_types())
        except AriError as exc:  # an Asterisk before 16.3: every event, as before
            log.info("ARI event filter not set: %s", exc)
        try:
            # The dialplan tries this many workers' Stasis apps ([hotline-stasis]).
            await self.ari.set_global("HOTLINE_WORKERS", str(self.workers))
        except AriError as exc:
            log.warning("could not set HOTLINE_WORKERS: %s", exc)
        try:
            async with self._reconcile_lock:
                await reconcile(self.ctx, self.dispatcher)
        except Exception:
            # Never keep the event stream from running; the next reconnect tries again.
            log.exception("reconciliation failed")

    @property
    def pbx(self) -> str:
        # The same ARI URL on the same host is the same Asterisk (nodes of a cluster may
        # all reach their own Asterisk at the same loopback URL).
        return f"{socket.gethostname()} {self.settings.ari_url}"[:200]

    async def watch_siblings(self) -> None:
        """Heartbeat, and adoption of the calls of a dead sibling on the same PBX (another
        worker, or a node that shares this Asterisk): services/nodes.py."""
        pbx = self.pbx
        me, pid = self.settings.node, os.getpid()
        registered = False
        while True:
            try:
                async with self.ctx.one_statement()() as session, session.begin():
                    if not registered:
                        await nodes.register(session, name=me, pbx=pbx, pid=pid)
                        registered = True
                    elif not await nodes.heartbeat(session, name=me, pid=pid):
                        if self.dispatcher.active_calls:
                            # A sibling thought us dead and took our calls: two processes
                            # must never drive one call. Leave as a crash would (the
                            # supervisor or the service manager starts us again).
                            log.critical("node %s: declared dead by a sibling, exiting", me)
                            os._exit(75)
                        await nodes.register(session, name=me, pbx=pbx, pid=pid)
                    dead = (
                        await nodes.take_over_dead(session, me=me, pbx=pbx)
                        if self.stream.connected
                        else []
                    )
                if dead:
                    log.warning("node %s: adopting the calls of %s", me, ", ".join(dead))
                    async with self._reconcile_lock:
                        await reconcile(self.ctx, self.dispatcher)
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)
            await asyncio.sleep(nodes.HEARTBEAT_S)

    async def sweep(self) -> None:
        """Ends wrap-ups that are over and wakes the callers waiting for an agent: at once
        when agents became free here, and every POLL_S anyway (the waiting queue's poll:
        the first caller of each hotline that will try, who passes on what it does not
        take; flows/inbound/queue.py)."""
        polled = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                async with self.ctx.one_statement()() as session, session.begin():
                    freed = await routing.end_expired_wrapups(session, datetime.now(UTC))
                if freed:
                    self.ctx.agents_changed.notify()
            except Exception as exc:
                log.warning("wrap-up sweep failed: %s", exc)
            if time.monotonic() - polled >= WAITING_POLL_S:
                polled = time.monotonic()
                self.ctx.waiting.notify()

    # --- device presence and staffing minimum (issue 4) ---------------------------------
    def _wire_presence_and_staffing(self) -> None:
        self.device_presence = DevicePresence(
            self.ari,
            self.sessions,
            default_tracker(self.settings.node),
            statement_sessions=self.ctx.one_statement(),
            external_calls=self.ctx.external_calls,
            node=self.settings.node,
            pbx=self.pbx,
        )
        # A phone that became idle may free an agent for waiting callers: Postgres tells
        # every process (watch_presence_and_staffing listens), whichever wrote it.
        self.ctx.followed_devices = lambda: self.device_presence.followed
        # Its changes go with the calls' starts and ends under load (routing.PendingWrites).
        self.ctx.pending.presence = self.device_presence
        self.stream.add_handler(self.device_presence.on_event)
        self.stream.add_connect_hook(self.reconcile_presence_and_staffing)
        self.stream.add_disconnect_hook(self.device_presence.on_disconnect)
        self.lost_asterisk = LostAsterisk(self.ctx, self.dispatcher)
        self.stream.add_connect_hook(self.lost_asterisk.on_connect)
        self.stream.add_disconnect_hook(self.lost_asterisk.on_disconnect)

    async def reconcile_presence_and_staffing(self) -> None:
        """After every (re)connect: follow the agents' devices again, and escalate hotlines
        that are below their staffing minimum (e.g. after a restart)."""
        await self.device_presence.on_connect()
        await escalation.check_staffing(self.ctx, "reconcile")

    async def watch_presence_and_staffing(self) -> None:
        """Device-state updates, and a periodic staffing check for changes made outside this
        process (ops logout from the CLI, other nodes)."""
        presence = asyncio.create_task(self.device_presence.run(), name="device-presence")
        freed = asyncio.create_task(
            device_states.listen_agents_freed(self.engine, self.ctx.agents_changed.notify),
            name="agents-freed",
        )
        try:
            while True:
                await asyncio.sleep(STAFFING_S)
                await escalation.check_staffing(self.ctx, "check")
        finally:
            for task in (presence, freed):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.device_presence.close()

    # --- team panel, metrics, data retention ------------------------------------------
    def _wire_panel(self) -> None:
        self.metrics = Metrics()
        self.metrics.bind_ari(
            connected=lambda: self.stream.connected,
            reconnects=lambda: self.stream.reconnects,
            requests=lambda: self.ari.requests,
        )
        self.ctx.metrics = self.metrics
        # Raises ConfigError (one clear line) when bound beyond loopback without a token.
        self.panel = PanelServer.from_settings(
            self.settings,
            self.sessions,
            ari_connected=lambda: self.stream.connected,
            metrics=self.metrics,
        )
        self.ctx.agents_changed.subscribe(self.panel.hub.notify)
        self.device_presence.changed.subscribe(self.panel.hub.notify)

    async def purge_daily(self) -> None:
        """Pseudonymise old caller numbers and delete old voicemails, once a day."""
        while True:
            try:
                cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention_s)
                async with self.sessions() as session, session.begin():
                    result = await retention.purge_older_than(session, cutoff, self.ari)
                log.debug("purge before %s: %s", cutoff.isoformat(timespec="seconds"), result)
            except Exception as exc:
                log.warning("daily purge failed (retried tomorrow): %s", exc)
            await asyncio.sleep(PURGE_EVERY_S)

    async def send_mail(self) -> None:
        """Voicemail notices (issue 16): only with a mail server configured; without one
        they wait in the outbox."""
        if self.settings.smtp is None:
            log.info("voicemail notification: HOTLINE_SMTP_HOST not set, notices wait")
            return
        mailer = Mailer(self.sessions, self.ari, self.settings.smtp, self.settings.node)
        await mailer.run()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self, grace_s: float = 30.0) -> None:
        await self.panel.start()
        tasks = [
            asyncio.create_task(self.stream.run(), name="ari-events"),
            asyncio.create_task(self.sweep(), name="sweep"),
            asyncio.create_task(self.lost_asterisk.run(), name="lost-asterisk"),
            asyncio.create_task(self.watch_presence_and_staffing(), name="presence-staffing"),
            asyncio.create_task(self.purge_daily(), name="purge"),
            asyncio.create_task(self.send_mail(), name="mail"),
            asyncio.create_task(RosterScheduler(self.ctx).run(), name="roster"),
            asyncio.create_task(self.watch_siblings(), name="siblings"),
            asyncio.create_task(self.dialler.run(), name="callbacks"),
        ]
        try:
            await self._stopping.wait()
            log.info("stopping: %d call(s) in progress", self.dispatcher.active_calls)
            await stop_step("calls", self.dispatcher.shutdown(grace_s), grace_s + 10)
            # Flows with their own tasks: stopped, and awaited (or cancelled and awaited).
            await stop_step("handovers", self.ctx.handovers.stop(5.0), 10)
            await stop_step("escalations", self.ctx.escalations.stop(5.0), 10)
            await stop_step("callbacks", self.dialler.stop(), 10)
        finally:
            # Nothing of a call is left here: a part that hangs costs a few seconds.
            await stop_step("ARI events", self.stream.close(), 3)
            await stop_tasks(tasks, 3)
            await stop_step("panel", self.panel.stop(), 3)
            await stop_step("ARI client", self.ari.close(), 3)
            await stop_step("database pool", self.engine.dispose(), 3)
            log.info("stopped")


# Every step of the shutdown is bounded and named: `serve` must end after SIGTERM even when
# one part hangs (a supervisor would SIGKILL it, and the next start adopts its calls
# anyway), and the log must say which part it was.
async def stop_step(name: str, step: Awaitable[None], timeout: float) -> None:
    task = asyncio.ensure_future(step)
    started = time.monotonic()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning(
            "stopping: %s still busy after %.1f s, left behind at %s", name, timeout, where(task)
        )
        task.cancel()
    elif not task.cancelled() and task.exception() is not None:
        log.error("stopping: %s failed: %r", name, task.exception())
    elif (took := time.monotonic() - started) > 1.0:
        log.info("stopping: %s took %.1f s", name, took)


async def stop_tasks(tasks: Collection[asyncio.Task[Any]], timeout: float) -> int:
    """Cancel the app's background tasks; those that do not end in `timeout` are named
    with where they wait, and left behind. Returns how many were left behind."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.warning("stopping: task %s ignores cancellation at %s", task.get_name(), where(task))
    return len(pending)


def where(task: asyncio.Task[Any]) -> str:
    """The chain of awaits a task is suspended in (get_stack shows only the outermost)."""
    steps = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            steps.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(steps) or "?"


def handled_event_types() -> set[str]:
    """ARI event types that a flow has a handler for (`on_<Type>`), plus those that device
    presence and the event stream use."""
    wanted = {DeviceStateChanged.__name__, ApplicationReplaced.__name__}
    todo: list[type[Any]] = [CallFlow]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        wanted.update(
            name[3:]
            for name in dir(cls)
            if name.startswith("on_") and name[3:] in KNOWN_EVENT_TYPES
        )
    return wanted


def run_serve(settings: Settings, *, grace_s: float = 30.0, workers: int = 1) -> None:
    """One process of `hotline serve`, on uvloop: its transports do in C what asyncio's do
    in Python, and every statement and ARI request of a call is a socket write and read
    (the largest share of the app's CPU per call in the profile, benchmarks/NOTES.md)."""
    uvloop.run(serve(settings, grace_s=grace_s, workers=workers))


async def serve(settings: Settings, *, grace_s: float = 30.0, workers: int = 1) -> None:
    app = HotlineApp(settings, workers=workers)
    # Everything imported and built so far lives as long as the process: out of the
    # cyclic GC's sight, a full collection no longer walks it (about 120k objects took
    # 40 to 110 ms each time: the event loop's lag peaks at 10 calls/s).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.run(grace_s=grace_s)
    # Tasks some part started and did not end: the event loop's own shutdown would wait for
    # them without end, so they are cancelled here with a bound, and when one will not end
    # the process ends anyway (everything of a call is in Postgres; the next start adopts).
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others and await stop_tasks(others, 3):
        log.error("stopping: task(s) left behind, exiting without waiting for them")
        logging.shutdown()
        os._exit(1)
