"""The prompt table (ari_app/domain/sounds.py): every prompt a flow plays has a sound in
every language, and every playback goes through the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ari_app.domain import sounds
from ari_app.domain.errors import InvalidValue
from ari_app.flows.mailbox import time_media

FLOWS = Path(sounds.__file__).resolve().parent.parent / "flows"
# "sound:<name>" literals; an f-string's literal part stops at "{".
SOUND_LITERAL = re.compile(r"""["']sound:([A-Za-z0-9_/.-]*)(\{?)""")
# Only these may call ARI's play: CallFlow.play and the Playlist both localise.
PLAYERS = {"base.py", "playlist.py"}


def _flow_sources() -> dict[str, str]:
    # The flows' packages too (flows/inbound/: one module per phase of the call).
    return {str(path.relative_to(FLOWS)): path.read_text() for path in sorted(FLOWS.rglob("*.py"))}


def test_every_prompt_a_flow_plays_is_in_the_table() -> None:
    missing = []
    for name, text in _flow_sources().items():
        for match in SOUND_LITERAL.finditer(text):
            key, templated = match.group(1), bool(match.group(2))
            if templated:
                # f"sound:digits/day-{n}": some entry must complete it; f"sound:{ops_sound}"
                # is a sound ops configured (their own recording), not a prompt.
                if key and not any(k.startswith(key) for k in sounds.PROMPTS):
                    missing.append(f"{name}: {key}{{...}}")
            elif key not in sounds.PROMPTS:
                missing.append(f"{name}: {key}")
    assert not missing, f"prompts without an entry in domain/sounds.py: {missing}"


def test_scanner_sees_a_prompt_missing_from_the_table() -> None:
    text = 'await self.say(["sound:not-in-the-table", f"sound:digits/day-{n}"])'
    keys = [m.group(1) for m in SOUND_LITERAL.finditer(text)]
    assert keys == ["not-in-the-table", "digits/day-"]
    assert "not-in-the-table" not in sounds.PROMPTS


def test_flows_play_only_through_the_table() -> None:
    direct = [
        f"{name}:{n}"
        for name, text in _flow_sources().items()
        if name not in PLAYERS
        for n, line in enumerate(text.splitlines(), 1)
        if re.search(r"\bari\.play(_on_bridge)?\(", line)
    ]
    assert not direct, f"ARI play calls that bypass CallFlow.play / Playlist: {direct}"


def test_every_prompt_has_every_language() -> None:
    for prompt in sounds.PROMPTS.values():
        assert set(prompt.sounds) == set(sounds.LANGUAGES), prompt.key
        for lang in sounds.LANGUAGES:
            if prompt.generated(lang):
                assert prompt.texts.get(lang), f"{prompt.key}: nothing to synthesise in {lang}"


def test_localise() -> None:
    media = ["sound:goodbye", "number:21", "digits:500", "sound:custom/welcome"]
    assert sounds.localise(media, "en") == media
    assert sounds.localise(media, "de") == [
        "sound:hotline/goodbye",  # not in Debian's German set: produced at set-up
        "number:21",
        "digits:500",
        "sound:custom/welcome",  # ops' own recording passes through
    ]
    assert sounds.localise("sound:agent-loginok", "de") == ["sound:agent-loginok"]


def test_language_values() -> None:
    assert sounds.language(" DE ") == "de"
    with pytest.raises(InvalidValue):
        sounds.language("fr")


def test_german_time_of_a_message() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    at = datetime(2026, 12, 4, 13, 5, tzinfo=UTC)  # 14:05 in Berlin
    assert time_media(at, "Europe/Berlin", now, "de") == [
        "sound:digits/today",
        "number:14",
        "sound:digits/oclock",  # "Uhr"
        "number:5",
    ]
