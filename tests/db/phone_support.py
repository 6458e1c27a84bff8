"""Drive the interactive flows (feature codes, service line) through the real dispatcher
with the hand-written fake ARI: a caller's channel that presses keys and "hears" prompts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from flow_fakes import Command, FakeAriClient, channel, event, fake_dispatcher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AuditEntry
from ari_app.dispatch import Dispatcher
from ari_app.flows.feature import FeatureFlow
from ari_app.flows.service import ServiceFlow
from ari_app.services import admin

Sessions = async_sessionmaker[AsyncSession]
PIN = "735194"


class Caller:
    """One call into a flow: `start()`, `press()`, `heard()` the next prompt, `done()`."""

    def __init__(
        self,
        ari: FakeAriClient,
        dispatcher: Dispatcher,
        *,
        channel_id: str = "c1",
        name: str = "PJSIP/1001-00000001",
        number: str = "1001",
    ) -> None:
        self.ari = ari
        self.dispatcher = dispatcher
        self.channel_id = channel_id
        self.name = name
        self.number = number
        self.seen = 0

    def _channel(self) -> dict[str, Any]:
        return {**channel(self.channel_id, self.number), "name": self.name}

    def start(self, flow: str, arg: str) -> None:
        self.dispatcher.on_event(event("StasisStart", channel=self._channel(), args=[flow, arg]))

    def press(self, keys: str) -> None:
        for key in keys:
            self.dispatcher.on_event(
                event("ChannelDtmfReceived", channel=self._channel(), digit=key)
            )

    async def heard(self, finish: bool = True) -> list[str]:
        """The media of the next playback; by default it then plays to its end."""
        self.seen += 1
        command = await self.ari.wait_command("play", self.seen)
        assert command.args[0] == self.channel_id
        if finish:
            self.finish(command)
        return list(command.args[1])

    def finish(self, command: Command) -> None:
        self.dispatcher.on_event(
            event(
                "PlaybackFinished",
                playback={
                    "id": command.kwargs["playback_id"],
                    "media_uri": "x",
                    "target_uri": f"channel:{self.channel_id}",
                    "state": "done",
                },
            )
        )

    def hang_up(self) -> None:
        self.dispatcher.on_event(event("StasisEnd", channel=self._channel()))

    def hung_up(self) -> bool:
        return any(c.args[0] == self.channel_id for c in self.ari.called("hangup"))

    async def done(self) -> None:
        """The flow hangs the caller up."""
        await self.ari.wait_for(self.hung_up)


@contextlib.asynccontextmanager
async def phone_world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    """The fake ARI and a dispatcher running the feature and service flows."""
    ari, dispatcher = fake_dispatcher(sessions, {"feature": FeatureFlow, "service": ServiceFlow})
    try:
        yield ari, dispatcher
    finally:
        await dispatcher.shutdown(0.1)


async def seed(sessions: Sessions, **hotline_settings: Any) -> None:
    """Hotline 500 with agent 101 (device PJSIP/1001, mobile +4915112345) and agent 102
    (PJSIP/1002); nobody logged in."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", **hotline_settings)
        ada = await admin.create_agent(
            session,
            "101",
            "Ada",
            pin=PIN,
            device="PJSIP/1001",
            external_numbers=["+4915112345"],
        )
        bob = await admin.create_agent(session, "102", "Bob", pin="802461", device="PJSIP/1002")
        await admin.add_member(session, hotline, ada)
        await admin.add_member(session, hotline, bob)


async def audit_rows(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
