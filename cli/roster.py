"""`hotline roster`: duty shifts per hotline, the week, iCalendar import and export.
`hotline serve` applies the roster at each shift change (services/roster.py)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.services import admin, roster

from . import output
from .common import DATE, actor, json_option, run


@click.group(name="roster")
def roster_group() -> None:
    """Duty roster of a hotline: at each shift change `hotline serve` logs the incoming
    agent in (to the slot's target) and then the outgoing one out.

    \b
    Example:
      hotline roster add 520 --agent 102 --from "mo 07:00" --to "mo 19:00" --target +4917100002
      hotline roster show 520 --week
    """


@roster_group.command()
@click.argument("hotline")
@click.option("--agent", "agent", required=True, help="The agent on duty (a member).")
@click.option(
    "--from", "start", required=True, help="Start: 'mo 07:00' weekly, '2026-12-24 07:00' once."
)
@click.option("--to", "end", required=True, help="End, in the same form ('su 19:00' may wrap).")
@click.option(
    "--target",
    default=None,
    help="Where calls go: one of the agent's external numbers, or 'device' (default).",
)
def add(hotline: str, agent: str, start: str, end: str, target: str | None) -> None:
    """Add a shift to HOTLINE: weekly, or once (an exception that replaces the weekly
    shifts while it lasts). Times are in the hotline's time zone.

    \b
    Example:
      hotline roster add 520 --agent 102 --from "mo 07:00" --to "mo 19:00" --target +4917100002
      hotline roster add 520 --agent 103 --from "2026-12-24 07:00" --to "2026-12-27 07:00"
    """

    async def unit(session: AsyncSession) -> int:
        line = await admin.get_hotline(session, hotline)
        slot = await roster.add_slot(session, line, agent, start, end, target, actor=actor())
        return slot.id

    output.done(f"added roster slot {run(unit)} to hotline {hotline}")


@roster_group.command(name="list")
@click.argument("hotline")
@json_option
def list_(hotline: str, as_json: bool) -> None:
    """List the shifts of HOTLINE (their ids for `roster remove`).

    \b
    Example:
      hotline roster list 520 --json
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        line = await admin.get_hotline(session, hotline)
        return [s.as_dict() for s in await roster.list_slots(session, line)]

    slots = run(unit)
    if as_json:
        output.echo_json(slots)
        return
    output.echo_table(
        ["ID", "AGENT", "NAME", "KIND", "FROM", "TO", "TARGET"],
        [
            [s["id"], s["agent"], s["name"], s["kind"], s["from"], s["to"], s["target"]]
            for s in slots
        ],
        empty=f"no roster for hotline {hotline} (add one with: hotline roster add)",
    )


@roster_group.command()
@click.argument("hotline")
@click.argument("slot", type=int)
def remove(hotline: str, slot: int) -> None:
    """Remove shift SLOT (an id from `roster list`) from HOTLINE.

    \b
    Example:
      hotline roster remove 520 3
    """

    async def unit(session: AsyncSession) -> None:
        line = await admin.get_hotline(session, hotline)
        await roster.remove_slot(session, line, slot, actor=actor())

    run(unit)
    output.done(f"removed roster slot {slot} from hotline {hotline}")


@roster_group.command()
@click.argument("hotline")
@click.option("--week", "week", is_flag=True, help="The week's shifts day by day (the default).")
@click.option("--date", "day", type=DATE, default=None, help="A day of the week to show (today).")
@json_option
def show(hotline: str, week: bool, day: date | None, as_json: bool) -> None:
    """Show who is on duty when in a week (exceptions included), in the hotline's time.

    \b
    Example:
      hotline roster show 520 --week
      hotline roster show 520 --week --date 2026-12-24
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        line = await admin.get_hotline(session, hotline)
        shifts = await roster.week(session, line, day or datetime.now(UTC).date())
        return [
            {
                "from": f"{s.start:%a %Y-%m-%d %H:%M}",
                "to": f"{s.end:%a %Y-%m-%d %H:%M}",
                "agent": s.agent,
                "name": s.agent_name,
                "target": s.target or roster.DEVICE,
                "kind": "weekly" if s.weekly else "once",
            }
            for s in shifts
        ]

    shifts = run(unit)
    if as_json:
        output.echo_json(shifts)
        return
    output.echo_table(
        ["FROM", "TO", "AGENT", "NAME", "TARGET", "KIND"],
        [[s["from"], s["to"], s["agent"], s["name"], s["target"], s["kind"]] for s in shifts],
        empty=f"nobody on the roster of hotline {hotline} that week",
    )


@roster_group.command(name="export")
@click.argument("hotline")
def export(hotline: str) -> None:
    """Write HOTLINE's roster as iCalendar to stdout (weekly shifts as weekly events).

    \b
    Example:
      hotline roster export 520 > roster-520.ics
    """

    async def unit(session: AsyncSession) -> bytes:
        line = await admin.get_hotline(session, hotline)
        return await roster.export_ics(session, line, datetime.now(UTC).date())

    sys.stdout.buffer.write(run(unit))
    sys.stdout.flush()


@roster_group.command(name="import")
@click.argument("hotline")
@click.argument("file", type=click.File("rb"))
def import_(hotline: str, file: Any) -> None:
    """Add the events of an iCalendar FILE ('-': stdin) to HOTLINE's roster; the agent of
    each event comes from X-HOTLINE-AGENT (as `roster export` writes it). All or nothing.

    \b
    Example:
      hotline roster import 520 roster-520.ics
    """
    data = file.read()

    async def unit(session: AsyncSession) -> int:
        line = await admin.get_hotline(session, hotline)
        return len(await roster.import_ics(session, line, data, actor=actor()))

    output.done(f"imported {run(unit)} roster slot(s) into hotline {hotline}")
