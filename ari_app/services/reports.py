"""Call reports per hotline and day (`hotline report`), computed by Postgres.

Definitions (the panel's `services/hotline_stats.py` uses the same ones, so its service
level today and this report agree):
- day: the local day in the hotline's own time zone when the call arrived.
- calls: every call that reached the hotline. Each ended call has exactly one outcome, so
  answered + abandoned + voicemail + forwarded + closed + no_agents + timeout = calls
  (minus calls still in progress).
- offered: calls that entered the queue (and were answered or ended): the calls agents
  could have answered. Closed, no-agent and queue-full calls are never offered.
- wait: from arrival until answered, or until the call ended when it was not answered.
  Average and maximum over the offered calls.
- service level: share of offered calls answered within the threshold (the hotline's
  service_level_s, or the one asked for), in percent.
- callbacks (issue 15): of the period's calls, those whose caller asked to be called back
  (requested), were connected to an agent by a callback (completed), or were not reached
  in all attempts (failed); time to callback: from the original call's arrival until the
  callback was connected, averaged over the completed ones.
- period: `hotline_report(by=...)` groups by local hour, day (the default) or week
  (Monday to Sunday); `day_series` gives a day's 24 hours with the service level through
  the day (cumulative), for the panel's charts and `hotline report --chart`.
Per-agent figures exist only on request (`agent_report`), works-council friendly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Date, DateTime, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import Agent, Call, Callback, CallEvent, Hotline
from ari_app.domain.callbacks import CallbackState
from ari_app.domain.enums import CallStatus, Outcome
from ari_app.domain.errors import InvalidValue
from ari_app.services import admin

ENTER_QUEUE_EVENT = "ENTERQUEUE"  # logged by the inbound flow when a caller is queued
NO_ANSWER_EVENT = "RINGNOANSWER"  # logged when an agent was rung and did not answer
By = Literal["hour", "day", "week"]
BY: tuple[By, ...] = ("hour", "day", "week")
OUTCOMES = (
    Outcome.ANSWERED,
    Outcome.ABANDONED,
    Outcome.VOICEMAIL,
    Outcome.FORWARDED,
    Outcome.CLOSED,
    Outcome.NO_AGENTS,
    Outcome.TIMEOUT,
)


@dataclass(frozen=True)
class DayReport:
    hotline: str
    name: str
    day: date
    calls: int
    offered: int
    outcomes: dict[str, int]  # outcome value -> calls, every outcome of OUTCOMES present
    avg_wait_s: float | None
    max_wait_s: int | None
    service_level_s: int
    answered_in_time: int
    hour: int | None = None  # by hour: the local hour of `day`
    by: By = "day"  # by week: `day` is the week's Monday
    callbacks_requested: int = 0
    callbacks_completed: int = 0
    callbacks_failed: int = 0
    avg_time_to_callback_s: float | None = None

    @property
    def service_level_pct(self) -> float | None:
        return None if not self.offered else round(100 * self.answered_in_time / self.offered, 1)

    @property
    def period(self) -> str:
        """`2026-12-04`, `2026-12-04 13:00` or `2026-W49` (ISO week)."""
        if self.by == "hour":
            return f"{self.day.isoformat()} {self.hour or 0:02d}:00"
        if self.by == "week":
            year, week, _ = self.day.isocalendar()
            return f"{year}-W{week:02d}"
        return self.day.isoformat()

    def as_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {} if self.by == "day" else {"period": self.period}
        if self.by == "hour":
            extra["hour"] = self.hour
        return {
            "hotline": self.hotline,
            "name": self.name,
            "day": self.day.isoformat(),
            **extra,
            "calls": self.calls,
            "offered": self.offered,
            **self.outcomes,
            "avg_wait_s": self.avg_wait_s,
            "max_wait_s": self.max_wait_s,
            "service_level_s": self.service_level_s,
            "service_level_pct": self.service_level_pct,
            "callbacks_requested": self.callbacks_requested,
            "callbacks_completed": self.callbacks_completed,
            "callbacks_failed": self.callbacks_failed,
            "avg_time_to_callback_s": self.avg_time_to_callback_s,
        }


@dataclass(frozen=True)
class AgentDayReport:
    hotline: str
    day: date
    agent: str
    name: str
    answered: int
    talk_time_s: int
    not_answered: int  # times the agent was rung for a call and did not take it

    def as_dict(self) -> dict[str, Any]:
        return {
            "hotline": self.hotline,
            "day": self.day.isoformat(),
            "agent": self.agent,
            "name": self.name,
            "answered": self.answered,
            "talk_time_s": self.talk_time_s,
            "avg_talk_s": round(self.talk_time_s / self.answered, 1) if self.answered else None,
            "not_answered": self.not_answered,
        }


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


def _local_day() -> ColumnElement[date]:
    return cast(func.timezone(Hotline.timezone, Call.entered_at), Date)


def _bucket(by: By) -> ColumnElement[Any]:
    """The local period a call arrived in: a date (day, the week's Monday) or a local
    timestamp truncated to the hour."""
    local = func.timezone(Hotline.timezone, Call.entered_at)
    if by == "hour":
        return cast(func.date_trunc("hour", local), DateTime(timezone=False))
    if by == "week":
        return cast(func.date_trunc("week", local), Date)
    return _local_day()


def _seconds(interval: Any) -> ColumnElement[Any]:
    return func.extract("epoch", interval)


async def _scope(
    session: AsyncSession, start: date, end: date, hotline_number: str | None
) -> list[ColumnElement[bool]]:
    """WHERE clauses for calls of the period (local days), optionally of one hotline."""
    if start > end:
        raise InvalidValue(f"report: from {start.isoformat()} is after to {end.isoformat()}")
    if hotline_number is not None:
        await admin.get_hotline(session, hotline_number)  # NotFound
    # A UTC range one day wider than asked lets the index on entered_at do the coarse work;
    # the local day then decides exactly (no time zone is more than a day off UTC).
    low = datetime.combine(start - timedelta(days=1), time(), UTC)
    high = datetime.combine(end + timedelta(days=2), time(), UTC)
    clauses = [
        Call.entered_at >= low,
        Call.entered_at < high,
        _local_day().between(start, end),
    ]
    if hotline_number is not None:
        clauses.append(Hotline.number == hotline_number)
    return clauses


async def hotline_report(
    session: AsyncSession,
    start: date,
    end: date,
    *,
    hotline_number: str | None = None,
    service_level_s: int | None = None,
    by: By = "day",
) -> list[DayReport]:
    """Figures per hotline and local day (or hour, or week) of the calls from `start` to
    `end` (inclusive local days); periods without calls are left out. `service_level_s`
    overrides every hotline's own threshold."""
    if by not in BY:
        raise InvalidValue(f"report: --by must be one of {', '.join(BY)}, got {by!r}")
    clauses = await _scope(session, start, end, hotline_number)
    answered = Call.answered_at.is_not(None)
    queued = or_(
        answered,
        exists().where(CallEvent.call_id == Call.id, CallEvent.event == ENTER_QUEUE_EVENT),
    )
    offered = and_(queued, or_(answered, Call.status == CallStatus.ENDED))
    wait = _seconds(func.coalesce(Call.answered_at, Call.ended_at) - Call.entered_at)
    threshold = Hotline.service_level_s if service_level_s is None else literal(service_level_s)
    in_time = and_(offered, answered, _seconds(Call.answered_at - Call.entered_at) <= threshold)
    day = _bucket(by).label("day")
    query = (
        select(
            Hotline.number,
            Hotline.name,
            day,
            Hotline.service_level_s,
            func.count(),
            _count_if(offered),
            *(_count_if(Call.outcome == outcome) for outcome in OUTCOMES),
            func.avg(case((offered, wait))),
            func.max(case((offered, wait))),
            _count_if(in_time),
            func.count(Callback.id),
            _count_if(Callback.state == CallbackState.COMPLETED.value),
            _count_if(Callback.state == CallbackState.FAILED.value),
            func.avg(
                case(
                    (
                        Callback.state == CallbackState.COMPLETED.value,
                        _seconds(Callback.finished_at - Callback.entered_at),
                    )
                )
            ),
        )
        .join(Hotline, Hotline.id == Call.hotline_id)
        .outerjoin(Callback, Callback.call_id == Call.id)  # at most one per call
        .where(*clauses)
        .group_by(Hotline.id, Hotline.number, Hotline.name, Hotline.service_level_s, day)
        .order_by(Hotline.number, day)
    )
    reports = []
    for result_row in (await session.execute(query)).all():
        row: tuple[Any, ...] = tuple(result_row)
        number, name, row_day, own_sl, calls, n_offered = row[:6]
        by_outcome = row[6 : 6 + len(OUTCOMES)]
        avg_wait, max_wait, n_in_time, cb_req, cb_done, cb_failed, cb_avg = row[6 + len(OUTCOMES) :]
        hour = None
        if isinstance(row_day, datetime):  # by hour
            hour = row_day.hour
            row_day = row_day.date()
        reports.append(
            DayReport(
                hotline=number,
                name=name,
                day=row_day,
                hour=hour,
                by=by,
                calls=int(calls),
                offered=int(n_offered),
                outcomes={o.value: int(n) for o, n in zip(OUTCOMES, by_outcome, strict=True)},
                avg_wait_s=None if avg_wait is None else round(float(avg_wait), 1),
                max_wait_s=None if max_wait is None else round(float(max_wait)),
                service_level_s=own_sl if service_level_s is None else service_level_s,
                answered_in_time=int(n_in_time),
                callbacks_requested=int(cb_req),
                callbacks_completed=int(cb_done),
                callbacks_failed=int(cb_failed),
                avg_time_to_callback_s=None if cb_avg is None else round(float(cb_avg), 1),
            )
        )
    return reports


@dataclass(frozen=True)
class HourPoint:
    """One local hour of a day, for charts: calls by outcome, and the service level of the
    day up to the end of this hour (None while no call was offered yet)."""

    hour: int
    answered: int
    abandoned: int
    voicemail: int
    offered: int
    answered_in_time: int
    service_level_pct: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.hour,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "voicemail": self.voicemail,
            "offered": self.offered,
            "answered_in_time": self.answered_in_time,
            "service_level_pct": self.service_level_pct,
        }


