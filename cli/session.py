"""`hotline login` / `hotline logout`: a supervisor logs an agent in or out (audited as cli)."""

from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline
from ari_app.domain.enums import TargetKind
from ari_app.services import admin, agents

from . import output
from .common import PHONE, actor, run


@click.command()
@click.argument("agent")
@click.argument("hotline", required=False)
@click.option(
    "--external",
    type=PHONE,
    help="Deliver calls to this configured external number instead of the agent's device.",
)
def login(agent: str, hotline: str | None, external: str | None) -> None:
    """Log AGENT in to HOTLINE (default: all of the agent's hotlines).

    Calls go to the agent's bound device, or to --external, which must be one of the
    agent's configured external numbers.

    \b
    Example:
      hotline login 101 500
      hotline login 101 --external +4915112345678
    """

    async def unit(session: AsyncSession) -> tuple[list[Hotline], str]:
        person = await admin.get_agent(session, agent)
        # agents.login refuses a number ops did not configure for the agent.
        target = None if external is None else agents.Target(external, TargetKind.EXTERNAL)
        if hotline is not None:
            await admin.get_hotline(session, hotline)
        lines = await agents.login(
            session, person, target=target, hotline_number=hotline, path="cli", actor=actor()
        )
        where = external or await agents.device_of(session, person) or "-"
        return lines, where

    lines, where = run(unit)
    numbers = ", ".join(h.number for h in lines)
    output.done(f"agent {agent} logged in to {numbers} (calls go to {where})")


@click.command()
@click.argument("agent")
@click.argument("hotline", required=False)
def logout(agent: str, hotline: str | None) -> None:
    """Log AGENT out of HOTLINE (default: all). Supervisors may go below a hotline's
    minimum of agents; a warning says so.

    \b
    Example:
      hotline logout 101 500
      hotline logout 101
    """

    async def unit(session: AsyncSession) -> tuple[list[Hotline], list[Hotline]]:
        person = await admin.get_agent(session, agent)
        if hotline is not None:
            await admin.get_hotline(session, hotline)
        logged_in = [
            h
            for h, is_in in await admin.hotlines_of(session, person)
            if is_in and hotline in (None, h.number)
        ]
        short = await agents.understaffed_by_leaving(session, person, logged_in)
        await agents.logout(
            session,
            person,
            hotline_number=hotline,
            path="cli",
            actor=actor(),
            enforce_staffing=False,
        )
        return logged_in, short

    was_in, short = run(unit)
    left = ", ".join(h.number for h in was_in)
    output.done(
        f"agent {agent} logged out of {left}" if left else f"agent {agent} was not logged in"
    )
    for h in short:
        output.note(
            f"warning: hotline {h.number} now has fewer than {h.min_agents} available agent(s)"
        )
