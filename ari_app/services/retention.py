"""Data retention: old call records (with their event log and audit rows) lose the caller's
number, old voicemails are deleted with their recordings (`hotline purge`, and daily from
`hotline serve`).

Caller numbers are removed, not hashed: a phone number has so few digits that any hash of
it can be reversed by trying them all, so keeping one would keep the number. Reports only
need the counts and times, which stay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, CursorResult, Text, func, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.config import MIN_RETENTION_S, retention_seconds
from ari_app.db.models import AuditEntry, Call, CallEvent, Voicemail
from ari_app.domain.errors import InvalidValue
from ari_app.services import audit
from ari_app.services.audit import Path

log = logging.getLogger(__name__)

# Keys of call_events.data / audit_log.detail that may hold a caller's number.
CALLER_KEYS = ("caller", "caller_number")


@dataclass(frozen=True)
class PurgeResult:
    calls_pseudonymised: int = 0
    voicemails_deleted: int = 0
    recordings_deleted: int = 0  # recordings Asterisk still had (the others were gone)
    voicemails_kept: int = 0  # no ARI, or Asterisk failed: retried on the next purge

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
    return PurgeResult(calls_pseudonymised=int(calls or 0), voicemails_deleted=int(voicemails or 0))


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

    result = PurgeResult(calls, deleted, recordings, kept)
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
