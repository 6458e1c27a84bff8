"""Audit rows: who did what, via which path, when. Never a reason for absence."""

from __future__ import annotations

from datetime import datetime
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
            detail=detail,
        )
    )
