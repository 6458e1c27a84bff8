"""`hotline audit`: who did what, via which path, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.services import admin

from . import output
from .common import SINCE, json_option, run


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={output.cell(v)}" for k, v in detail.items())


@click.command()
@click.option("--agent", help="Only rows about this agent.")
@click.option("--hotline", help="Only rows about this hotline.")
@click.option("--since", type=SINCE, help="From this date (2026-11-01) or this long ago (7d).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show the newest N rows.",
)
@json_option
def audit(
    agent: str | None,
    hotline: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log: logins, logouts, pauses and every change made with this CLI.

    \b
    Example:
      hotline audit --agent 101 --since 7d
      hotline audit --since 2026-11-01 --json
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        return await admin.audit_entries(
            session, agent_number=agent, hotline_number=hotline, since=since, limit=limit
        )

    rows = run(unit)
    if as_json:
        output.echo_json(rows)
        return
    output.echo_table(
        ["AT", "ACTOR", "ACTION", "PATH", "AGENT", "HOTLINE", "DETAIL"],
        [
            [
                r["at"],
                r["actor"],
                r["action"],
                r["path"],
                r["agent"],
                r["hotline"],
                _detail(r["detail"]),
            ]
            for r in rows
        ],
        empty="no audit entries",
    )
