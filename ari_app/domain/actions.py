"""What a hotline does with a call it cannot queue (closed, no agent, waited too long).

Stored as short text in the hotline row (`closed_action`, `no_agent_action`,
`timeout_action`) because ops type it on the CLI: `voicemail`, `forward:<number>`,
`announce:<sound>`. The flows work with the parsed dataclasses, so a stored value that is
somehow invalid fails at parse time with a clear message, not halfway through a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from ari_app.domain import values
from ari_app.domain.errors import InvalidValue


@dataclass(frozen=True)
class Voicemail:
    """Let the caller leave a message on the hotline's voicemail."""


@dataclass(frozen=True)
class Forward:
    """Forward the caller to a number ops configured (never one the caller typed)."""

    number: str


@dataclass(frozen=True)
class Announce:
    """Play a sound to the caller, then hang up."""

    sound: str


Action = Voicemail | Forward | Announce

_EXPECTED = "voicemail, forward:<number> or announce:<sound>"


def parse_action(text: str) -> Action:
    """Parse `voicemail`, `forward:+4930123` or `announce:custom/closed`."""
    value = text.strip()
    kind, sep, arg = value.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if not value:
        raise InvalidValue(f"action: empty (use {_EXPECTED})")
    if kind == "voicemail":
        if sep:
            raise InvalidValue(f"action: {value!r}: voicemail takes no argument")
        return Voicemail()
    if kind == "forward":
        if not arg:
            raise InvalidValue(f"action: {value!r} needs a number (forward:+4930123456)")
        return Forward(values.phone_number(arg))
    if kind == "announce":
        if not arg:
            raise InvalidValue(f"action: {value!r} needs a sound name (announce:custom/closed)")
        return Announce(values.sound_name(arg))
    raise InvalidValue(f"action: unknown {value!r} (use {_EXPECTED})")


def format_action(action: Action) -> str:
    """The text form `parse_action` reads back to the same action."""
    if isinstance(action, Voicemail):
        return "voicemail"
    if isinstance(action, Forward):
        return f"forward:{action.number}"
    if isinstance(action, Announce):
        return f"announce:{action.sound}"
    assert_never(action)


def normalise_action(text: str) -> str:
    """Validated, normalised text for storage (`Forward:+49 30 1` -> `forward:+49301`)."""
    return format_action(parse_action(text))
