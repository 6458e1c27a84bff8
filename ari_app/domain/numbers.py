"""Numbers at the app's edge: what Asterisk hands over as the caller's ID and as the
dialled number is untrusted text (a SIP From user can be anything), and it ends up in call
records, audit rows, Originate caller IDs and `digits:` media. One place turns it into
something safe: a caller number is digits with at most one leading `+` and bounded length,
or `anonymous`; a dialled number too long for a hotline number is no hotline number.

Why it matters: `0301,sound:vm-nomore` as a caller ID would have become the media list
`digits:0301,sound:vm-nomore` when an agent listens to a voicemail (Asterisk plays a
comma-joined list), and a caller ID longer than the call record's column made the insert
fail, which sent the caller to the fallback past opening hours and queue, unrecorded.
"""

from __future__ import annotations

import re
from typing import TypeGuard

ANONYMOUS = "anonymous"
CALLER_NUMBER_MAX = 32  # characters, the + included (E.164 has at most 15 digits)
DIALLED_NUMBER_MAX = 32  # hotlines.number
DIALLED_RECORD_MAX = 64  # calls.dialled_number: what is kept of an unusable dialled number

_CALLER = re.compile(r"\+?[0-9]+")
_DIALLED = re.compile(r"\+?[0-9*#]+")


def caller_number(raw: str | None) -> str:
    """The caller ID as the app uses it everywhere: `+4930123` / `030123`, else
    `anonymous` (withheld, empty, a name, anything with other characters, too long)."""
    value = (raw or "").strip()
    if len(value) <= CALLER_NUMBER_MAX and _CALLER.fullmatch(value):
        return value
    return ANONYMOUS


def is_caller_number(value: str | None) -> TypeGuard[str]:
    """Whether `value` is a caller number (not `anonymous`, not empty): safe to speak."""
    return value is not None and value != ANONYMOUS and caller_number(value) == value


def dialled_number(raw: str) -> str | None:
    """The dialled number if it can be a hotline number, else None (the caller is then
    told the number is unknown, like any number no hotline has)."""
    value = raw.strip()
    if len(value) <= DIALLED_NUMBER_MAX and _DIALLED.fullmatch(value):
        return value
    return None


def dialled_record(raw: str) -> str:
    """What the call record keeps of the dialled number: bounded to its column."""
    return raw.strip()[:DIALLED_RECORD_MAX]
