"""A prompt of several media items played one ARI playback per item, so a key press can
really stop it.

Observed on Asterisk 16.28: `DELETE /playbacks/{id}` on a playback of a media list, sent
while a `digits:` item speaks, is ignored and the list plays on to its end (a later
playback on the channel waits behind it). With one item per playback, a stop ends the
current item (a `digits:` item finishes its digits first) and nothing after it is played.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError, AriNotFound
from ari_app.domain.sounds import localise

log = logging.getLogger(__name__)


class Playlist:
    def __init__(self, ari: AriClient, channel_id: str, lang: str) -> None:
        self.ari = ari
        self.channel_id = channel_id
        self.lang = lang  # what the person on this channel hears (domain/sounds.py)
        self.current: str | None = None  # playback id of the item playing now
        self.pending: list[str] = []

    @property
    def playing(self) -> bool:
        return self.current is not None

    async def play(self, media: Sequence[str]) -> bool:
        """Start `media` (stopping what plays now); False when Asterisk refused it."""
        await self.stop()
        self.pending = localise(media, self.lang)
        return await self._next()

    async def _next(self) -> bool:
        if not self.pending:
            self.current = None
            return False
        item = self.pending.pop(0)
        self.current = f"{self.channel_id}-p{uuid.uuid4().hex[:8]}"
        try:
            await self.ari.play(self.channel_id, item, lang=self.lang, playback_id=self.current)
        except AriError as exc:
            # A 404: the channel hung up during the previous item (its PlaybackFinished
            # comes before its StasisEnd), nobody is left to hear the rest: no warning.
            level = logging.INFO if isinstance(exc, AriNotFound) else logging.WARNING
            log.log(level, "call=%s playback of %s failed: %s", self.channel_id, item, exc)
            self.current, self.pending = None, []
            return False
        return True

    async def finished(self, playback_id: str) -> bool | None:
        """A PlaybackFinished: None if it is not ours (or one we stopped), False when the
        next item started, True when the whole list has been played."""
        if playback_id != self.current:
            return None
        return not await self._next()

    async def stop(self) -> None:
        playback_id, self.current, self.pending = self.current, None, []
        if playback_id is not None:
            try:
                await self.ari.stop_playback(playback_id)
            except AriError as exc:
                log.debug("call=%s stop playback: %s", self.channel_id, exc)
