"""Queue and agent reservation, shared by every node through Postgres.

Reservation is atomic: a conditional UPDATE marks an agent reserved for one call only while
the row still says the agent is free (Postgres re-checks the condition on the row it
locks), so no agent is ever rung for two calls, whichever process asks. Queue order is
kept by serialising the decision per hotline (a row lock on the hotline) and letting a
call reserve only while fewer unserved callers wait ahead of it than there are free agents.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import cast

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import (
    AgentActivity,
    AgentLogin,
    AgentState,
    Call,
    CallStatus,
    Holiday,
    Hotline,
    Membership,
    TargetKind,
)
from ari_app.domain.strategies import Candidate, Strategy, order_candidates
from ari_app.services import audit

_rng = random.Random()


@dataclass(frozen=True)
class Offer:
    """An agent reserved for a call: ring `target` now."""

    agent_id: int
    target: str
    target_kind: TargetKind


def _free_agent_clause(now: datetime) -> ColumnElement[bool]:
    return and_(
        AgentState.paused.is_(False),
        AgentState.reserved_call_id.is_(None),
        AgentState.device_busy.is_(False),
        AgentState.target.is_not(None),
        or_(
            AgentState.activity == AgentActivity.IDLE,
            and_(AgentState.activity == AgentActivity.WRAPUP, AgentState.wrapup_until <= now),
        ),
    )


@dataclass(frozen=True)
class QueueFacts:
    """What the decision at a call's start needs about its hotline."""

    holidays: frozenset[date]
    logged_in: int  # agents logged in to the hotline
    waiting: int  # callers waiting in its queue


async def queue_facts(session: AsyncSession, hotline_id: int) -> QueueFacts:
    """The hotline's holidays, logged-in agents and waiting callers in one round trip."""
    row = (
        await session.execute(
            select(
                select(func.array_agg(Holiday.day))
                .where(Holiday.hotline_id == hotline_id)
                .scalar_subquery(),
                select(func.count())
                .select_from(AgentLogin)
                .where(AgentLogin.hotline_id == hotline_id)
                .scalar_subquery(),
                select(func.count())
                .select_from(Call)
                .where(Call.hotline_id == hotline_id, Call.status == CallStatus.WAITING)
                .scalar_subquery(),
            )
        )
    ).one()
    holidays, logged_in, waiting = cast(tuple[list[date] | None, int, int], tuple(row))
    return QueueFacts(frozenset(holidays or ()), logged_in, waiting)


async def position_in_queue(session: AsyncSession, call: Call) -> int:
    """1-based position among the hotline's waiting callers."""
    ahead = await session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.hotline_id == call.hotline_id,
            Call.status == CallStatus.WAITING,
            Call.queue_seq < call.queue_seq,
        )
    )
    return int(ahead or 0) + 1


