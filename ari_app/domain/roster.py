"""Duty roster times (issue 16), pure: when a shift starts and ends, and who is on duty.

A weekly slot is two minutes of the week in the hotline's own time zone (Monday 00:00 = 0,
Sunday 23:59 = 10079); an end before the start wraps over Sunday night, so `su 19:00` to
`mo 07:00` is one night shift. A one-off slot is two instants. While any one-off slot
covers an instant, only the one-off slots count (an exception replaces the week's plan);
otherwise the weekly slots do. Wall-clock times follow daylight saving time as people
read them, like the opening hours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ari_app.domain.errors import InvalidValue
from ari_app.domain.hours import DAYS

WEEK_MINUTES = 7 * 1440
_WEEKLY = re.compile(r"([a-z]{2})\s+([0-9]{1,2}):([0-9]{2})")
_ONCE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{1,2}):([0-9]{2})")


@dataclass(frozen=True)
class Slot:
    """A slot as the rules need it; exactly one of the two forms is set."""

    id: int
    agent_id: int
    target: str | None  # an external number, None = the agent's device
    week_start: int | None = None
    week_end: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @property
    def weekly(self) -> bool:
        return self.week_start is not None


def _hm(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise InvalidValue(f"roster time: bad time in {text!r}")
    return h * 60 + m


def parse_point(text: str, tz: str) -> int | datetime:
    """`mo 07:00` -> minute of the week; `2026-12-24 07:00` -> an aware instant (in the
    hotline's time zone `tz`)."""
    value = " ".join(text.strip().lower().split())
    weekly = _WEEKLY.fullmatch(value)
    if weekly:
        if weekly[1] not in DAYS:
            raise InvalidValue(f"roster time: unknown day {weekly[1]!r} (mo, tu, ... su)")
        return DAYS.index(weekly[1]) * 1440 + _hm(weekly[2], weekly[3], text)
    once = _ONCE.fullmatch(value)
    if once:
        try:
            day = date.fromisoformat(once[1])
        except ValueError:
            raise InvalidValue(f"roster time: bad date in {text!r}") from None
        minutes = _hm(once[2], once[3], text)
        return datetime.combine(day, time(minutes // 60, minutes % 60), ZoneInfo(tz))
    raise InvalidValue(
        f"roster time: {text.strip()!r} must be like 'mo 07:00' (weekly) or"
        " '2026-12-24 07:00' (once)"
    )


def parse_span(start: str, end: str, tz: str) -> tuple[int, int] | tuple[datetime, datetime]:
    """Both ends of a slot, of the same form; a weekly span may wrap, a one-off may not."""
    a, b = parse_point(start, tz), parse_point(end, tz)
    if isinstance(a, int) and isinstance(b, int):
        if a == b:
            raise InvalidValue("roster slot: start and end are the same time")
        return a, b
    if isinstance(a, datetime) and isinstance(b, datetime):
        if b <= a:
            raise InvalidValue("roster slot: the end must come after the start")
        return a, b
    raise InvalidValue("roster slot: give both ends weekly ('mo 07:00') or both dated")


def format_week_minute(minute: int) -> str:
    return f"{DAYS[minute // 1440]} {minute % 1440 // 60:02d}:{minute % 60:02d}"


def minute_of_week(instant: datetime, tz: str) -> int:
    local = instant.astimezone(ZoneInfo(tz))
    return local.weekday() * 1440 + local.hour * 60 + local.minute


def _covers_week(start: int, end: int, minute: int) -> bool:
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps over Sunday night


def covers(slot: Slot, instant: datetime, tz: str) -> bool:
    if slot.week_start is not None and slot.week_end is not None:
        return _covers_week(slot.week_start, slot.week_end, minute_of_week(instant, tz))
    assert slot.starts_at is not None and slot.ends_at is not None
    return slot.starts_at <= instant < slot.ends_at


def on_duty(slots: Iterable[Slot], instant: datetime, tz: str) -> list[Slot]:
    """The slots in force at `instant`: the one-off ones covering it, else the weekly."""
    active = [s for s in slots if covers(s, instant, tz)]
    once = [s for s in active if not s.weekly]
    return once or active


def week_monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def occurrences(slot: Slot, monday: date, tz: str) -> list[tuple[datetime, datetime]]:
    """Where a slot falls in the week starting `monday` (local, aware): a weekly slot once
    (its start in that week), a one-off slot if it overlaps the week."""
    zone = ZoneInfo(tz)
    week_start = datetime.combine(monday, time(), zone)
    week_end = datetime.combine(monday + timedelta(days=7), time(), zone)
    if slot.week_start is not None and slot.week_end is not None:
        length = (slot.week_end - slot.week_start) % WEEK_MINUTES
        day = monday + timedelta(days=slot.week_start // 1440)
        start = datetime.combine(
            day, time(slot.week_start % 1440 // 60, slot.week_start % 60), zone
        )
        end_local = (start.replace(tzinfo=None) + timedelta(minutes=length)).replace(tzinfo=zone)
        return [(start, end_local)]
    assert slot.starts_at is not None and slot.ends_at is not None
    if slot.ends_at <= week_start or slot.starts_at >= week_end:
        return []
    return [(slot.starts_at.astimezone(zone), slot.ends_at.astimezone(zone))]
