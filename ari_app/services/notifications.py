"""Voicemail notification by e-mail (issue 16): the outbox in Postgres.

A notice is written in the transaction that stores the voicemail (`voicemail.store_voicemail`),
so a voicemail never exists without its notice and the call never waits for a mail server.
`ari_app.mailer` (in `hotline serve`) claims due notices, sends them and records the
outcome here; a claim is a lease (`next_attempt_at` pushed ahead), so a process that dies
mid-send leaves the notice to be retried, and two processes never send the same one at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline, MailOutbox, Voicemail

LEASE = timedelta(minutes=2)  # longer than one SMTP delivery with its attachment
BACKOFF_FIRST_S = 5
BACKOFF_MAX_S = 300
ERROR_MAX = 500  # characters of the last error kept


@dataclass(frozen=True)
class Notice:
    """A notice to deliver: what the mailer needs, nothing it must look up."""

    id: int
    voicemail_id: int
    recipients: list[str]
    subject: str
    body: str
    attach: bool
    recording_name: str
    hotline_number: str
    attempts: int


def backoff_s(attempts: int) -> int:
    """Seconds before the next try after `attempts` failed ones: 5, 10, 20 ... 300."""
    return int(min(BACKOFF_FIRST_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


def compose(hotline: Hotline, vm: Voicemail, *, link_url: str) -> tuple[str, str]:
    """Subject and body of the notice. The caller's number only when the hotline allows it."""
    local = vm.recorded_at.astimezone(ZoneInfo(hotline.timezone))
    minutes, seconds = divmod(vm.duration_s, 60)
    subject = f"Voicemail on hotline {hotline.number} ({hotline.name}), {minutes}:{seconds:02d}"
    if hotline.vm_notify_caller:
        caller = vm.caller_number or "unknown (withheld)"
    else:
        caller = "not shown (this hotline does not pass on callers' numbers)"
    lines = [
        f"A new voicemail was left on hotline {hotline.number} ({hotline.name}).",
        "",
        f"Received: {local:%Y-%m-%d %H:%M:%S} ({hotline.timezone})",
        f"Duration: {vm.duration_s} s",
        f"Caller:   {caller}",
        f"Message:  voicemail {vm.id}",
        "",
    ]
    if hotline.vm_notify_attach:
        lines.append("The recording is attached.")
    elif link_url:
        lines.append(f"Listen: {link_url.format(id=vm.id)}")
    lines += [
        f"By phone: *98{hotline.number} (agents of this hotline, with their PIN).",
        f"Ops: hotline voicemail export {vm.id} -o message.wav",
    ]
    return subject, "\n".join(lines) + "\n"


async def queue_voicemail_notice(
    session: AsyncSession, hotline: Hotline, vm: Voicemail, *, node: str, link_url: str
) -> MailOutbox | None:
    """Queue the notice for a voicemail just stored (flushed), if the hotline wants one.
    `node` is the process's node: its Asterisk holds the recording to attach."""
    if not hotline.vm_notify:
        return None
    subject, body = compose(hotline, vm, link_url=link_url)
    row = MailOutbox(
        voicemail_id=vm.id,
        node=node,
        recipients=list(hotline.vm_notify),
        subject=subject,
        body=body,
        attach=hotline.vm_notify_attach,
        attempts=0,
        next_attempt_at=vm.recorded_at,
    )
    session.add(row)
    await session.flush()
    return row


async def claim_due(
    session: AsyncSession, node: str, now: datetime, limit: int = 10
) -> list[Notice]:
    """Lease up to `limit` due notices of this node (oldest first), counting the attempt."""
    due = (
        select(MailOutbox.id)
        .where(
            MailOutbox.node == node,
            MailOutbox.sent_at.is_(None),
            MailOutbox.next_attempt_at <= now,
        )
        .order_by(MailOutbox.next_attempt_at, MailOutbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(await session.scalars(due))
    if not ids:
        return []
    await session.execute(
        update(MailOutbox)
        .where(MailOutbox.id.in_(ids))
        .values(next_attempt_at=now + LEASE, attempts=MailOutbox.attempts + 1)
    )
    rows = await session.execute(
        select(MailOutbox, Voicemail.recording_name, Hotline.number)
        .join(Voicemail, Voicemail.id == MailOutbox.voicemail_id)
        .join(Hotline, Hotline.id == Voicemail.hotline_id)
        .where(MailOutbox.id.in_(ids))
        .order_by(MailOutbox.id)
        .execution_options(populate_existing=True)
    )
    return [
        Notice(
            id=m.id,
            voicemail_id=m.voicemail_id,
            recipients=list(m.recipients),
            subject=m.subject,
            body=m.body,
            attach=m.attach,
            recording_name=recording,
            hotline_number=number,
            attempts=m.attempts,
        )
        for m, recording, number in rows
    ]


async def mark_sent(session: AsyncSession, notice_id: int, now: datetime) -> None:
    await session.execute(
        update(MailOutbox).where(MailOutbox.id == notice_id).values(sent_at=now, last_error=None)
    )


async def mark_failed(
    session: AsyncSession, notice_id: int, attempts: int, now: datetime, error: str
) -> datetime:
    """Record a failed try; returns when the next one is due (backoff)."""
    retry_at = now + timedelta(seconds=backoff_s(attempts))
    await session.execute(
        update(MailOutbox)
        .where(MailOutbox.id == notice_id)
        .values(next_attempt_at=retry_at, last_error=error[:ERROR_MAX])
    )
    return retry_at


async def pending(session: AsyncSession) -> list[MailOutbox]:
    """Notices not sent yet (for status and tests), oldest first."""
    return list(
        await session.scalars(
            select(MailOutbox).where(MailOutbox.sent_at.is_(None)).order_by(MailOutbox.id)
        )
    )
