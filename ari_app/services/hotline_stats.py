"""Per-hotline aggregates for the team panel, /api/hotlines and /metrics.

Definitions (the README's panel section should quote them):
- logged_in: agents logged in to the hotline whose *exposed* presence is available or on a
  call (`domain.presence.counts_as_staffed`). Derived from the three exposed values only:
  paused, in wrap-up, right after a private call and logged out are all "not available"
  and all left out alike, so the figure cannot tell them apart (issue 13, finding 8).
- available: of those, agents whose exposed presence is available.
- waiting: callers in the hotline's queue now (calls with status waiting).
- longest_wait_s: whole seconds the longest-waiting of them has been in the call, since it
  reached the app (greeting included), as a caller experiences it.
- callbacks_waiting (hotlines that offer callbacks, or have open ones; else None):
  callbacks still to be made (pending, or being dialled now), issue 15.
- on_duty (hotlines with a duty roster only, else None): logged_in > 0, yes or no; never
  who is on duty nor who is not.
- service level today: among the calls *offered* today (local day in the hotline's time
  zone) — calls that entered the queue and whose fate is known (answered, or ended without
  being answered: abandoned, timed out, sent to voicemail or forwarded) — the share answered
  within `hotline.service_level_s` seconds of arriving. Calls never queued (closed, no agent
  logged in, queue full) are not offered; callers still waiting are not counted yet. None
  when no call was offered today.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, and_, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import AgentLogin, Call, Callback, CallEvent, Hotline, RosterSlot
from ari_app.domain.callbacks import OPEN_STATES
from ari_app.domain.enums import CallStatus
from ari_app.domain.presence import Presence, counts_as_staffed
from ari_app.services.presence import AgentPresence, Snapshot, agent_presences

ENTER_QUEUE_EVENT = "ENTERQUEUE"  # logged by the inbound flow when a caller is queued


@dataclass(frozen=True)
class HotlineStats:
    number: str
    name: str
    logged_in: int
    available: int
    waiting: int
    longest_wait_s: int
    service_level_s: int
    offered_today: int
    answered_in_time_today: int
    on_duty: bool | None = None
    callbacks_waiting: int | None = None

    @property
    def service_level(self) -> float | None:
        """Share of today's offered calls answered in time (0..1), None with none offered."""
        if self.offered_today == 0:
            return None
        return self.answered_in_time_today / self.offered_today

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        sl = self.service_level
        data["service_level"] = None if sl is None else round(sl, 4)
        return data


def waiting_in(hotline_id: Any) -> ColumnElement[bool]:
    """Calls waiting in the hotline's queue now (the one definition of "waiting", also in
    the call path's statements of services/routing.py)."""
    return and_(Call.hotline_id == hotline_id, Call.status == CallStatus.WAITING)


async def queues(
    session: AsyncSession, now: datetime, hotline_ids: Collection[int] | None = None
) -> dict[int, tuple[int, int]]:
    """Per hotline with callers waiting: (waiting, longest_wait_s); all hotlines, or those
    of `hotline_ids`."""
    query = (
        select(Call.hotline_id, func.count(), func.min(Call.entered_at))
        .where(waiting_in(Call.hotline_id), Call.hotline_id.is_not(None))
        .group_by(Call.hotline_id)
    )
    if hotline_ids is not None:
        query = query.where(Call.hotline_id.in_(hotline_ids))
    return {
        hotline_id: (int(n), max(0, int((now - oldest).total_seconds())))
        for hotline_id, n, oldest in await session.execute(query)
        if hotline_id is not None
    }


