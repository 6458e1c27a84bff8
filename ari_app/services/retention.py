"""Data retention: old call records (with their event log and audit rows) lose the caller's
number, old voicemails are deleted with their recordings (`hotline purge`, and daily from
`hotline serve`). Also: calling numbers in the audit rows of PIN checks and lockouts (as
actor and as lockout subject) are replaced by a pseudonym, stale rows of the lockouts
table are deleted, and recordings the app left without a voicemail row (a crash between
recording and insert) are deleted from Asterisk once they are older than the cutoff.

Caller numbers are removed, not hashed: a phone number has so few digits that any hash of
it can be reversed by trying them all, so keeping one would keep the number. Reports only
need the counts and times, which stay.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, CursorResult, Text, case, delete, func, literal, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.config import MIN_RETENTION_S, retention_seconds
from ari_app.db.models import AuditEntry, Call, Callback, CallEvent, Lockout, Voicemail
from ari_app.domain.callbacks import OPEN_STATES
from ari_app.domain.errors import InvalidValue
from ari_app.services import audit
from ari_app.services.audit import Path

log = logging.getLogger(__name__)

# Keys of call_events.data / audit_log.detail that may hold a caller's number.
CALLER_KEYS = ("caller", "caller_number")
# What a calling number becomes in audit rows of PIN checks and lockouts (actor, subject):
# the rows stay countable (the alert, reports on guessing), the number goes.
PSEUDONYM = "number:purged"
NUMBER_SUBJECT = "number:%"
# The app's own namespace in Asterisk's recordings folder: flows/inbound/ names every
# voicemail recording `hotline-vm-<call id>`. Nothing else there is ever touched.
RECORDING_PREFIX = "hotline-vm-"


@dataclass(frozen=True)
class PurgeResult:
    calls_pseudonymised: int = 0
    voicemails_deleted: int = 0
    recordings_deleted: int = 0  # recordings Asterisk still had (the others were gone)
    voicemails_kept: int = 0  # no ARI, or Asterisk failed: retried on the next purge
    audit_rows_pseudonymised: int = 0  # PIN check / lockout rows that named a caller
    lockouts_deleted: int = 0  # rows of the lockouts table nobody failed on since the cutoff
    orphan_recordings_deleted: int = 0  # hotline-vm-* recordings without a voicemail row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_retention(seconds: int) -> int:
    if seconds < MIN_RETENTION_S:
        raise InvalidValue("retention: must be at least 1d (a day)")
    return seconds


def retention_from_env(env: Mapping[str, str] | None = None) -> int:
    """Seconds from HOTLINE_RETENTION (a duration like 90d), default 90 days."""
    return retention_seconds(os.environ if env is None else env)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def purge_preview(session: AsyncSession, cutoff: datetime) -> PurgeResult:
    """What `purge_older_than` would do now, without changing anything."""
    calls = await session.scalar(
        select(func.count())
        .select_from(Call)
        .where(Call.entered_at < cutoff, Call.pseudonymised.is_(False))
    )
    voicemails = await session.scalar(
        select(func.count()).select_from(Voicemail).where(Voicemail.recorded_at < cutoff)
    )
    audit_rows = await session.scalar(
        select(func.count()).select_from(AuditEntry).where(_names_a_caller(cutoff))
    )
    lockouts = await session.scalar(
        select(func.count()).select_from(Lockout).where(_stale_lockout(cutoff))
    )
    return PurgeResult(
        calls_pseudonymised=int(calls or 0),
        voicemails_deleted=int(voicemails or 0),
        audit_rows_pseudonymised=int(audit_rows or 0),
        lockouts_deleted=int(lockouts or 0),
    )


def _subject() -> Any:
    return AuditEntry.detail.op("->>", return_type=Text)("subject")


def _names_a_caller(cutoff: datetime) -> Any:
    """Audit rows before `cutoff` whose actor or lockout subject is a calling number."""
    return (AuditEntry.at < cutoff) & or_(
        AuditEntry.actor.like(NUMBER_SUBJECT) & (AuditEntry.actor != PSEUDONYM),
        _subject().like(NUMBER_SUBJECT) & (_subject() != PSEUDONYM),
    )


def _stale_lockout(cutoff: datetime) -> Any:
    """Lockout rows with no failure and no lock since `cutoff` (a quiet day has forgotten
    them anyway; the retention is at least a day)."""
    last = func.greatest(Lockout.last_failure_at, Lockout.locked_until)
    return func.coalesce(last, literal("-infinity").cast(Lockout.locked_until.type)) < cutoff


async def _pseudonymise_pin_audit(session: AsyncSession, cutoff: datetime) -> int:
    pseudonym = func.jsonb_build_object("subject", PSEUDONYM)
    return _rowcount(
        await session.execute(
            update(AuditEntry)
            .where(_names_a_caller(cutoff))
            .values(
                actor=case(
                    (AuditEntry.actor.like(NUMBER_SUBJECT), PSEUDONYM), else_=AuditEntry.actor
                ),
                detail=case(
                    (
                        _subject().like(NUMBER_SUBJECT),
                        AuditEntry.detail.op("||", return_type=JSONB)(pseudonym),
                    ),
                    else_=AuditEntry.detail,
                ),
            )
            .execution_options(synchronize_session=False)
        )
    )


async def _orphan_recordings(session: AsyncSession, cutoff: datetime, ari: AriClient) -> int:
    """Delete `hotline-vm-<call id>` recordings that have no voicemail row and whose call
    entered before `cutoff`. A recording whose call is unknown is kept (its age cannot be
    told); one of a recent call may still be on its way into the table."""
    try:
        stored = await ari.list_stored_recordings()
    except AriError as exc:
        log.warning("purge: cannot list Asterisk's recordings: %s", exc)
        return 0
    names = {r.name for r in stored if r.name.startswith(RECORDING_PREFIX)}
    if not names:
        return 0
    names -= set(
        await session.scalars(
            select(Voicemail.recording_name).where(Voicemail.recording_name.in_(names))
        )
    )
    by_call: dict[uuid.UUID, str] = {}
    for name in names:
        try:
            by_call[uuid.UUID(name.removeprefix(RECORDING_PREFIX))] = name
        except ValueError:
            log.info("purge: keeping recording %s (not named after a call)", name)
    if not by_call:
        return 0
    old = set(
        await session.scalars(
            select(Call.id).where(Call.id.in_(list(by_call)), Call.entered_at < cutoff)
        )
    )
    deleted = 0
    for call_id in sorted(old):
        try:
            deleted += await ari.delete_stored_recording(by_call[call_id], missing_ok=True)
        except AriError as exc:
            log.warning("purge: orphan recording %s not deleted: %s", by_call[call_id], exc)
    return deleted


async def purge_older_than(
    session: AsyncSession,
    cutoff: datetime,
    ari: AriClient | None,
    *,
    actor: str = "system",
    path: Path = "system",
) -> PurgeResult:
    """Remove caller numbers from calls that entered before `cutoff` and delete voicemails
    recorded before it, recordings first. Without `ari` (or when Asterisk refuses one) a
    voicemail is kept, only its caller number goes, so no recording is ever orphaned."""
    old_calls = select(Call.id).where(Call.entered_at < cutoff, Call.pseudonymised.is_(False))
    keys = sql_cast(array(CALLER_KEYS), ARRAY(Text))
    await session.execute(
        update(CallEvent)
        .where(CallEvent.call_id.in_(old_calls))
        .values(data=CallEvent.data.op("-", return_type=JSONB)(keys))
        .execution_options(synchronize_session=False)
    )
    # Audit rows about voicemail may name the caller too; the rest of them stays.
    await session.execute(
        update(AuditEntry)
        .where(AuditEntry.at < cutoff, AuditEntry.detail.op("?|", return_type=Boolean)(keys))
        .values(detail=AuditEntry.detail.op("-", return_type=JSONB)(keys))
        .execution_options(synchronize_session=False)
    )
    calls = _rowcount(
        await session.execute(
            update(Call)
            .where(Call.entered_at < cutoff, Call.pseudonymised.is_(False))
            .values(caller_number=None, pseudonymised=True)
            .execution_options(synchronize_session=False)
        )
    )
    # Callbacks (issue 15) keep their counts for reports, not the number they dialled.
    await session.execute(
        update(Callback)
        .where(
            Callback.entered_at < cutoff,
            Callback.state.not_in([s.value for s in OPEN_STATES]),
            Callback.number != "",
        )
        .values(number="")
        .execution_options(synchronize_session=False)
    )

    deleted = recordings = kept = 0
    old_voicemails = list(
        await session.scalars(
            select(Voicemail).where(Voicemail.recorded_at < cutoff).order_by(Voicemail.id)
        )
    )
    for vm in old_voicemails:
        if ari is None:
            kept += 1
            continue
        try:
            recordings += await ari.delete_stored_recording(vm.recording_name, missing_ok=True)
        except AriError as exc:
            log.warning("purge: keeping voicemail %d, recording not deleted: %s", vm.id, exc)
            kept += 1
            continue
        await session.delete(vm)
        deleted += 1
    await session.flush()
    await session.execute(
        update(Voicemail)
        .where(Voicemail.recorded_at < cutoff, Voicemail.caller_number.is_not(None))
        .values(caller_number=None)
        .execution_options(synchronize_session=False)
    )

    audit_rows = await _pseudonymise_pin_audit(session, cutoff)
    lockouts = _rowcount(
        await session.execute(
            delete(Lockout)
            .where(_stale_lockout(cutoff))
            .execution_options(synchronize_session=False)
        )
    )
    orphans = await _orphan_recordings(session, cutoff, ari) if ari is not None else 0

    result = PurgeResult(calls, deleted, recordings, kept, audit_rows, lockouts, orphans)
    await audit.record(
        session,
        actor=actor,
        action="purge",
        path=path,
        cutoff=cutoff.isoformat(),
        **result.as_dict(),
    )
    log.info("purge before %s: %s", cutoff.isoformat(), result)
    return result