async def reserve_agents(
    session: AsyncSession,
    *,
    call_id: uuid.UUID,
    hotline: Hotline,
    queue_seq: int,
    tried: Collection[int],
    node: str,
    now: datetime,
) -> list[Offer]:
    """Reserve the next agent(s) the hotline's strategy picks for this call, or none.

    The hotline's row lock orders its callers, so the free agents are read without locking
    them; the chosen ones are then taken with one conditional UPDATE, which re-checks that
    each is still free (another hotline's caller may have taken an agent both share).
    """
    await session.execute(select(Hotline.id).where(Hotline.id == hotline.id).with_for_update())
    reserved_elsewhere = exists().where(AgentState.reserved_call_id == Call.id)
    ahead = int(
        await session.scalar(
            select(func.count())
            .select_from(Call)
            .where(
                Call.hotline_id == hotline.id,
                Call.status == CallStatus.WAITING,
                Call.queue_seq < queue_seq,
                ~reserved_elsewhere,
            )
        )
        or 0
    )
    rows = (
        await session.execute(
            select(
                AgentState.agent_id,
                Membership.position,
                AgentState.last_call_end,
                AgentState.calls_taken,
            )
            .join(
                AgentLogin,
                and_(
                    AgentLogin.agent_id == AgentState.agent_id, AgentLogin.hotline_id == hotline.id
                ),
            )
            .join(
                Membership,
                and_(
                    Membership.agent_id == AgentState.agent_id, Membership.hotline_id == hotline.id
                ),
            )
            .where(_free_agent_clause(now))
        )
    ).all()
    if len(rows) <= ahead:
        return []  # callers ahead of this one get the free agents first
    candidates = [
        Candidate(agent_id=agent_id, position=position, last_call_end=last_end, calls_taken=taken)
        for agent_id, position, last_end, taken in rows
    ]
    round_robin = Strategy(hotline.strategy) is Strategy.ROUND_ROBIN
    last_agent_id, last_position = (
        await _last_offered(session, hotline.id) if round_robin else (None, None)
    )
    lost: set[int] = set()
    while True:
        rounds = order_candidates(
            hotline.strategy,
            [c for c in candidates if c.agent_id not in lost],
            last_agent_id=last_agent_id,
            last_position=last_position,
            tried=frozenset(tried),
            rng=_rng,
        )
        if not rounds or not rounds[0]:
            return []
        taken = (
            await session.execute(
                update(AgentState)
                .where(AgentState.agent_id.in_(rounds[0]), _free_agent_clause(now))
                .values(
                    reserved_call_id=call_id,
                    reserved_by_node=node,
                    activity=AgentActivity.RINGING,
                )
                .returning(AgentState.agent_id, AgentState.target, AgentState.target_kind)
                .execution_options(synchronize_session=False)
            )
        ).all()
        if taken:
            break
        lost.update(rounds[0])  # taken by another hotline's caller meanwhile: next choice
    by_id = {agent_id: (target, kind) for agent_id, target, kind in taken}
    offers = []
    for agent_id in rounds[0]:
        if agent_id in by_id:
            target, kind = by_id[agent_id]
            assert target is not None and kind is not None  # a free agent has a target
            offers.append(Offer(agent_id, target, kind))
    if round_robin:  # only its rotation needs to know who was offered last
        await session.execute(
            update(Membership)
            .where(Membership.hotline_id == hotline.id, Membership.agent_id.in_(list(by_id)))
            .values(last_offered_at=now)
            .execution_options(synchronize_session=False)
        )
    return offers


async def _last_offered(session: AsyncSession, hotline_id: int) -> tuple[int | None, int | None]:
    """Round robin continues after the member offered most recently (any call): its agent
    id and position, so the rotation goes on even when that agent is busy now."""
    row = (
        await session.execute(
            select(Membership.agent_id, Membership.position)
            .where(Membership.hotline_id == hotline_id, Membership.last_offered_at.is_not(None))
            .order_by(Membership.last_offered_at.desc(), Membership.position.desc())
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


async def release_agent(
    session: AsyncSession, *, agent_id: int, call_id: uuid.UUID, unanswered: bool, limit: int
) -> bool:
    """Free an agent the call reserved but did not get. Returns True when the agent was
    auto-paused for not answering `limit` calls in a row."""
    state = await session.get(AgentState, agent_id, with_for_update=True)
    if state is None or state.reserved_call_id != call_id:
        return False
    state.reserved_call_id = None
    state.reserved_by_node = None
    state.activity = AgentActivity.IDLE
    if not unanswered:
        return False
    state.unanswered_streak += 1
    if limit > 0 and state.unanswered_streak >= limit and not state.paused:
        state.paused = True
        state.unanswered_streak = 0
        await audit.record(
            session,
            actor="system",
            action="auto_pause",
            path="system",
            agent_id=agent_id,
            unanswered_calls=limit,
        )
        return True
    return False


async def agent_connected(session: AsyncSession, *, agent_id: int, call_id: uuid.UUID) -> None:
    await session.execute(
        update(AgentState)
        .where(AgentState.agent_id == agent_id, AgentState.reserved_call_id == call_id)
        .values(activity=AgentActivity.ON_CALL, unanswered_streak=0)
    )


async def agent_finished(
    session: AsyncSession, *, agent_id: int, call_id: uuid.UUID, wrapup_s: int, now: datetime
) -> None:
    await session.execute(
        update(AgentState)
        .where(AgentState.agent_id == agent_id, AgentState.reserved_call_id == call_id)
        .values(
            activity=AgentActivity.WRAPUP if wrapup_s > 0 else AgentActivity.IDLE,
            wrapup_until=now + timedelta(seconds=wrapup_s),
            last_call_end=now,
            calls_taken=AgentState.calls_taken + 1,
            reserved_call_id=None,
            reserved_by_node=None,
        )
    )


async def end_expired_wrapups(session: AsyncSession, now: datetime) -> list[int]:
    """Wrap-up over: back to idle. Returns the agents that became free."""
    result = await session.execute(
        update(AgentState)
        .where(AgentState.activity == AgentActivity.WRAPUP, AgentState.wrapup_until <= now)
        .values(activity=AgentActivity.IDLE)
        .returning(AgentState.agent_id)
    )
    return list(result.scalars())
