"""Duty roster per hotline (issue 16): shifts, the week, iCalendar, and the shift change.

At each shift change `apply` logs the incoming agents in first (to the slot's target, by
the login service with its audit row, path `roster`) and only then the outgoing ones out,
in one transaction under the hotline's row lock, so the staffing minimum is never broken
and two nodes never both change the shift. Outgoing agents already gone hear nothing. A
handover by phone between two changes stands until the next change: the colleague who
took the duty over is then released like the roster's own outgoing agent. When an incoming
agent cannot be logged in (no target, locked, no longer a member) the outgoing agents stay
and the caller escalates (`Change.failed`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import (
    Agent,
    AgentLogin,
    AgentState,
    AuditEntry,
    Hotline,
    Membership,
    RosterSlot,
    RosterState,
)
from ari_app.domain import roster as rules
from ari_app.domain import values
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import HotlineError, InvalidValue, NotFound, Refused
from ari_app.domain.hours import DAYS
from ari_app.services import admin, agents, audit, auth
from ari_app.services.staffing import Shortage

log = logging.getLogger(__name__)

ACTOR = "roster"
PRODID = "-//Hotline//duty roster//EN"
X_AGENT = "X-HOTLINE-AGENT"
X_TARGET = "X-HOTLINE-TARGET"
DEVICE = "device"  # --target device: the agent's bound phone (the default)


# --- slots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotInfo:
    id: int
    agent: str
    agent_name: str
    weekly: bool
    start: str  # `mo 07:00` or `2026-12-24 07:00` (hotline time)
    end: str
    target: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "name": self.agent_name,
            "kind": "weekly" if self.weekly else "once",
            "from": self.start,
            "to": self.end,
            "target": self.target or DEVICE,
        }


def _slot(row: RosterSlot) -> rules.Slot:
    return rules.Slot(
        row.id, row.agent_id, row.target, row.week_start, row.week_end, row.starts_at, row.ends_at
    )


def _local(instant: datetime, tz: str) -> str:
    return f"{instant.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M}"


async def _target(session: AsyncSession, agent: Agent, target: str | None) -> str | None:
    """None (the device) or one of the agent's configured external numbers."""
    if target is None or target.strip().lower() in ("", DEVICE):
        if await agents.device_of(session, agent) is None:
            raise Refused(
                f"agent {agent.number} has no device; give --target with one of their"
                " external numbers"
            )
        return None
    number = values.phone_number(target)
    known = await auth.external_number(session, agent, number)
    if known is None:
        raise Refused(
            f"{number} is not an external number of agent {agent.number}"
            " (add it with: hotline agent number add)"
        )
    return number


async def add_slot(
    session: AsyncSession,
    hotline: Hotline,
    agent_number: str,
    start: str,
    end: str,
    target: str | None = None,
    *,
    actor: str | None = None,
) -> RosterSlot:
    """Add a weekly or a one-off shift; audited (`roster_add`) when `actor` is given."""
    agent = await admin.get_agent(session, agent_number)
    member = await session.get(Membership, (hotline.id, agent.id))
    if member is None:
        raise Refused(f"agent {agent.number} is not a member of hotline {hotline.number}")
    span = rules.parse_span(start, end, hotline.timezone)
    row = RosterSlot(
        hotline_id=hotline.id, agent_id=agent.id, target=await _target(session, agent, target)
    )
    if isinstance(span[0], int):
        row.week_start, row.week_end = span[0], int(span[1])
    else:
        assert isinstance(span[1], datetime)
        row.starts_at, row.ends_at = span[0], span[1]
    session.add(row)
    await session.flush()
    await audit.ops_change(
        session, actor, "roster_add", hotline_id=hotline.id, slot=row.id,
        agent_number=agent_number, start=start, end=end, target=target,
    )  # fmt: skip
    return row


async def _rows(session: AsyncSession, hotline: Hotline) -> list[tuple[RosterSlot, Agent]]:
    result = await session.execute(
        select(RosterSlot, Agent)
        .join(Agent, Agent.id == RosterSlot.agent_id)
        .where(RosterSlot.hotline_id == hotline.id)
        .order_by(RosterSlot.starts_at.nulls_first(), RosterSlot.week_start, RosterSlot.id)
    )
    return [(row[0], row[1]) for row in result]


