"""Validation of values people type (CLI options, config): one place, one clear message.

Every function takes text, returns the normalised value and raises `InvalidValue` with a
single human line naming what is wrong. The strict character sets are a security rule, not
taste: numbers and dial strings end up in Asterisk Dial/Originate strings and sound names
in Playback URIs, where `&`, `,` or `..` would change what Asterisk does.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from ari_app.domain.errors import InvalidValue

_PHONE = re.compile(r"\+?[0-9]{2,20}")
_AGENT_NUMBER = re.compile(r"[0-9]{2,10}")
_DIAL_CHARS = re.compile(r"[A-Za-z0-9_./@:+-]+")
_DIAL_TECH = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SOUND = re.compile(r"[A-Za-z0-9_/-]+")

DIAL_STRING_MAX = 160  # agent_states.target column
SOUND_NAME_MAX = 200  # hotlines.greeting_sound column

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"([0-9]+)([dhms])")


def _number(text: str, what: str) -> str:
    # Spaces are what people paste from address books ("+49 30 1234"); strip only those.
    value = "".join(text.split())
    if not value:
        raise InvalidValue(f"{what}: empty")
    if not _PHONE.fullmatch(value):
        digits = value.removeprefix("+")
        if digits.isdigit() and digits.isascii():
            raise InvalidValue(f"{what}: {text.strip()!r} must have 2 to 20 digits")
        raise InvalidValue(f"{what}: {text.strip()!r} may contain only digits and a leading '+'")
    return value


def phone_number(text: str) -> str:
    """An external phone number (mobile, home, forward target): `+4930123456` or `030123`."""
    return _number(text, "phone number")


def hotline_number(text: str) -> str:
    """The number citizens dial for a hotline (the dialplan's ${EXTEN})."""
    return _number(text, "hotline number")


def agent_number(text: str) -> str:
    """An agent's number, typed on a keypad when logging in remotely: digits only."""
    value = text.strip()
    if not value:
        raise InvalidValue("agent number: empty")
    if not _AGENT_NUMBER.fullmatch(value):
        if value.isdigit() and value.isascii():
            raise InvalidValue(f"agent number: {value!r} must have 2 to 10 digits")
        raise InvalidValue(f"agent number: {value!r} may contain only digits")
    return value


def dial_string(text: str) -> str:
    """An internal device as Asterisk dials it: `TECH/resource`, e.g. `PJSIP/1001`.

    Only a conservative character set is allowed: `&` would dial several devices, `,`
    would smuggle Dial options, parentheses and whitespace have meanings in dialplan
    functions. Ops type these, callers never do, but a typo must not become a feature.
    """
    value = text.strip()
    if not value:
        raise InvalidValue("dial string: empty")
    if len(value) > DIAL_STRING_MAX:
        raise InvalidValue(f"dial string: longer than {DIAL_STRING_MAX} characters")
    if not _DIAL_CHARS.fullmatch(value):
        bad = sorted({c for c in value if not _DIAL_CHARS.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad)
        raise InvalidValue(f"dial string: {value!r} contains forbidden character(s) {shown}")
    tech, sep, resource = value.partition("/")
    if not sep:
        raise InvalidValue(f"dial string: {value!r} must look like TECH/resource (PJSIP/1001)")
    if not _DIAL_TECH.fullmatch(tech):
        raise InvalidValue(f"dial string: {value!r} has no technology before '/' (PJSIP/1001)")
    if not resource:
        raise InvalidValue(f"dial string: {value!r} has no resource after '/' (PJSIP/1001)")
    return value


def sound_name(text: str) -> str:
    """A sound as Asterisk names it, relative to its sounds directory: `custom/welcome`.

    No file extension (Asterisk picks the format), no scheme (`sound:` is added by the app),
    no absolute path and no `..`, so a sound name can only point into the sounds tree.
    """
    value = text.strip()
    if not value:
        raise InvalidValue("sound name: empty")
    if len(value) > SOUND_NAME_MAX:
        raise InvalidValue(f"sound name: longer than {SOUND_NAME_MAX} characters")
    if ".." in value:
        raise InvalidValue(f"sound name: {value!r} must not contain '..'")
    if ":" in value:
        raise InvalidValue(f"sound name: {value!r} must not contain a scheme like 'sound:'")
    if value.startswith("/"):
        raise InvalidValue(
            f"sound name: {value!r} must be relative to the sounds directory, not absolute"
        )
    if "." in value:
        raise InvalidValue(f"sound name: {value!r} must not have a file extension")
    if not _SOUND.fullmatch(value):
        raise InvalidValue(f"sound name: {value!r} may contain only letters, digits, '-_/'")
    if value.endswith("/") or "//" in value:
        raise InvalidValue(f"sound name: {value!r} has an empty path part")
    return value


def duration(text: str) -> int:
    """A duration in whole seconds: `30` or `30s`, `5m`, `1h`, `2d`, `90d`, `1h30m`.

    Units must come largest first and once each, so `30m1h` (probably a typo) is refused
    rather than guessed.
    """
    value = "".join(text.split()).lower()
    if not value:
        raise InvalidValue("duration: empty")
    if value.isdigit() and value.isascii():
        return int(value)
    pos = 0
    total = 0
    seen: list[str] = []
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        amount, unit = match.groups()
        if seen and _order(unit) <= _order(seen[-1]):
            raise InvalidValue(
                f"duration: {text.strip()!r} must list units once each, largest first (1h30m)"
            )
        seen.append(unit)
        total += int(amount) * _UNITS[unit]
        pos = match.end()
    if pos != len(value) or not seen:
        raise InvalidValue(
            f"duration: {text.strip()!r} is not a duration (use e.g. 30s, 5m, 1h30m, 2d)"
        )
    return total


def _order(unit: str) -> int:
    return "dhms".index(unit)


def format_duration(seconds: int) -> str:
    """The shortest form `duration()` reads back to the same value: 5400 -> `1h30m`."""
    if seconds < 0:
        raise ValueError("format_duration: negative duration")
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    rest = seconds
    for unit, size in _UNITS.items():
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def parse_date(text: str) -> date:
    """An ISO date `YYYY-MM-DD` (holidays, report ranges); nothing locale-dependent."""
    value = text.strip()
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise InvalidValue(f"date: {value!r} is not a date (use YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"date: {value!r} does not exist") from None


# A plain address, no display name: it goes into SMTP envelopes and headers, where a
# comma, angle bracket or line break would add recipients or headers.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
EMAIL_MAX = 254  # RFC 5321 path limit


def email_address(text: str) -> str:
    """An e-mail address for notifications: `name@example.org` (no display name)."""
    value = text.strip()
    if not value:
        raise InvalidValue("e-mail address: empty")
    if len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        raise InvalidValue(f"e-mail address: {value!r} is not a plain address like a@example.org")
    return value


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS_AGO = re.compile(r"([0-9]{1,4})d")


def report_day(text: str, today: date) -> date:
    """A day as people name it for a report: `2026-11-01`, `today`, `yesterday`, `7d`
    (seven days before today) or a weekday, `monday` or `mon` (the latest one, today if
    today is that day: "since monday" means this week)."""
    value = text.strip().lower()
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    ago = _DAYS_AGO.fullmatch(value)
    if ago:
        return today - timedelta(days=int(ago.group(1)))
    if len(value) >= 3:
        for index, weekday in enumerate(_WEEKDAYS):
            if weekday.startswith(value):
                return today - timedelta(days=(today.weekday() - index) % 7)
    if value[:1].isdigit() and "-" in value:
        return parse_date(value)
    raise InvalidValue(
        f"day: {text.strip()!r} is not a day (use 2026-11-01, today, yesterday, 7d or monday)"
    )
