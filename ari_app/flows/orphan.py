"""A channel left in our Stasis app that no flow can take over (after a restart): the
caller hears an apology, then the app hangs up. Never dead air, never an open line."""

from __future__ import annotations

import enum
import logging

from ari_app.ari.errors import AriError
from ari_app.ari.events import ChannelDestroyed, PlaybackFinished, StasisEnd
from ari_app.flows.base import START, CallFlow, Table, Timer, on

log = logging.getLogger(__name__)

APOLOGY = ["sound:sorry-youre-having-problems", "sound:please-try-call-later"]
APOLOGY_MAX_S = 15


class OrphanState(enum.Enum):
    APOLOGISING = "apologising"
    DONE = "done"


class OrphanFlow(CallFlow[OrphanState]):
    name = "orphan"
    initial = OrphanState.APOLOGISING
    table = Table(
        OrphanState,
        [
            on(
                OrphanState.APOLOGISING,
                (START, "PlaybackFinished", "timer:give_up", "StasisEnd", "ChannelDestroyed"),
                to=OrphanState.DONE,
            ),
            on(OrphanState.APOLOGISING, "Stop"),
        ],
    )

    async def start(self) -> None:
        self.playback_id = f"{self.channel_id}-sorry"
        self.start_timer("give_up", APOLOGY_MAX_S)
        try:
            # The caller's hotline is not known here: the server's default language.
            await self.play(
                self.channel_id, APOLOGY, self.ctx.settings.language, playback_id=self.playback_id
            )
        except AriError as exc:  # not answered, or gone already
            log.info("call=%s flow=orphan no apology possible: %s", self.channel_id, exc)
            self._transition(OrphanState.DONE, "no playback")
            self.finish()

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if event.playback.id == self.playback_id:
            self._transition(OrphanState.DONE, "apology played")
            self.finish()
        else:
            self.ignore("PlaybackFinished", "not the apology")

    async def on_timer_give_up(self, _: Timer) -> None:
        self._transition(OrphanState.DONE, "timeout")
        self.finish()

    async def on_StasisEnd(self, _: StasisEnd) -> None:
        self._transition(OrphanState.DONE, "caller gone")
        self.finish()

    async def on_ChannelDestroyed(self, _: ChannelDestroyed) -> None:
        self._transition(OrphanState.DONE, "caller gone")
        self.finish()

    async def cleanup(self) -> None:
        try:
            await self.ari.hangup(self.channel_id)
        except AriError as exc:
            log.warning("call=%s flow=orphan hangup failed: %s", self.channel_id, exc)
