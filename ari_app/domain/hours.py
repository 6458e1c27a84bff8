"""Opening hours of a hotline: `mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00`.

The text is what ops type and what the database stores; `OpeningHours` is the parsed week.
`str()` gives a normalised form built from the meaning, not the spelling, so two texts that
open the line at the same times normalise to the same string (groups merged, overlapping
ranges joined, days ordered).

Times are wall-clock times in the hotline's own time zone. `is_open` converts the instant to
that zone first, so opening hours follow daylight saving time the way people read them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ari_app.domain.errors import InvalidValue

DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")  # index = datetime.weekday()
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_GROUP = re.compile(r"(?P<days>[^0-9]*?)\s*(?P<times>[0-9].*)?")

Interval = tuple[int, int]  # [start, end) in minutes after local midnight
Week = tuple[tuple[Interval, ...], ...]  # seven entries, Monday first


def validate_timezone(name: str) -> str:
    """An IANA time zone name (`Europe/Berlin`), checked against the zone database."""
    value = name.strip()
    if not value:
        raise InvalidValue("time zone: empty")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(f"time zone: unknown {value!r} (use e.g. Europe/Berlin)") from None
    return value


def _error(problem: str) -> InvalidValue:
    return InvalidValue(f"opening hours: {problem}")


def _parse_time(text: str, group: str) -> int:
    match = _TIME.fullmatch(text)
    if not match:
        raise _error(f"bad time {text!r} in {group!r} (use HH:MM)")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes != 0):
        raise _error(f"bad time {text!r} in {group!r}")
    return hours * 60 + minutes


def _format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_day(text: str, group: str) -> int:
    try:
        return DAYS.index(text)
    except ValueError:
        names = " ".join(DAYS)
        raise _error(f"unknown day {text!r} in {group!r} (use {names})") from None


def _parse_days(text: str, group: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        if not item:
            raise _error(f"empty day in {group!r}")
        first, sep, last = item.partition("-")
        start = _parse_day(first, group)
        if not sep:
            days.append(start)
            continue
        end = _parse_day(last, group)
        # A range may wrap over the weekend: `fr-mo` is fr, sa, su, mo.
        span = (end - start) % 7
        days.extend((start + i) % 7 for i in range(span + 1))
    return days


def _parse_ranges(text: str, group: str) -> list[Interval]:
    ranges: list[Interval] = []
    for item in text.split(","):
        if not item:
            raise _error(f"empty time range in {group!r}")
        first, sep, last = item.partition("-")
        if not sep:
            raise _error(f"time range {item!r} in {group!r} needs a start and an end (08:00-12:00)")
        start, end = _parse_time(first, group), _parse_time(last, group)
        if start == 24 * 60:
            raise _error(f"time range {item!r} in {group!r} cannot start at 24:00")
        if end < start:
            raise _error(f"{item} ends before it starts")
        if end == start:
            raise _error(f"{item} is empty (it ends when it starts)")
        ranges.append((start, end))
    return ranges


def _merge(intervals: list[Interval]) -> tuple[Interval, ...]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _format_days(days: list[int]) -> str:
    runs: list[list[int]] = []
    for d in days:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(
        DAYS[run[0]] if len(run) == 1 else f"{DAYS[run[0]]}-{DAYS[run[-1]]}" for run in runs
    )


@dataclass(frozen=True)
class OpeningHours:
    """A parsed week; `week is None` means the hotline has no opening hours: always open."""

    week: Week | None = None

    @classmethod
    def parse(cls, text: str | None) -> OpeningHours:
        """Parse the text ops typed; None or blank means always open."""
        if text is None or not text.strip():
            return cls(None)
        per_day: list[list[Interval]] = [[] for _ in DAYS]
        for raw in text.lower().split(";"):
            group = " ".join(raw.split())
            if not group:
                continue  # tolerate a trailing ";"
            match = _GROUP.fullmatch(group)
            assert match is not None  # the pattern matches any string
            days_text = match["days"].replace(" ", "")
            times_text = (match["times"] or "").replace(" ", "")
            if not days_text:
                raise _error(f"no days in {group!r} (e.g. mo-fr 08:00-12:00)")
            if not times_text:
                raise _error(f"no times in {group!r} (e.g. mo-fr 08:00-12:00)")
            stray = re.search(r"[a-z]+", times_text)
            if stray:
                raise _error(
                    f"unexpected {stray[0]!r} after the times in {group!r}"
                    " (separate groups with ';')"
                )
            days = _parse_days(days_text, group)
            ranges = _parse_ranges(times_text, group)
            for d in days:
                per_day[d].extend(ranges)
        if not any(per_day):
            return cls(None)
        return cls(tuple(_merge(intervals) for intervals in per_day))

    @property
    def always_open(self) -> bool:
        return self.week is None

    def __str__(self) -> str:
        """Normalised text; empty for always open (store None then, see `normalise_hours`)."""
        if self.week is None:
            return ""
        groups: dict[tuple[Interval, ...], list[int]] = {}
        for d, intervals in enumerate(self.week):
            if intervals:
                groups.setdefault(intervals, []).append(d)
        parts = []
        for intervals, days in groups.items():  # dict keeps first-day order
            times = ",".join(f"{_format_time(s)}-{_format_time(e)}" for s, e in intervals)
            parts.append(f"{_format_days(days)} {times}")
        return "; ".join(parts)

    def is_open(self, at: datetime, tz: str, holidays: Collection[date] = ()) -> bool:
        """Whether the hotline is open at instant `at` (timezone-aware).

        Holidays are the hotline's local dates on which it is closed all day. They apply
        even to a hotline without opening hours: a holiday is an explicit "closed", and a
        24/7 line simply has none.
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        local = at.astimezone(ZoneInfo(validate_timezone(tz)))
        if local.date() in holidays:
            return False
        if self.week is None:
            return True
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(start * 60 <= second < end * 60 for start, end in self.week[local.weekday()])


def normalise_hours(text: str | None) -> str | None:
    """Validated, normalised text for storage; None for always open (the column's NULL)."""
    hours = OpeningHours.parse(text)
    return None if hours.always_open else str(hours)
