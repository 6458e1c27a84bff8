"""Callbacks keeping the caller's place (issue 15): request, the queue head across live
and virtual entries, attempts, ops' list and cancel. The rules are domain/callbacks.py;
this module is their SQL, and tests/db/test_callbacks.py checks the two agree."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Call, Hotline
from ari_app.db.models import Callback as CallbackRow
from ari_app.domain.callbacks import (
    OPEN_STATES,
    CallbackState,
    Kind,
    after_attempt,
    callback_number,
)
from ari_app.domain.enums import CallStatus
from ari_app.domain.errors import Conflict, NotFound, Refused
from ari_app.services import calls

CALLBACK_EVENT = "CALLBACK"  # call event: the caller asked to be called back


@dataclass(frozen=True)
class CallbackInfo:
    id: int
    hotline: str
    number: str
    state: str
    entered_at: datetime
    requested_at: datetime
    attempts: int
    next_attempt_at: datetime
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hotline": self.hotline,
            "number": self.number,
            "state": self.state,
            "entered_at": self.entered_at.isoformat(),
            "requested_at": self.requested_at.isoformat(),
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


async def request(session: AsyncSession, call_id: uuid.UUID, now: datetime) -> CallbackRow:
    """The caller of `call_id` asked to be called back: a virtual entry with the call's
    place and entry time, to the number the call came from (never one typed)."""
    call = await session.get(Call, call_id, with_for_update=True)
    if call is None or call.hotline_id is None:
        raise NotFound(f"no hotline call {call_id}")
    hotline = await session.get(Hotline, call.hotline_id)
    assert hotline is not None
    if hotline.callback_after_s <= 0:
        raise Refused(f"hotline {hotline.number} offers no callback")
    number = callback_number(call.caller_number)
    if await session.scalar(select(CallbackRow.id).where(CallbackRow.call_id == call_id)):
        raise Conflict("this call has asked for a callback already")
    row = CallbackRow(
        hotline_id=hotline.id,
        call_id=call.id,
        number=number,
        queue_seq=call.queue_seq,
        entered_at=call.entered_at,
        requested_at=now,
        state=CallbackState.PENDING.value,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(row)
    await calls.log_event(session, call.id, CALLBACK_EVENT)
    await session.flush()
    return row


async def next_in_line(
    session: AsyncSession, hotline_id: int, now: datetime
) -> tuple[Kind, str] | None:
    """The head of the hotline's queue, live callers and callbacks together: the entry
    with the lowest queue_seq that can be served now (domain QueueModel.next_entry).
    Returns (kind, call id or callback id as text)."""
    live = select(
        literal(Kind.LIVE.value).label("kind"),
        Call.id.cast(CallbackRow.number.type).label("ref"),
        Call.queue_seq.label("seq"),
    ).where(Call.hotline_id == hotline_id, Call.status == CallStatus.WAITING)
    virtual = select(
        literal(Kind.CALLBACK.value),
        CallbackRow.id.cast(CallbackRow.number.type),
        CallbackRow.queue_seq,
    ).where(
        CallbackRow.hotline_id == hotline_id,
        CallbackRow.state == CallbackState.PENDING.value,
        CallbackRow.next_attempt_at <= now,
    )
    both = union_all(live, virtual).subquery()
    row = (await session.execute(select(both).order_by(both.c.seq).limit(1))).first()
    return None if row is None else (Kind(row[0]), str(row[1]))


async def start_attempt(
    session: AsyncSession, callback_id: int, *, node: str, agent_id: int | None, now: datetime
) -> bool:
    """Claim one attempt: only a pending, due callback becomes dialling, atomically, so
    two processes never dial the same callback at once (False: someone else has it)."""
    claimed = await session.scalar(
        update(CallbackRow)
        .where(
            CallbackRow.id == callback_id,
            CallbackRow.state == CallbackState.PENDING.value,
            CallbackRow.next_attempt_at <= now,
        )
        .values(
            state=CallbackState.DIALLING.value,
            attempts=CallbackRow.attempts + 1,
            attempt_node=node,
            agent_id=agent_id,
        )
        .returning(CallbackRow.id)
    )
    return claimed is not None


async def finish_attempt(
    session: AsyncSession, callback_id: int, *, connected: bool, now: datetime
) -> CallbackState:
    """An attempt ended: completed, pending again after the hotline's interval, or failed
    for good once its attempts are used up."""
    row = await session.get(CallbackRow, callback_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    if row.state != CallbackState.DIALLING.value:
        raise Conflict(f"callback {callback_id} has no attempt in flight")
    hotline = await session.get(Hotline, row.hotline_id)
    assert hotline is not None
    result = after_attempt(
        row.attempts, hotline.callback_attempts, hotline.callback_interval_s, connected=connected
    )
    row.state = result.state.value
    row.attempt_node = None
    if result.retry_in_s is not None:
        row.next_attempt_at = now + timedelta(seconds=result.retry_in_s)
    else:
        row.finished_at = now
    return result.state


async def list_callbacks(
    session: AsyncSession, *, hotline_number: str | None = None, open_only: bool = True
) -> list[CallbackInfo]:
    """Callbacks in queue order; by default only the open ones (pending, dialling)."""
    query = select(CallbackRow, Hotline.number).join(Hotline, Hotline.id == CallbackRow.hotline_id)
    if hotline_number is not None:
        if await session.scalar(select(Hotline.id).where(Hotline.number == hotline_number)) is None:
            raise NotFound(f"no hotline with number {hotline_number}")
        query = query.where(Hotline.number == hotline_number)
    if open_only:
        query = query.where(CallbackRow.state.in_([s.value for s in OPEN_STATES]))
    rows = (await session.execute(query.order_by(Hotline.number, CallbackRow.queue_seq))).all()
    return [
        CallbackInfo(
            id=cb.id,
            hotline=number,
            number=cb.number,
            state=cb.state,
            entered_at=cb.entered_at,
            requested_at=cb.requested_at,
            attempts=cb.attempts,
            next_attempt_at=cb.next_attempt_at,
            finished_at=cb.finished_at,
        )
        for cb, number in rows
    ]


async def cancel(session: AsyncSession, callback_id: int, now: datetime) -> None:
    """Ops cancel a pending callback; one being dialled is left to finish (Conflict)."""
    row = await session.get(CallbackRow, callback_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    if row.state == CallbackState.DIALLING.value:
        raise Conflict(f"callback {callback_id} is being dialled now")
    if row.state != CallbackState.PENDING.value:
        raise Conflict(f"callback {callback_id} is {row.state} already")
    row.state = CallbackState.CANCELLED.value
    row.finished_at = now