def _info(row: RosterSlot, agent: Agent, tz: str) -> SlotInfo:
    if row.week_start is not None and row.week_end is not None:
        start, end = (
            rules.format_week_minute(row.week_start),
            rules.format_week_minute(row.week_end),
        )
    else:
        assert row.starts_at is not None and row.ends_at is not None
        start, end = _local(row.starts_at, tz), _local(row.ends_at, tz)
    return SlotInfo(
        row.id, agent.number, agent.name, row.week_start is not None, start, end, row.target
    )


async def list_slots(session: AsyncSession, hotline: Hotline) -> list[SlotInfo]:
    return [_info(row, agent, hotline.timezone) for row, agent in await _rows(session, hotline)]


async def remove_slot(
    session: AsyncSession, hotline: Hotline, slot_id: int, *, actor: str | None = None
) -> SlotInfo:
    """Remove a shift; audited (`roster_remove`) when `actor` is given."""
    row = await session.get(RosterSlot, slot_id)
    if row is None or row.hotline_id != hotline.id:
        raise NotFound(f"hotline {hotline.number} has no roster slot {slot_id}")
    agent = await session.get(Agent, row.agent_id)
    assert agent is not None
    info = _info(row, agent, hotline.timezone)
    await session.delete(row)
    await session.flush()
    await audit.ops_change(
        session, actor, "roster_remove", hotline_id=hotline.id, slot=slot_id,
        agent_number=info.agent, start=info.start, end=info.end, target=info.target,
    )  # fmt: skip
    return info


@dataclass(frozen=True)
class Shift:
    start: datetime  # local, aware
    end: datetime
    agent: str
    agent_name: str
    target: str | None
    weekly: bool


async def week(session: AsyncSession, hotline: Hotline, day: date) -> list[Shift]:
    """The shifts of the week (Monday to Sunday) that contains `day`, by start. Weekly
    shifts a one-off exception replaces are left out where the exception covers them."""
    monday = rules.week_monday(day)
    rows = await _rows(session, hotline)
    tz = hotline.timezone
    once = [
        (s, e)
        for row, _ in rows
        if row.week_start is None
        for s, e in rules.occurrences(_slot(row), monday, tz)
    ]
    shifts = []
    for row, agent in rows:
        for start, end in rules.occurrences(_slot(row), monday, tz):
            if row.week_start is not None and any(s <= start < e for s, e in once):
                continue
            shifts.append(
                Shift(start, end, agent.number, agent.name, row.target, row.week_start is not None)
            )
    return sorted(shifts, key=lambda s: (s.start, s.agent))


# --- iCalendar --------------------------------------------------------------------------

# Weekly slots are written as weekly recurring events from this week's occurrence on.


