"""The database side of reconnect-and-reconcile (reconcile.py, DESIGN.md convention 8):
which calls a process left open, which calls another process drives, closing the records
of calls whose channels are gone and releasing agents nobody will ring."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import AgentState, Call, Hotline
from ari_app.domain import agent_state
from ari_app.domain.agent_state import AgentEvent
from ari_app.domain.enums import AgentActivity, CallStatus, Outcome, TargetKind
from ari_app.services import calls, routing

OPEN = (CallStatus.NEW, CallStatus.WAITING, CallStatus.BRIDGED, CallStatus.ACTION)
# A released agent is free at once, whether rung or already on the call (agent_state).
_FREED = agent_state.after(AgentActivity.RINGING, AgentEvent.RELEASED)


async def open_calls(session: AsyncSession, node: str) -> list[Call]:
    """The node's calls not ended yet, in queue order."""
    return list(
        await session.scalars(
            select(Call).where(Call.node == node, Call.status.in_(OPEN)).order_by(Call.queue_seq)
        )
    )


async def calls_elsewhere(session: AsyncSession, node: str) -> dict[str, str]:
    """Open calls another process drives (a sibling adopted them while this one was down):
    call id (text) -> its channel."""
    rows = await session.execute(
        select(Call.id, Call.channel_id).where(Call.node != node, Call.status.in_(OPEN))
    )
    return {str(call_id): channel_id for call_id, channel_id in rows}


async def release_stuck(session: AsyncSession, node: str, keep: Collection[uuid.UUID]) -> None:
    """Agents this node reserved for calls it no longer drives (rung by a process that
    died) would stay "ringing" forever: free them, but for the calls in `keep`."""
    stuck = update(AgentState).where(
        AgentState.reserved_by_node == node, AgentState.reserved_call_id.is_not(None)
    )
    if keep:
        stuck = stuck.where(AgentState.reserved_call_id.not_in(keep))
    await session.execute(
        stuck.values(reserved_call_id=None, reserved_by_node=None, activity=_FREED)
    )


async def release_all(session: AsyncSession, call_id: uuid.UUID, *, but: int | None = None) -> None:
    """Agents still reserved for a call that is going back to the queue (or, `but` one,
    connected to it)."""
    reserved = update(AgentState).where(AgentState.reserved_call_id == call_id)
    if but is not None:
        reserved = reserved.where(AgentState.agent_id != but)
    await session.execute(
        reserved.values(reserved_call_id=None, reserved_by_node=None, activity=_FREED)
    )


async def connect_unwritten(
    session: AsyncSession, call: Call, bridge_id: str, leg: str, now: datetime
) -> None:
    """A call its process bridged with the channel `leg` (Asterisk has the call's bridge
    with both) but died before writing the connection (routing.PendingWrites): written
    now, with the agent that leg rang (none: a forward target), so the call is bridged here
    too; agents still reserved for it besides (ring_all) are freed. The answer's own time
    died with the process: `now` stands for it."""
    agent_id = routing.agent_of_leg(call.id, leg)
    kind = await session.scalar(
        select(AgentState.target_kind).where(
            AgentState.agent_id == agent_id, AgentState.reserved_call_id == call.id
        )
    )
    connected = routing.Connected(call.id, agent_id, bridge_id, kind or TargetKind.EXTERNAL, now)
    await routing.connect_calls(session, [connected])
    await release_all(session, call.id, but=agent_id)
    await session.refresh(call)


async def close_vanished(session: AsyncSession, call: Call, now: datetime) -> None:
    """The caller left while no process was watching: close the record as it stood."""
    if call.status is CallStatus.BRIDGED and call.agent_id is not None:
        wrapup = 0
        if call.hotline_id is not None:
            hotline = await session.get(Hotline, call.hotline_id)
            wrapup = hotline.wrapup_s if hotline else 0
        await routing.agent_finished(
            session, agent_id=call.agent_id, call_id=call.id, wrapup_s=wrapup, now=now
        )
        outcome = Outcome.ANSWERED
    else:
        await release_all(session, call.id)
        outcome = Outcome.ABANDONED
    await calls.close_call(session, call.id, outcome, now=now, agent_id=call.agent_id)
