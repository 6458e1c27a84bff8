"""`hotline member`: which agents answer which hotline, in which order."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.services import admin

from . import output
from .common import actor, json_option, run


@click.group()
def member() -> None:
    """Members of a hotline; the position orders them for the linear strategy and handover.

    \b
    Example:
      hotline member add 500 101 --position 1
      hotline member list 500
    """


@member.command()
@click.argument("hotline")
@click.argument("agent")
@click.option(
    "--position",
    type=click.IntRange(min=0),
    help="Place in the ring order, lowest first (default: after the last member).",
)
def add(hotline: str, agent: str, position: int | None) -> None:
    """Make AGENT a member of HOTLINE.

    \b
    Example:
      hotline member add 500 101
      hotline member add 500 102 --position 0
    """

    async def unit(session: AsyncSession) -> int:
        line = await admin.get_hotline(session, hotline)
        person = await admin.get_agent(session, agent)
        membership = await admin.add_member(session, line, person, position, actor=actor())
        return membership.position

    output.done(f"agent {agent} is a member of hotline {hotline} (position {run(unit)})")


@member.command()
@click.argument("hotline")
@click.argument("agent")
def remove(hotline: str, agent: str) -> None:
    """Remove AGENT from HOTLINE (logging the agent out of it).

    \b
    Example:
      hotline member remove 500 101
    """

    async def unit(session: AsyncSession) -> None:
        line = await admin.get_hotline(session, hotline)
        person = await admin.get_agent(session, agent)
        await admin.remove_member(session, line, person, actor=actor())

    run(unit)
    output.done(f"agent {agent} is no longer a member of hotline {hotline}")


@member.command(name="list")
@click.argument("hotline")
@json_option
def list_(hotline: str, as_json: bool) -> None:
    """List the members of HOTLINE in ring order.

    \b
    Example:
      hotline member list 500 --json
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        line = await admin.get_hotline(session, hotline)
        return [
            {"position": m.position, "agent": a.number, "name": a.name}
            for m, a in await admin.members(session, line)
        ]

    members = run(unit)
    if as_json:
        output.echo_json(members)
        return
    output.echo_table(
        ["POSITION", "AGENT", "NAME"],
        [[m["position"], m["agent"], m["name"]] for m in members],
        empty=f"hotline {hotline} has no members (add one with: hotline member add)",
    )
