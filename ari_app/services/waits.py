"""Estimated wait of a queued caller (issue 15): the measured handling times of this
hotline and its logged-in agents, read in one statement, fed to domain/waits.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Float, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import AgentLogin, AgentState, Call, Hotline
from ari_app.domain import waits
from ari_app.domain.enums import Outcome

# Handling times older than this say little about today's calls.
HISTORY = timedelta(days=30)


async def recent_handling(
    session: AsyncSession, hotline: Hotline, now: datetime
) -> tuple[list[float], int]:
    """(handling times in seconds of the hotline's last answered calls, oldest first;
    agents logged in and not paused). Handling = talk time + the hotline's wrap-up: the
    time an agent is taken from the queue by one call."""
    agents = (
        select(func.count())
        .select_from(AgentLogin)
        .join(AgentState, AgentState.agent_id == AgentLogin.agent_id)
        .where(AgentLogin.hotline_id == hotline.id, AgentState.paused.is_(False))
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(
                func.extract("epoch", Call.ended_at - Call.answered_at).cast(Float),
                agents,
            )
            .where(
                Call.hotline_id == hotline.id,
                Call.outcome == Outcome.ANSWERED,
                Call.answered_at.is_not(None),
                Call.ended_at.is_not(None),
                Call.ended_at > now - HISTORY,
            )
            .order_by(Call.ended_at.desc())
            .limit(waits.WINDOW)
        )
    ).all()
    if not rows:
        return [], 0
    samples = [cast(float, talk) + hotline.wrapup_s for talk, _ in reversed(rows)]
    return samples, cast(int, rows[0][1])


async def estimate(
    session: AsyncSession, hotline: Hotline, position: int, now: datetime
) -> waits.SpokenWait | None:
    """What to announce to the caller at `position`, or None with too little data."""
    samples, agents = await recent_handling(session, hotline, now)
    seconds = waits.estimate_wait_s(position, agents, samples)
    return None if seconds is None else waits.spoken(seconds)