async def day_series(
    session: AsyncSession,
    day: date,
    *,
    hotline_number: str | None = None,
    until_hour: int | None = None,
) -> list[HourPoint]:
    """The 24 local hours of `day` (all hotlines added up, or one): what the panel's charts
    and `hotline report --chart --by hour` draw, from `hotline_report(by="hour")`. For
    today, `until_hour` (the current local hour) ends the service level line there."""
    rows = await hotline_report(session, day, day, hotline_number=hotline_number, by="hour")
    per_hour: dict[int, list[int]] = {}
    for r in rows:
        figures = per_hour.setdefault(r.hour or 0, [0, 0, 0, 0, 0])
        for i, n in enumerate(
            (
                r.outcomes[Outcome.ANSWERED.value],
                r.outcomes[Outcome.ABANDONED.value],
                r.outcomes[Outcome.VOICEMAIL.value],
                r.offered,
                r.answered_in_time,
            )
        ):
            figures[i] += n
    points, offered_so_far, in_time_so_far = [], 0, 0
    for hour in range(24):
        answered, abandoned, voicemail, offered, in_time = per_hour.get(hour, [0, 0, 0, 0, 0])
        offered_so_far += offered
        in_time_so_far += in_time
        level = round(100 * in_time_so_far / offered_so_far, 1) if offered_so_far else None
        if until_hour is not None and hour > until_hour:
            level = None  # not yet
        points.append(HourPoint(hour, answered, abandoned, voicemail, offered, in_time, level))
    return points


