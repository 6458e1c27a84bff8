"""Callbacks keeping the caller's place (issue 15): request, the queue head across live
and virtual entries, attempts, ops' list and cancel. The rules are domain/callbacks.py;
this module is their SQL, and tests/db/test_callbacks.py checks the two agree.

The original call carries the callback through: status `callback` while it waits
(its queue_seq is the callback's place), bridged with the agent once the citizen answers a
callback (then ended as answered, like any call: the report's wait is the time to the
callback), ended as abandoned when the callback fails for good or ops cancel it. An
attempt reserves the agent with the call's id, through the same SQL function as live
callers (routing.reserve_agents), which counts due callbacks among the entries ahead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, literal, select, union_all, update
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
from ari_app.domain.enums import CallStatus, Outcome, TargetKind
from ari_app.domain.errors import Conflict, NotFound, Refused
from ari_app.services import admin, audit, calls, routing
from ari_app.services.routing import Offer

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
    if call.status is not CallStatus.WAITING:
        raise Conflict("only a caller waiting in the queue can ask for a callback")
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
    # Out of the live queue; the callback holds the place (and any agent ringing for the
    # caller is released by the flow).
    call.status = CallStatus.CALLBACK
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
    if result.state is CallbackState.FAILED and row.call_id is not None:
        await calls.close_call(session, row.call_id, Outcome.ABANDONED, now=now)
    return result.state


async def list_callbacks(
    session: AsyncSession, *, hotline_number: str | None = None, open_only: bool = True
) -> list[CallbackInfo]:
    """Callbacks in queue order; by default only the open ones (pending, dialling)."""
    query = select(CallbackRow, Hotline.number).join(Hotline, Hotline.id == CallbackRow.hotline_id)
    if hotline_number is not None:
        await admin.get_hotline(session, hotline_number)  # NotFound
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


async def cancel(
    session: AsyncSession, callback_id: int, now: datetime, *, actor: str | None = None
) -> None:
    """Ops cancel a pending callback; one being dialled is left to finish (Conflict).
    Audited (`callback_cancel`) when `actor` is given."""
    row = await session.get(CallbackRow, callback_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    if row.state == CallbackState.DIALLING.value:
        raise Conflict(f"callback {callback_id} is being dialled now")
    if row.state != CallbackState.PENDING.value:
        raise Conflict(f"callback {callback_id} is {row.state} already")
    row.state = CallbackState.CANCELLED.value
    row.finished_at = now
    if row.call_id is not None:
        await calls.close_call(session, row.call_id, Outcome.ABANDONED, now=now)
    await audit.ops_change(session, actor, "callback_cancel", callback=callback_id)


# --- attempts: the dialler (flows/callback.py) ------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt in flight: `offer` is the agent reserved for it, rung first."""

    callback_id: int
    call_id: uuid.UUID
    number: str
    attempt: int  # 1 for the first attempt
    hotline: Hotline
    offer: Offer


_PENDING = select(
    func.count(),
    func.count().filter(CallbackRow.next_attempt_at <= bindparam("now")),
).where(CallbackRow.state == CallbackState.PENDING.value, CallbackRow.call_id.is_not(None))


