"""Voicemail retrieval by phone: an agent's hotlines' open messages newest first, who
listened, mark done, delete. Marking done and deleting reuse `services.voicemail` (the
CLI's), so a rule about voicemail rows lives in one place; this module adds the agent's
view (membership) and the audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline, Voicemail
from ari_app.services import audit, voicemail
from ari_app.services.audit import Path

if TYPE_CHECKING:
    from ari_app.ari.client import AriClient


@dataclass(frozen=True)
class Message:
    """One voicemail as the phone dialogue needs it."""

    id: int
    hotline_id: int
    hotline_number: str
    timezone: str
    caller_number: str | None
    recorded_at: datetime
    recording_name: str


async def open_messages(session: AsyncSession, hotline_ids: list[int]) -> list[Message]:
    """Messages not marked done, newest first."""
    rows = await session.execute(
        select(Voicemail, Hotline.number, Hotline.timezone)
        .join(Hotline, Hotline.id == Voicemail.hotline_id)
        .where(Voicemail.hotline_id.in_(hotline_ids), Voicemail.done_at.is_(None))
        .order_by(Voicemail.recorded_at.desc(), Voicemail.id.desc())
    )
    return [
        Message(
            id=vm.id,
            hotline_id=vm.hotline_id,
            hotline_number=number,
            timezone=timezone,
            caller_number=vm.caller_number,
            recorded_at=vm.recorded_at,
            recording_name=vm.recording_name,
        )
        for vm, number, timezone in rows
    ]


async def heard(
    session: AsyncSession,
    message: Message,
    *,
    agent_id: int,
    now: datetime,
    path: Path,
    actor: str,
) -> bool:
    """Record that the agent is listening; the first listener stays on the row, every
    listen is in the audit log. False when the message is gone (deleted meanwhile)."""
    vm = await session.get(Voicemail, message.id, with_for_update=True)
    if vm is None:
        return False
    if vm.heard_at is None:
        vm.heard_at, vm.heard_by_agent_id = now, agent_id
    await audit.record(
        session,
        actor=actor,
        action="voicemail_heard",
        path=path,
        agent_id=agent_id,
        hotline_id=message.hotline_id,
        voicemail_id=message.id,
    )
    await session.flush()
    return True


async def mark_done(
    session: AsyncSession,
    message: Message,
    *,
    agent_id: int,
    now: datetime,
    path: Path,
    actor: str,
) -> bool:
    """Mark the message done (NotFound when it is gone); False if it was done already."""
    changed = await voicemail.mark_done(session, message.id, now)
    await audit.record(
        session,
        actor=actor,
        action="voicemail_done",
        path=path,
        agent_id=agent_id,
        hotline_id=message.hotline_id,
        voicemail_id=message.id,
    )
    return changed


async def delete(
    session: AsyncSession,
    message: Message,
    ari: AriClient,
    *,
    agent_id: int,
    path: Path,
    actor: str,
) -> None:
    """Delete the row and its recording on Asterisk (NotFound when it is gone)."""
    await voicemail.delete_voicemail(session, message.id, ari)
    await audit.record(
        session,
        actor=actor,
        action="voicemail_deleted",
        path=path,
        agent_id=agent_id,
        hotline_id=message.hotline_id,
        voicemail_id=message.id,
        caller=message.caller_number,
        recorded_at=message.recorded_at.isoformat(),
    )