async def staffed(
    session: AsyncSession,
    presence_of: Mapping[int, Presence],
    hotline_ids: Collection[int] | None = None,
) -> dict[int, list[int]]:
    """Per hotline: the agents that count as logged in to it (logged in and shown as
    available or on a call); all hotlines, or those of `hotline_ids`."""
    query = select(AgentLogin.hotline_id, AgentLogin.agent_id)
    if hotline_ids is not None:
        query = query.where(AgentLogin.hotline_id.in_(hotline_ids))
    result: dict[int, list[int]] = {}
    for hotline_id, agent_id in await session.execute(query):
        presence = presence_of.get(agent_id)
        if presence is not None and counts_as_staffed(presence):
            result.setdefault(hotline_id, []).append(agent_id)
    return result


def _local_midnight(now: datetime) -> Any:
    """Start of the hotline's local day, as timestamptz, computed by Postgres per row."""
    local_now = func.timezone(Hotline.timezone, literal(now, DateTime(timezone=True)))
    return func.timezone(Hotline.timezone, func.date_trunc("day", local_now))


async def hotline_stats(
    session: AsyncSession,
    now: datetime,
    presences: list[AgentPresence] | None = None,
) -> list[HotlineStats]:
    """Aggregates of every hotline, ordered by number."""
    if presences is None:
        presences = await agent_presences(session, now)
    presence_of = {p.agent_id: p.presence for p in presences}

    on_duty = await staffed(session, presence_of)
    waiting = await queues(session, now)

    queued = or_(
        Call.answered_at.is_not(None),
        exists().where(CallEvent.call_id == Call.id, CallEvent.event == ENTER_QUEUE_EVENT),
    )
    offered = and_(queued, or_(Call.answered_at.is_not(None), Call.status == CallStatus.ENDED))
    in_time = and_(
        Call.answered_at.is_not(None),
        func.extract("epoch", Call.answered_at - Call.entered_at) <= Hotline.service_level_s,
    )
    sl_rows = await session.execute(
        select(
            Hotline.id,
            func.count(case((offered, 1))),
            func.count(case((and_(offered, in_time), 1))),
        )
        .join(Call, Call.hotline_id == Hotline.id)
        .where(Call.entered_at >= _local_midnight(now))
        .group_by(Hotline.id)
    )
    service = {hid: (int(o), int(t)) for hid, o, t in sl_rows}

    open_callbacks: dict[int, int] = {
        hotline_id: count
        for hotline_id, count in await session.execute(
            select(Callback.hotline_id, func.count())
            .where(Callback.state.in_([s.value for s in OPEN_STATES]))
            .group_by(Callback.hotline_id)
        )
    }
    rostered = set(await session.scalars(select(RosterSlot.hotline_id).distinct()))
    result = []
    hotlines = await session.execute(
        select(
            Hotline.id,
            Hotline.number,
            Hotline.name,
            Hotline.service_level_s,
            Hotline.callback_after_s,
        ).order_by(Hotline.number)
    )
    for hid, number, name, service_level_s, callback_after_s in hotlines:
        agents = on_duty.get(hid, [])
        count, longest = waiting.get(hid, (0, 0))
        offered_n, in_time_n = service.get(hid, (0, 0))
        result.append(
            HotlineStats(
                number=number,
                name=name,
                logged_in=len(agents),
                available=sum(presence_of.get(a) is Presence.AVAILABLE for a in agents),
                waiting=count,
                longest_wait_s=longest,
                service_level_s=service_level_s,
                offered_today=offered_n,
                answered_in_time_today=in_time_n,
                on_duty=bool(agents) if hid in rostered else None,
                callbacks_waiting=(
                    open_callbacks.get(hid, 0)
                    if callback_after_s > 0 or hid in open_callbacks
                    else None
                ),
            )
        )
    return result


async def panel_snapshot(session: AsyncSession, now: datetime) -> Snapshot:
    """Both topics of the team panel from one read of the agents (a `PresenceHub` source)."""
    presences = await agent_presences(session, now)
    stats = await hotline_stats(session, now, presences)
    return {
        "presence": {"agents": [p.record() for p in presences]},
        "hotlines": {"hotlines": [s.as_dict() for s in stats]},
    }