async def pending(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """Callbacks pending, and of them due now (one cheap statement: the dialler asks on
    agent changes, and most of the time none is pending)."""
    row = (await session.execute(_PENDING, {"now": now})).one()
    return int(row[0]), int(row[1])


async def take_due(session: AsyncSession, *, node: str, now: datetime) -> list[Attempt]:
    """Start the attempts whose turn it is: per hotline that is open now, its first due
    pending callback is claimed (one attempt in flight, start_attempt) together with an
    agent, reserved by the routing function that orders live callers and callbacks by
    entry, so a callback is served only when no entry ahead of it waits for a free agent.
    A claim that gets no agent is undone (savepoint)."""
    heads = (
        await session.execute(
            select(CallbackRow, Hotline)
            .join(Hotline, Hotline.id == CallbackRow.hotline_id)
            .where(
                CallbackRow.state == CallbackState.PENDING.value,
                CallbackRow.next_attempt_at <= now,
                CallbackRow.call_id.is_not(None),
            )
            .order_by(CallbackRow.hotline_id, CallbackRow.queue_seq)
        )
    ).all()
    started, seen = [], set()
    for row, hotline in heads:
        if hotline.id in seen:
            continue  # the first due callback of each hotline only
        seen.add(hotline.id)
        facts = await routing.queue_facts(session, hotline.id, now)
        if not routing.is_open(hotline, facts.holidays, now) or not facts.free:
            continue  # a callback never starts after closing; pending ones stay listed
        assert row.call_id is not None
        attempt = row.attempts + 1  # read before the claim updates the row
        async with session.begin_nested() as claim:
            if not await start_attempt(session, row.id, node=node, agent_id=None, now=now):
                await claim.rollback()
                continue
            offers = await routing.reserve_agents(
                session,
                call_id=row.call_id,
                hotline=hotline,
                queue_seq=row.queue_seq,
                tried=(),
                node=node,
                now=now,
                most=1,
            )
            if not offers:  # an entry ahead gets the free agent first
                await claim.rollback()
                continue
            await session.execute(
                update(CallbackRow)
                .where(CallbackRow.id == row.id)
                .values(agent_id=offers[0].agent_id)
            )
        started.append(Attempt(row.id, row.call_id, row.number, attempt, hotline, offers[0]))
    return started


async def give_back(
    session: AsyncSession, callback_id: int, *, now: datetime, delay_s: float = 0
) -> bool:
    """An attempt that never reached the citizen (the agent did not answer or confirm, the
    process running it died): pending again after `delay_s`, the attempt not counted."""
    done = await session.scalar(
        update(CallbackRow)
        .where(CallbackRow.id == callback_id, CallbackRow.state == CallbackState.DIALLING.value)
        .values(
            state=CallbackState.PENDING.value,
            attempts=CallbackRow.attempts - 1,
            attempt_node=None,
            next_attempt_at=now + timedelta(seconds=delay_s),
        )
        .returning(CallbackRow.id)
    )
    return done is not None


async def connected(
    session: AsyncSession,
    attempt: Attempt,
    *,
    channel_id: str,
    bridge_id: str,
    node: str,
    target_kind: TargetKind,
    now: datetime,
) -> None:
    """The citizen answered and is bridged with the agent: the callback is completed and
    the original call is bridged on the citizen's new channel, so it ends (and is adopted
    after a restart) like any bridged call."""
    await finish_attempt(session, attempt.callback_id, connected=True, now=now)
    await calls.mark(session, attempt.call_id, channel_id=channel_id, node=node)
    connected = routing.Connected(
        attempt.call_id, attempt.offer.agent_id, bridge_id, target_kind, now
    )
    await routing.connect_calls(session, [connected])


async def recover(
    session: AsyncSession, *, node: str, running: frozenset[int], now: datetime
) -> list[uuid.UUID]:
    """After a restart (or a sibling's death, services/nodes.py): attempts this node had in
    flight that no flow of this process runs go back to pending, uncounted and due at
    once, so they are served in their place again. Returns their calls (the legs of a
    leftover attempt are named after the call, for reconciliation to hang them up)."""
    query = (
        update(CallbackRow)
        .where(
            CallbackRow.state == CallbackState.DIALLING.value,
            CallbackRow.attempt_node == node,
        )
        .values(
            state=CallbackState.PENDING.value,
            attempts=CallbackRow.attempts - 1,
            attempt_node=None,
            next_attempt_at=now,
        )
        .returning(CallbackRow.call_id)
    )
    if running:
        query = query.where(CallbackRow.id.not_in(running))
    return [call_id for call_id in await session.scalars(query) if call_id is not None]
