"""`hotline callback`: callbacks that keep the caller's place (list, cancel)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.services import callbacks

from . import output
from .common import actor, json_option, run


@click.group()
def callback() -> None:
    """Callbacks that keep the caller's place in the queue (offered per hotline with
    `hotline line update NUMBER --callback-after 60s`).

    \b
    Example:
      hotline callback list --hotline 500
      hotline callback cancel 12
    """


@callback.command("list")
@click.option("--hotline", help="Only this hotline's callbacks.")
@click.option("--all", "show_all", is_flag=True, help="Also completed, failed and cancelled.")
@json_option
def list_(hotline: str | None, show_all: bool, as_json: bool) -> None:
    """List callbacks in queue order: by default those still to be made (pending, or
    being dialled); with --all also finished ones (failed ones are for ops to follow up).

    \b
    Example:
      hotline callback list --hotline 500
      hotline callback list --all --json
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        found = await callbacks.list_callbacks(
            session, hotline_number=hotline, open_only=not show_all
        )
        return [c.as_dict() for c in found]

    rows = run(unit)
    if as_json:
        output.echo_json(rows)
        return
    output.echo_table(
        ["ID", "HOTLINE", "NUMBER", "STATE", "ENTERED", "ATTEMPTS", "NEXT ATTEMPT"],
        [
            [
                r["id"],
                r["hotline"],
                r["number"],
                r["state"],
                r["entered_at"],
                r["attempts"],
                r["next_attempt_at"] if r["state"] == "pending" else "-",
            ]
            for r in rows
        ],
        empty="no callbacks",
    )


@callback.command()
@click.argument("callback_id", type=int)
def cancel(callback_id: int) -> None:
    """Cancel pending callback CALLBACK_ID (one being dialled now is left to finish).

    \b
    Example:
      hotline callback cancel 12
    """

    async def unit(session: AsyncSession) -> None:
        await callbacks.cancel(session, callback_id, datetime.now(UTC), actor=actor())

    run(unit)
    output.note(f"cancelled callback {callback_id}")
