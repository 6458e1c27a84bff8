"""Audit rows: who did what, via which path, when. Never a reason for absence."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import AuditEntry

Path = Literal["device", "hotdesk", "service", "cli", "system", "roster"]


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    path: Path,
    agent_id: int | None = None,
    hotline_id: int | None = None,
    at: datetime | None = None,
    **detail: Any,
) -> None:
    """Add one row; `at` defaults to the database's clock (given where a rule counts rows
    by the time it was told, e.g. the PIN-failure alert)."""
    extra = {"at": at} if at is not None else {}
    session.add(
        AuditEntry(
            **extra,
            actor=actor,
            action=action,
            path=path,
            agent_id=agent_id,
            hotline_id=hotline_id,
            detail={key: _jsonable(value) for key, value in detail.items()},
        )
    )


async def ops_change(
    session: AsyncSession,
    actor: str | None,
    action: str,
    *,
    agent_id: int | None = None,
    hotline_id: int | None = None,
    **detail: Any,
) -> None:
    """The audit row of a change ops made (path `cli`: the CLI, config files). None when
    `actor` is None: the caller audits the change itself (`config apply` writes one row
    per planned change with its diff)."""
    if actor is not None:
        await record(
            session,
            actor=actor,
            action=action,
            path="cli",
            agent_id=agent_id,
            hotline_id=hotline_id,
            **detail,
        )


def _jsonable(value: Any) -> Any:
    """Detail goes into a JSON column: days and times as ISO text, sequences as lists."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value
