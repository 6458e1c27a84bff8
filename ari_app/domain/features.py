"""Feature codes (`*21`, `*22`, ...) and keypad entry, parsed without any I/O.

The dialplan hands the dialled extension to the app unchanged; this module decides what it
means. Whatever a caller types is validated here before it can reach a database query, and
it never reaches a Dial string (DESIGN.md, "Dialplan contract").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

from ari_app.domain import values
from ari_app.domain.errors import InvalidValue

FeatureKind = Literal["login", "logout", "pause", "status", "voicemail"]

_CODE = re.compile(r"[*#0-9]{1,10}")
HOTLINE_SUFFIX_MAX = 20
KEYPAD = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class FeatureCodes:
    """The configurable codes; defaults as in DESIGN.md ("Feature codes")."""

    login: str = "*21"
    logout: str = "*22"
    pause: str = "*23"
    status: str = "*24"
    voicemail: str = "*98"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for f in fields(self):
            code = getattr(self, f.name)
            if not _CODE.fullmatch(code):
                raise InvalidValue(
                    f"feature code {f.name}: {code!r} must be 1 to 10 keypad keys (0-9 * #)"
                )
            if code in seen:
                raise InvalidValue(
                    f"feature code {f.name}: {code!r} is already the code for {seen[code]}"
                )
            seen[code] = f.name

    def by_code(self) -> dict[str, FeatureKind]:
        return {
            self.login: "login",
            self.logout: "logout",
            self.pause: "pause",
            self.status: "status",
            self.voicemail: "voicemail",
        }


@dataclass(frozen=True)
class FeatureRequest:
    """What the agent asked for; `hotline` is None for "all my hotlines" (or pause)."""

    kind: FeatureKind
    hotline: str | None = None


# Which suffix each feature takes: login/logout optional, pause none, the others required.
_SUFFIX: dict[FeatureKind, Literal["optional", "none", "required"]] = {
    "login": "optional",
    "logout": "optional",
    "pause": "none",
    "status": "required",
    "voicemail": "required",
}


def parse_feature(dialled: str, codes: FeatureCodes | None = None) -> FeatureRequest:
    """`*21` -> login to all, `*21500` -> login to hotline 500, and so on.

    The longest matching code wins, so configured codes may be prefixes of each other.
    """
    codes = codes if codes is not None else FeatureCodes()
    value = dialled.strip()
    matches = [c for c in codes.by_code() if value.startswith(c)]
    if not matches:
        raise InvalidValue(f"feature code: unknown {value!r}")
    code = max(matches, key=len)
    kind = codes.by_code()[code]
    suffix = value[len(code) :]
    rule = _SUFFIX[kind]
    if not suffix:
        if rule == "required":
            raise InvalidValue(f"feature code: {code} needs a hotline number ({code}<hotline>)")
        return FeatureRequest(kind, None)
    if rule == "none":
        raise InvalidValue(f"feature code: {code} takes no hotline number")
    if not (suffix.isdigit() and suffix.isascii()):
        raise InvalidValue(f"feature code: {value!r}: the hotline number may have only digits")
    if len(suffix) > HOTLINE_SUFFIX_MAX:
        raise InvalidValue(
            f"feature code: {value!r}: the hotline number has more than {HOTLINE_SUFFIX_MAX} digits"
        )
    return FeatureRequest(kind, values.hotline_number(suffix))


class Collected(NamedTuple):
    """`done`: the entry is complete (terminator pressed); `value`: the digits so far."""

    done: bool
    value: str


def collect(
    digits_so_far: str, new_digit: str, *, max_len: int, terminator: str | None = "#"
) -> Collected:
    """Add one DTMF key to an entry (agent number, PIN) being typed.

    `*` clears the entry, so a caller who mistyped can start over without hanging up. The
    terminator finishes it (an empty entry is returned as such; the flow decides). More
    than `max_len` digits is an error rather than a silent cut, because a cut PIN would be
    a wrong PIN and cost the agent a lockout attempt for a typo.
    """
    if terminator == "*":
        raise ValueError("'*' clears the entry and cannot be the terminator")
    if len(new_digit) != 1 or new_digit not in KEYPAD:
        raise ValueError(f"not a DTMF key: {new_digit!r}")
    if new_digit == "*":
        return Collected(False, "")
    if new_digit == terminator:
        return Collected(True, digits_so_far)
    if not new_digit.isdigit():
        raise InvalidValue(f"entry: unexpected key {new_digit!r}")
    value = digits_so_far + new_digit
    if len(value) > max_len:
        raise InvalidValue(f"entry: more than {max_len} digits")
    return Collected(False, value)
