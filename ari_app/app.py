"""Composition root of `hotline serve`: wiring, connect + reconcile, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

from ari_app.ari.client import AriClient
from ari_app.ari.stream import EventStream
from ari_app.config import Settings
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.dispatch import Dispatcher
from ari_app.flows.base import FlowContext, FlowFactory
from ari_app.flows.greeting import GreetingFlow
from ari_app.flows.inbound import InboundFlow
from ari_app.services import routing

log = logging.getLogger(__name__)

SWEEP_S = 1.0


def flow_table() -> dict[str, FlowFactory]:
    """Flow name (Stasis args[0], see dialplan/extensions_hotline.conf) -> flow class."""
    return {
        "inbound": InboundFlow,
        "greeting": GreetingFlow,
    }


class HotlineApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.ari = AriClient(
            settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app
        )
        self.dispatcher = Dispatcher(flow_table())
        self.ctx = FlowContext(
            ari=self.ari, registry=self.dispatcher, settings=settings, sessions=self.sessions
        )
        self.dispatcher.ctx = self.ctx
        self.stream = EventStream(
            self.ari, on_event=self.dispatcher.on_event, on_connect=self.on_connect
        )
        self._stopping = asyncio.Event()

    async def on_connect(self) -> None:
        """After every (re)connect: reconcile Postgres with what Asterisk still has."""
        log.info(
            "connected to ARI as app %s (reconnects=%d)",
            self.settings.ari_app,
            self.stream.reconnects,
        )

    async def sweep(self) -> None:
        """Ends wrap-ups that are over and wakes the callers waiting for an agent."""
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                async with self.sessions() as session, session.begin():
                    freed = await routing.end_expired_wrapups(session, datetime.now(UTC))
                if freed:
                    self.ctx.agents_changed.notify()
            except Exception as exc:
                log.warning("wrap-up sweep failed: %s", exc)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self, grace_s: float = 30.0) -> None:
        tasks = [
            asyncio.create_task(self.stream.run(), name="ari-events"),
            asyncio.create_task(self.sweep(), name="sweep"),
        ]
        try:
            await self._stopping.wait()
            log.info("stopping: %d call(s) in progress", self.dispatcher.active_calls)
            await self.dispatcher.shutdown(grace_s)
        finally:
            await self.stream.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.ari.close()
            await self.engine.dispose()
            log.info("stopped")


async def serve(settings: Settings, *, grace_s: float = 30.0) -> None:
    app = HotlineApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.run(grace_s=grace_s)
