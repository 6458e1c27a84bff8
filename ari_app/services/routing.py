"""Queue and agent reservation, shared by every node through Postgres.

Reservation is atomic: candidate agent rows are locked with FOR UPDATE SKIP LOCKED and
marked reserved for one call in the same transaction, so no agent is ever rung for two
calls, whichever process asks. Queue order is kept by serialising the decision per
hotline (a row lock on the hotline) and letting a call reserve only while fewer unserved
callers wait ahead of it than there are free agents.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import (
    AgentActivity,
    AgentLogin,
    AgentState,
    Call,
    CallStatus,
    Hotline,
    Membership,
    TargetKind,
)
from ari_app.domain.strategies import Candidate, order_candidates
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


async def logged_in_count(session: AsyncSession, hotline_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(AgentLogin).where(AgentLogin.hotline_id == hotline_id)
        )
        or 0
    )


async def waiting_count(session: AsyncSession, hotline_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Call)
            .where(Call.hotline_id == hotline_id, Call.status == CallStatus.WAITING)
        )
        or 0
    )


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
    """Reserve the next agent(s) the hotline's strategy picks for this call, or none."""
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
            select(AgentState, Membership.position)
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
            .with_for_update(of=AgentState, skip_locked=True)
        )
    ).all()
    if len(rows) <= ahead:
        return []  # callers ahead of this one get the free agents first
    states = {state.agent_id: state for state, _ in rows}
    candidates = [
        Candidate(
            agent_id=state.agent_id,
            position=position,
            last_call_end=state.last_call_end,
            calls_taken=state.calls_taken,
        )
        for state, position in rows
    ]
    last_agent_id, last_position = await _last_offered(session, hotline.id)
    rounds = order_candidates(
        hotline.strategy,
        candidates,
        last_agent_id=last_agent_id,
        last_position=last_position,
        tried=frozenset(tried),
        rng=_rng,
    )
    if not rounds or not rounds[0]:
        return []
    offers: list[Offer] = []
    for agent_id in rounds[0]:
        state = states[agent_id]
        assert state.target is not None and state.target_kind is not None
        state.reserved_call_id = call_id
        state.reserved_by_node = node
        state.activity = AgentActivity.RINGING
        offers.append(Offer(agent_id, state.target, state.target_kind))
    await session.execute(
        update(Membership)
        .where(Membership.hotline_id == hotline.id, Membership.agent_id.in_(rounds[0]))
        .values(last_offered_at=now)
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
