"""flows/playlist.py: one ARI playback per item, so a stop really stops (Asterisk 16 ignores
the stop of a media-list playback while a number or digits item speaks)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ari_app.ari.errors import AriNotFound
from ari_app.flows.playlist import Playlist


class StubAri:
    """Records plays and stops; a play fails with `fail` when one is set."""

    def __init__(self) -> None:
        self.plays: list[tuple[str, Any, str | None, str | None]] = []
        self.stops: list[str] = []
        self.fail: Exception | None = None

    async def play(
        self, channel_id: str, media: Any, *, lang: str | None = None, **kw: Any
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.plays.append((channel_id, media, lang, kw.get("playback_id")))

    async def stop_playback(self, playback_id: str) -> bool:
        self.stops.append(playback_id)
        return True


def _playlist() -> tuple[StubAri, Playlist]:
    ari = StubAri()
    return ari, Playlist(ari, "caller", "en")  # type: ignore[arg-type]


async def test_each_item_is_its_own_playback_in_order() -> None:
    ari, prompt = _playlist()
    assert await prompt.play(["sound:queue-thereare", "number:3", "sound:queue-callswaiting"])
    for _ in range(2):
        assert await prompt.finished(ari.plays[-1][3] or "") is False  # the next one started
    assert await prompt.finished(ari.plays[-1][3] or "") is True  # all played
    assert [media for _, media, _, _ in ari.plays] == [
        "sound:queue-thereare",
        "number:3",
        "sound:queue-callswaiting",
    ]
    assert {lang for _, _, lang, _ in ari.plays} == {"en"} and not prompt.playing


async def test_a_stop_ends_the_item_playing_and_nothing_follows() -> None:
    ari, prompt = _playlist()
    await prompt.play(["sound:queue-thereare", "number:3", "sound:queue-callswaiting"])
    await prompt.finished(ari.plays[-1][3] or "")
    speaking = ari.plays[-1][3] or ""  # "3"
    await prompt.stop()
    assert ari.stops == [speaking] and not prompt.playing
    assert await prompt.finished(speaking) is None  # the number ends by itself: ignored
    assert len(ari.plays) == 2
    await prompt.stop()
    assert ari.stops == [speaking], "no request when nothing plays"


async def test_a_channel_gone_between_items_ends_the_prompt_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ari, prompt = _playlist()
    await prompt.play(["sound:queue-thereare", "number:3"])
    ari.fail = AriNotFound("POST /channels/caller/play: HTTP 404: Channel not found", status=404)
    with caplog.at_level(logging.INFO, logger="ari_app.flows.playlist"):
        assert await prompt.finished(ari.plays[-1][3] or "") is True  # the caller hung up
    assert not prompt.playing
    assert [r.levelno for r in caplog.records] == [logging.INFO]
