"""Voicemail rows for ops: list, mark done, delete; recordings are fetched and deleted
through the ARI client passed in (Asterisk keeps the audio, Postgres the metadata)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriNotFound
from ari_app.db.models import Hotline, Voicemail
from ari_app.domain.errors import NotFound
from ari_app.services import admin, audit, notifications

FETCH_TIMEOUT_S = 60.0  # a few MB of WAV; the client's default is for small REST answers


@dataclass(frozen=True)
class VoicemailInfo:
    id: int
    hotline: str
    recorded_at: datetime
    caller_number: str | None
    duration_s: int
    recording_name: str
    heard_at: datetime | None
    done_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hotline": self.hotline,
            "recorded_at": self.recorded_at.isoformat(),
            "caller": self.caller_number,
            "duration_s": self.duration_s,
            "recording": self.recording_name,
            "heard_at": self.heard_at.isoformat() if self.heard_at else None,
            "done_at": self.done_at.isoformat() if self.done_at else None,
        }


async def mailbox_full(session: AsyncSession, hotline: Hotline) -> bool:
    """Whether the hotline keeps its quota of voicemails already (every stored message
    counts, heard or done ones too: they are on disk until deleted or purged)."""
    count = await session.scalar(
        select(func.count()).select_from(Voicemail).where(Voicemail.hotline_id == hotline.id)
    )
    return (count or 0) >= hotline.voicemail_quota


async def store_voicemail(
    session: AsyncSession,
    hotline: Hotline,
    *,
    call_id: uuid.UUID | None,
    caller_number: str | None,
    duration_s: int,
    recording_name: str,
    now: datetime,
    node: str,
    link_url: str = "",
) -> Voicemail:
    """Store a voicemail the caller left and, in the same transaction, queue its e-mail
    notice (when the hotline has recipients): nothing is lost, the call never waits."""
    vm = Voicemail(
        hotline_id=hotline.id,
        call_id=call_id,
        caller_number=caller_number,
        duration_s=duration_s,
        recording_name=recording_name,
        recorded_at=now,
    )
    session.add(vm)
    await session.flush()
    await notifications.queue_voicemail_notice(session, hotline, vm, node=node, link_url=link_url)
    return vm


def _info(vm: Voicemail, hotline_number: str) -> VoicemailInfo:
    return VoicemailInfo(
        id=vm.id,
        hotline=hotline_number,
        recorded_at=vm.recorded_at,
        caller_number=vm.caller_number,
        duration_s=vm.duration_s,
        recording_name=vm.recording_name,
        heard_at=vm.heard_at,
        done_at=vm.done_at,
    )


async def list_voicemails(
    session: AsyncSession, hotline_number: str | None = None, *, include_done: bool = False
) -> list[VoicemailInfo]:
    """Voicemails, oldest first; by default only those not marked done."""
    query = (
        select(Voicemail, Hotline.number)
        .join(Hotline, Hotline.id == Voicemail.hotline_id)
        .order_by(Voicemail.recorded_at, Voicemail.id)
    )
    if hotline_number is not None:
        await admin.get_hotline(session, hotline_number)  # NotFound
        query = query.where(Hotline.number == hotline_number)
    if not include_done:
        query = query.where(Voicemail.done_at.is_(None))
    return [_info(vm, number) for vm, number in (await session.execute(query))]


async def get_voicemail(session: AsyncSession, voicemail_id: int) -> VoicemailInfo:
    row = (
        await session.execute(
            select(Voicemail, Hotline.number)
            .join(Hotline, Hotline.id == Voicemail.hotline_id)
            .where(Voicemail.id == voicemail_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no voicemail with id {voicemail_id}")
    return _info(row[0], row[1])


async def _row(session: AsyncSession, voicemail_id: int) -> Voicemail:
    vm = await session.get(Voicemail, voicemail_id, with_for_update=True)
    if vm is None:
        raise NotFound(f"no voicemail with id {voicemail_id}")
    return vm


async def mark_done(
    session: AsyncSession, voicemail_id: int, now: datetime, *, actor: str | None = None
) -> bool:
    """Mark a voicemail done; False when it was done already (the first time is kept).
    Audited (`voicemail_done`) when `actor` is given and it was marked now."""
    vm = await _row(session, voicemail_id)
    if vm.done_at is not None:
        return False
    vm.done_at = now
    await session.flush()
    await audit.ops_change(
        session, actor, "voicemail_done", hotline_id=vm.hotline_id, voicemail_id=vm.id
    )
    return True


async def delete_voicemail(
    session: AsyncSession, voicemail_id: int, ari: AriClient, *, actor: str | None = None
) -> bool:
    """Delete the row and its recording on Asterisk. Returns whether Asterisk still had the
    recording. The row goes first (flushed, not committed): if Asterisk fails, the caller's
    transaction rolls back and the voicemail stays listed, so nothing is lost silently.
    Audited (`voicemail_delete`) when `actor` is given."""
    vm = await _row(session, voicemail_id)
    await audit.ops_change(
        session, actor, "voicemail_delete", hotline_id=vm.hotline_id, voicemail_id=vm.id
    )
    await session.delete(vm)
    await session.flush()
    return await ari.delete_stored_recording(vm.recording_name, missing_ok=True)


async def export_recording(
    session: AsyncSession, ari: AriClient, voicemail_id: int, *, actor: str
) -> tuple[VoicemailInfo, bytes]:
    """A voicemail and its audio for ops to keep (the caller writes the file), audited
    (`voicemail_export`) in the caller's transaction."""
    info = await get_voicemail(session, voicemail_id)
    data = await fetch_recording(ari, info)
    vm = await session.get(Voicemail, voicemail_id)  # loaded by get_voicemail: no query
    assert vm is not None
    await audit.ops_change(
        session, actor, "voicemail_export", hotline_id=vm.hotline_id, voicemail_id=vm.id
    )
    return info, data


async def fetch_recording(ari: AriClient, info: VoicemailInfo) -> bytes:
    """The recording's audio as Asterisk stored it (WAV)."""
    try:
        return await ari.get_stored_recording_file(info.recording_name, timeout=FETCH_TIMEOUT_S)
    except AriNotFound:
        raise NotFound(
            f"the recording of voicemail {info.id} ({info.recording_name}) is gone from Asterisk"
        ) from None