async def local_now(
    session: AsyncSession, now: datetime, hotline_number: str | None = None
) -> datetime:
    """`now` in the hotline's time zone (without one: the first hotline's, else UTC): its
    date is the day the panel's charts show."""
    query = select(Hotline.timezone).order_by(Hotline.number).limit(1)
    if hotline_number is not None:
        query = query.where(Hotline.number == hotline_number)
    tz = await session.scalar(query)
    return now.astimezone(ZoneInfo(tz or "UTC"))


async def agent_report(
    session: AsyncSession, start: date, end: date, *, hotline_number: str | None = None
) -> list[AgentDayReport]:
    """Per hotline, local day and agent: calls answered, talk time, rings not answered."""
    clauses = await _scope(session, start, end, hotline_number)
    day = _local_day().label("day")
    talk = _seconds(Call.ended_at - Call.answered_at)
    answered_rows = await session.execute(
        select(
            Hotline.number,
            day,
            Agent.number,
            Agent.name,
            func.count(),
            func.coalesce(func.sum(talk), 0),
        )
        .join(Hotline, Hotline.id == Call.hotline_id)
        .join(Agent, Agent.id == Call.agent_id)
        .where(*clauses, Call.outcome == Outcome.ANSWERED)
        .group_by(Hotline.number, day, Agent.number, Agent.name)
    )
    missed_rows = await session.execute(
        select(Hotline.number, day, Agent.number, Agent.name, func.count())
        .select_from(CallEvent)
        .join(Call, Call.id == CallEvent.call_id)
        .join(Hotline, Hotline.id == Call.hotline_id)
        .join(Agent, Agent.id == CallEvent.agent_id)
        .where(*clauses, CallEvent.event == NO_ANSWER_EVENT)
        .group_by(Hotline.number, day, Agent.number, Agent.name)
    )
    figures: dict[tuple[str, date, str], list[Any]] = {}
    for row in answered_rows:
        hotline, row_day, agent, name, n, seconds = tuple[Any, ...](row)
        figures[(hotline, row_day, agent)] = [name, int(n), round(float(seconds)), 0]
    for hotline, row_day, agent, name, n in missed_rows:
        figures.setdefault((hotline, row_day, agent), [name, 0, 0, 0])[3] = int(n)
    return [
        AgentDayReport(hotline, row_day, agent, name, answered, talk_s, missed)
        for (hotline, row_day, agent), (name, answered, talk_s, missed) in sorted(figures.items())
    ]