async def export_ics(session: AsyncSession, hotline: Hotline, today: date) -> bytes:
    """The hotline's roster as an iCalendar file: one VEVENT per slot, weekly slots with
    RRULE:FREQ=WEEKLY; the agent and target in X-HOTLINE-* properties (for the round trip)
    and readable in the summary."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"Duty roster {hotline.number} {hotline.name}")
    monday = rules.week_monday(today)
    for row, agent in await _rows(session, hotline):
        slot = _slot(row)
        if slot.weekly:
            ((start, end),) = rules.occurrences(slot, monday, hotline.timezone)
        else:
            assert row.starts_at is not None and row.ends_at is not None
            start, end = row.starts_at, row.ends_at
        event = icalendar.Event()
        event.add("uid", f"hotline-{hotline.number}-slot-{row.id}@hotline")
        event.add("dtstamp", datetime.now(UTC))
        event.add("summary", f"Duty {hotline.number}: agent {agent.number} {agent.name}")
        event.add("dtstart", start)
        event.add("dtend", end)
        if slot.weekly:
            event.add("rrule", {"freq": "weekly"})
        event.add(X_AGENT, agent.number)
        event.add(X_TARGET, row.target or DEVICE)
        cal.add_component(event)
    data: bytes = cal.to_ical()
    return data


def _aware(value: Any, tz: str, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(tz))
    raise InvalidValue(f"iCalendar: {what} must be a date with a time")


async def import_ics(
    session: AsyncSession, hotline: Hotline, data: bytes, *, actor: str | None = None
) -> list[RosterSlot]:
    """Add the VEVENTs of an iCalendar file as slots (weekly with RRULE:FREQ=WEEKLY, one
    slot per BYDAY day; once otherwise). The agent comes from X-HOTLINE-AGENT. Audited
    (`roster_import`, one row) when `actor` is given."""
    try:
        cal = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise InvalidValue(f"iCalendar: cannot read the file: {exc}") from None
    tz = hotline.timezone
    added: list[RosterSlot] = []
    for event in cal.walk("VEVENT"):
        label = str(event.get("summary") or event.get("uid") or "an event")
        agent_number = event.get(X_AGENT)
        if agent_number is None:
            raise InvalidValue(f"iCalendar: {label!r} has no {X_AGENT} (the agent's number)")
        start = _aware(event.decoded("dtstart"), tz, f"DTSTART of {label!r}")
        if event.get("dtend") is not None:
            end = _aware(event.decoded("dtend"), tz, f"DTEND of {label!r}")
        elif event.get("duration") is not None:
            end = start + event.decoded("duration")
        else:
            raise InvalidValue(f"iCalendar: {label!r} has no DTEND or DURATION")
        target = str(event.get(X_TARGET) or DEVICE)
        rrule = event.get("rrule")
        if rrule is None:
            fmt = "%Y-%m-%d %H:%M"
            spans = [
                (f"{start.astimezone(ZoneInfo(tz)):{fmt}}", f"{end.astimezone(ZoneInfo(tz)):{fmt}}")
            ]
        else:
            if [str(f).upper() for f in rrule.get("FREQ", [])] != ["WEEKLY"]:
                raise InvalidValue(f"iCalendar: {label!r} repeats other than weekly")
            if end - start >= timedelta(days=7):
                raise InvalidValue(f"iCalendar: {label!r} is a week or longer")
            local = start.astimezone(ZoneInfo(tz))
            length = end - start
            days = [str(d).lower()[-2:] for d in rrule.get("BYDAY", [])] or [DAYS[local.weekday()]]
            spans = []
            for day in days:
                begin = rules.parse_point(f"{day} {local:%H:%M}", tz)
                assert isinstance(begin, int)
                finish = (begin + int(length.total_seconds() // 60)) % rules.WEEK_MINUTES
                spans.append((rules.format_week_minute(begin), rules.format_week_minute(finish)))
        for a, b in spans:
            added.append(await add_slot(session, hotline, str(agent_number), a, b, target))
    await audit.ops_change(
        session, actor, "roster_import", hotline_id=hotline.id, slots=[s.id for s in added]
    )
    return added


# --- the shift change -------------------------------------------------------------------


@dataclass
class Change:
    """What one shift change did (for the log, the audit row and the escalation)."""

    hotline_id: int
    number: str
    name: str
    min_agents: int
    escalation_numbers: tuple[str, ...]
    logged_in: list[str] = field(default_factory=list)
    logged_out: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # agent, why
    kept: list[str] = field(default_factory=list)  # outgoing agents who stay

    def shortage(self, available: int) -> Shortage:
        return Shortage(
            self.hotline_id,
            self.number,
            self.name,
            self.min_agents,
            available,
            self.escalation_numbers,
        )


async def roster_hotlines(session: AsyncSession) -> list[int]:
    """Hotlines with a roster (slots, or a shift applied that may have to end)."""
    with_slots = select(RosterSlot.hotline_id)
    with_state = select(RosterState.hotline_id)
    return sorted(set(await session.scalars(with_slots.union(with_state))))


async def _logged_in(session: AsyncSession, agent_id: int, hotline_id: int) -> bool:
    return await session.get(AgentLogin, (agent_id, hotline_id)) is not None


async def _takers(session: AsyncSession, hotline_id: int, mark: int) -> set[int]:
    """Agents who took a duty of this hotline over by phone since the last change."""
    numbers = {
        str(row.detail.get("to_agent"))
        for row in await session.scalars(
            select(AuditEntry).where(
                AuditEntry.hotline_id == hotline_id,
                AuditEntry.action == "handover",
                AuditEntry.id > mark,
            )
        )
        if isinstance(row.detail, dict)
    }
    if not numbers:
        return set()
    return set(await session.scalars(select(Agent.id).where(Agent.number.in_(numbers))))


async def _why_not(
    session: AsyncSession, agent: Agent, hotline: Hotline, target: str | None, now: datetime
) -> tuple[str | None, agents.Target | None]:
    """Why the agent cannot be logged in now (None: they can), and to which target."""
    if await session.get(Membership, (hotline.id, agent.id)) is None:
        return "no longer a member", None
    if await auth.is_locked(session, auth.agent_subject(agent.number), now):
        return "locked", None
    if target is None:
        device = await agents.device_of(session, agent)
        if device is None:
            return "no device", None
        return None, agents.Target(device, TargetKind.DEVICE)
    configured = await auth.external_number(session, agent, target)
    if configured is None:
        return "target no longer configured", None
    return None, agents.Target(target, TargetKind.EXTERNAL)


async def apply(session: AsyncSession, hotline_id: int, now: datetime) -> Change | None:
    """Apply the roster to one hotline at `now`; None when the shift has not changed."""
    hotline = await session.get(Hotline, hotline_id, with_for_update=True)
    if hotline is None:
        return None
    rows = list(
        await session.scalars(select(RosterSlot).where(RosterSlot.hotline_id == hotline_id))
    )
    duty: dict[str, str | None] = {}
    for slot in sorted(rules.on_duty(map(_slot, rows), now, hotline.timezone), key=lambda s: s.id):
        duty.setdefault(str(slot.agent_id), slot.target)
    state = await session.get(RosterState, hotline_id, with_for_update=True)
    if state is None:
        if not duty:
            return None  # no shift has started yet
        state = RosterState(
            hotline_id=hotline_id, duty={}, holding=[], audit_mark=0, changed_at=now
        )
        session.add(state)
    elif state.duty == duty:
        return None
    change = Change(
        hotline.id,
        hotline.number,
        hotline.name,
        hotline.min_agents,
        tuple(hotline.escalation_numbers or ()),
    )
    holding: set[int] = set()
    # Incoming first: nobody leaves before the next one is on duty.
    for key, target in duty.items():
        agent = await session.get(Agent, int(key))
        if agent is None:
            continue
        why, login_target = await _why_not(session, agent, hotline, target, now)
        if login_target is None:
            change.failed.append((agent.number, why or "unknown"))
            continue
        state_row = await session.get(AgentState, agent.id)
        already = (
            await _logged_in(session, agent.id, hotline.id)
            and state_row is not None
            and (state_row.target, state_row.target_kind)
            == (login_target.address, login_target.kind)
            and not state_row.paused
        )
        if not already:
            try:
                async with session.begin_nested():
                    await agents.login(
                        session, agent, target=login_target, hotline_number=hotline.number,
                        path="roster", actor=ACTOR,
                    )  # fmt: skip
                    if state_row is not None and state_row.paused:
                        await agents.set_paused(session, agent, False, path="roster", actor=ACTOR)
            except HotlineError as exc:
                change.failed.append((agent.number, exc.message))
                continue
            change.logged_in.append(agent.number)
        holding.add(agent.id)
    outgoing = (set(state.holding) | await _takers(session, hotline.id, state.audit_mark)) - {
        int(k) for k in duty
    }
    for agent_id in sorted(outgoing):
        agent = await session.get(Agent, agent_id)
        if agent is None or not await _logged_in(session, agent_id, hotline.id):
            continue  # gone already: hears nothing
        if change.failed:
            change.kept.append(agent.number)
            holding.add(agent_id)
            continue
        try:
            async with session.begin_nested():
                await agents.logout(
                    session, agent, hotline_number=hotline.number, path="roster", actor=ACTOR
                )
        except HotlineError:
            change.kept.append(agent.number)  # the staffing rule keeps them
            holding.add(agent_id)
            continue
        change.logged_out.append(agent.number)
    await audit.record(
        session,
        actor=ACTOR,
        action="roster_shift",
        path="roster",
        hotline_id=hotline.id,
        logged_in=change.logged_in,
        logged_out=change.logged_out,
        failed=[f"{a}: {why}" for a, why in change.failed],
        kept=change.kept,
    )
    await session.flush()
    state.duty = duty
    state.holding = sorted(holding)
    state.audit_mark = int(await session.scalar(select(func.max(AuditEntry.id))) or 0)
    state.changed_at = now
    await session.flush()
    return change
