"""A minimal inbound flow: answer, play a prompt, hang up. Replaced by the full hotline
flow (queue, agents) later; kept as the `greeting` flow for smoke checks."""

from __future__ import annotations

import enum
import logging

from ari_app.ari.errors import AriError
from ari_app.ari.events import PlaybackFinished, StasisEnd, StasisStart
from ari_app.flows.base import CallFlow, Table, but, on

log = logging.getLogger(__name__)

PROMPT = "sound:hello-world"


class GreetingState(enum.Enum):
    NEW = "new"
    PLAYING = "playing"
    DONE = "done"


class GreetingFlow(CallFlow[GreetingState]):
    name = "greeting"
    initial = GreetingState.NEW
    table = Table(
        GreetingState,
        [
            on(GreetingState.NEW, "StasisStart", to=GreetingState.PLAYING),
            on(GreetingState.PLAYING, "PlaybackFinished", to=GreetingState.DONE),
            on((GreetingState.NEW, GreetingState.PLAYING), "StasisEnd", to=GreetingState.DONE),
            on(but(GreetingState, GreetingState.DONE), "Stop"),
        ],
    )
    playback_id: str | None = None

    async def on_StasisStart(self, event: StasisStart) -> None:
        await self.ari.answer(self.channel_id)
        self.playback_id = f"greet-{self.channel_id}"
        await self.play(
            self.channel_id,
            PROMPT,
            self.language_of(event.channel.language or None),
            playback_id=self.playback_id,
        )
        self._transition(GreetingState.PLAYING, "StasisStart")

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if event.playback.id != self.playback_id:
            self.ignore("PlaybackFinished", "not our playback")
            return
        self._transition(GreetingState.DONE, "PlaybackFinished")
        self.finish()

    async def on_StasisEnd(self, event: StasisEnd) -> None:
        self._transition(GreetingState.DONE, "StasisEnd")
        self.finish()

    async def cleanup(self) -> None:
        try:
            await self.ari.hangup(self.channel_id)
        except AriError:
            log.exception("call=%s hangup failed", self.channel_id)
