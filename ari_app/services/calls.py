"""Call records and their event log (in the spirit of Asterisk's queue_log)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, Call, CallEvent
from ari_app.domain.enums import CallStatus, Outcome


async def agent_language(session: AsyncSession, agent_id: int) -> str | None:
    """The language an agent hears (None: the server's default)."""
    result: str | None = await session.scalar(select(Agent.language).where(Agent.id == agent_id))
    return result


async def open_call(
    session: AsyncSession,
    *,
    channel_id: str,
    dialled: str,
    caller_number: str | None,
    hotline_id: int | None,
    node: str,
    status: CallStatus = CallStatus.NEW,
) -> Call:
    # Every column is given (None where unknown) so that the object is fully loaded after
    # the flush: queue_seq and entered_at come back from the INSERT's RETURNING, and no
    # attribute is left to a lazy load (impossible in async code) or a second SELECT.
    call = Call(
        channel_id=channel_id,
        dialled_number=dialled,
        caller_number=caller_number or None,
        hotline_id=hotline_id,
        node=node,
        status=status,
        bridge_id=None,
        first_ring_at=None,
        answered_at=None,
        ended_at=None,
        agent_id=None,
        outcome=None,
    )
    session.add(call)
    await session.flush()
    return call


async def log_event(
    session: AsyncSession,
    call_id: uuid.UUID,
    event: str,
    *,
    agent_id: int | None = None,
    **data: Any,
) -> None:
    session.add(CallEvent(call_id=call_id, event=event, agent_id=agent_id, data=data))


async def set_status(session: AsyncSession, call_id: uuid.UUID, status: CallStatus) -> None:
    await session.execute(update(Call).where(Call.id == call_id).values(status=status))


async def mark(session: AsyncSession, call_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(Call).where(Call.id == call_id).values(**values))


async def mark_first_ring(session: AsyncSession, call_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(Call)
        .where(Call.id == call_id, Call.first_ring_at.is_(None))
        .values(first_ring_at=now)
    )


async def close_call(
    session: AsyncSession,
    call_id: uuid.UUID,
    outcome: Outcome,
    *,
    now: datetime,
    agent_id: int | None = None,
) -> None:
    """Set the one outcome of a call; a call that already has one keeps it."""
    values: dict[str, Any] = {"status": CallStatus.ENDED, "ended_at": now, "outcome": outcome}
    if agent_id is not None:
        values["agent_id"] = agent_id
    closed = await session.execute(
        update(Call)
        .where(Call.id == call_id, Call.outcome.is_(None))
        .values(**values)
        .returning(Call.id)
    )
    if closed.first() is not None:  # the first outcome only: one per call, in the log too
        await log_event(session, call_id, outcome.value.upper(), agent_id=agent_id)
