"""`hotline agent`: agents, their PIN, internal device and external numbers."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.config import load_settings
from ari_app.db.models import Agent
from ari_app.domain.enums import TargetKind
from ari_app.services import admin, auth, config_sync
from ari_app.services.status import agent_presence, db_now

from . import output
from .common import PHONE, actor, json_option, pin_min_length, run
from .config import show_result


async def agent_dict(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    targets = await admin.targets_of(session, agent)
    hotlines = await admin.hotlines_of(session, agent)
    device = next((t.address for t in targets if t.kind is TargetKind.DEVICE), None)
    return {
        "number": agent.number,
        "name": agent.name,
        "pin_set": agent.pin_hash is not None,
        "device": device,
        "external_numbers": [t.address for t in targets if t.kind is TargetKind.EXTERNAL],
        "hotlines": [h.number for h, _ in hotlines],
        "logged_in": [h.number for h, logged_in in hotlines if logged_in],
        "presence": (await agent_presence(session, agent.id)).value,
        # PIN guessing: locked subjects of the agent and streaks (`hotline agent unlock`)
        "pin_locks": [
            lock.as_dict()
            for lock in await auth.locks_of(
                session, agent, load_settings(need_ari=False).pin_lockout, await db_now(session)
            )
        ],
        "language": agent.language,
    }


def read_pin(from_stdin: bool) -> str:
    """The new PIN from a hidden prompt (typed twice) or one line of stdin; never argv."""
    if from_stdin:
        return sys.stdin.readline().strip()
    pin: str = click.prompt("New PIN", hide_input=True, confirmation_prompt=True)
    return pin.strip()


@click.group()
def agent() -> None:
    """Agents: the people who answer hotline calls.

    \b
    Example:
      hotline agent create 101 --name "Anna Amsel" --device PJSIP/1001
      echo 480159 | hotline agent set-pin 101 --stdin
    """


@agent.command()
@click.argument("number")
@click.option("--name", required=True, help="The agent's name as colleagues see it.")
@click.option("--device", help="Internal device (Asterisk dial string), e.g. PJSIP/1001.")
@click.option(
    "--external", type=PHONE, multiple=True, help="Mobile/home number for remote login (repeat)."
)
@click.option("--pin-stdin", is_flag=True, help="Read the agent's PIN from stdin.")
@click.option(
    "--language",
    type=click.Choice(["de", "en"]),
    help="Language the agent hears on the phone (default: HOTLINE_LANGUAGE, de).",
)
def create(
    number: str,
    name: str,
    device: str | None,
    external: tuple[str, ...],
    pin_stdin: bool,
    language: str | None,
) -> None:
    """Create agent NUMBER (digits; typed on a keypad for remote login).

    \b
    Example:
      echo 480159 | hotline agent create 101 --name "Anna Amsel" --device PJSIP/1001 \\
        --external +4915112345678 --pin-stdin
    """
    pin = read_pin(True) if pin_stdin else None

    async def unit(session: AsyncSession) -> Agent:
        created = await admin.create_agent(
            session,
            number,
            name,
            pin=pin,
            device=device,
            external_numbers=external,
            pin_min_length=pin_min_length(),
            language=language,
            actor=actor(),
        )
        return created

    created = run(unit)
    output.done(f"created agent {created.number} ({created.name})")


@agent.command(name="list")
@json_option
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV as `agent import` reads it: number,name,device,external_numbers,hotlines.",
)
def list_(as_json: bool, as_csv: bool) -> None:
    """List all agents.

    \b
    Example:
      hotline agent list
      hotline agent list --csv > agents.csv
    """
    if as_csv and as_json:
        raise click.UsageError("--csv and --json exclude each other")
    if as_csv:

        async def rows(session: AsyncSession) -> list[dict[str, Any]]:
            return await config_sync.export_agents(session)

        click.echo(config_sync.agents_csv(run(rows)), nl=False)
        return

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        return [await agent_dict(session, a) for a in await admin.list_agents(session)]

    agents = run(unit)
    if as_json:
        output.echo_json(agents)
        return
    output.echo_table(
        ["NUMBER", "NAME", "PIN", "DEVICE", "EXTERNAL", "HOTLINES"],
        [
            [
                a["number"],
                a["name"],
                a["pin_set"],
                a["device"],
                a["external_numbers"],
                a["hotlines"],
            ]
            for a in agents
        ],
        empty="no agents (create one with: hotline agent create)",
    )


@agent.command()
@click.argument("number")
@json_option
def show(number: str, as_json: bool) -> None:
    """Show agent NUMBER: device, external numbers, hotlines, presence.

    \b
    Example:
      hotline agent show 101 --json
    """

    async def unit(session: AsyncSession) -> dict[str, Any]:
        return await agent_dict(session, await admin.get_agent(session, number))

    data = run(unit)
    if as_json:
        output.echo_json(data)
        return
    output.echo_fields(
        [
            ("number", data["number"]),
            ("name", data["name"]),
            ("PIN set", data["pin_set"]),
            ("device", data["device"]),
            ("external", data["external_numbers"]),
            ("hotlines", data["hotlines"]),
            ("logged in to", data["logged_in"]),
            ("presence", data["presence"]),
            ("PIN locks", _locks_text(data["pin_locks"])),
            ("language", data["language"] or "(HOTLINE_LANGUAGE)"),
        ]
    )


def _locks_text(locks: list[dict[str, Any]]) -> str:
    if not locks:
        return "none"
    parts = []
    for lock in locks:
        state = f"locked until {lock['locked_until']}" if lock["locked_until"] else "not locked"
        parts.append(
            f"{lock['subject']} ({state}, {lock['failures']} failures,"
            f" {lock['lockouts']} locks in a row)"
        )
    return "; ".join(parts)


@agent.command()
@click.argument("number")
def unlock(number: str) -> None:
    """Lift the PIN locks of agent NUMBER (its number, device and external numbers) and
    forget their streaks; audited. See the locks with `hotline agent show`.

    \b
    Example:
      hotline agent unlock 101
    """

    async def unit(session: AsyncSession) -> list[str]:
        found = await admin.get_agent(session, number)
        return await auth.unlock(session, found, actor=actor(), path="cli")

    removed = run(unit)
    output.done(
        f"PIN locks of agent {number} lifted: {', '.join(removed)}"
        if removed
        else f"agent {number} had no PIN locks"
    )


@agent.command(name="update")
@click.argument("number")
@click.option("--name", help="New name.")
@click.option("--number", "new_number", help="New agent number.")
@click.option(
    "--language",
    type=click.Choice(["de", "en"]),
    help="Language the agent hears on the phone.",
)
def update_(number: str, name: str | None, new_number: str | None, language: str | None) -> None:
    """Rename or renumber agent NUMBER, or change the language the agent hears.

    \b
    Example:
      hotline agent update 101 --name "Anna Amsel-Berg" --language de
    """
    if name is None and new_number is None and language is None:
        raise click.UsageError("nothing to change; give --name, --number and/or --language")

    async def unit(session: AsyncSession) -> str:
        found = await admin.get_agent(session, number)
        await admin.update_agent(
            session, found, name=name, number=new_number, language=language, actor=actor()
        )
        return found.number

    output.done(f"updated agent {run(unit)}")


@agent.command()
@click.argument("number")
@click.confirmation_option(prompt="Delete this agent with devices, numbers and memberships?")
def delete(number: str) -> None:
    """Delete agent NUMBER (refused while the agent is on a call).

    \b
    Example:
      hotline agent delete 101 --yes
    """

    async def unit(session: AsyncSession) -> None:
        found = await admin.get_agent(session, number)
        await admin.delete_agent(session, found, actor=actor())

    run(unit)
    output.done(f"deleted agent {number}")


@agent.command(name="import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))  # -sig: Excel's BOM
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    help="Default: from the file name (.json is JSON, anything else CSV).",
)
def import_(file: TextIO, fmt: str | None) -> None:
    """Create or update the agents in FILE and add them to their hotlines, all in one
    transaction (a bad row changes nothing and is named with its line). CSV columns:
    number,name,device,external_numbers,hotlines (lists separated by ';'; a column left
    out is not changed; an empty cell means none). JSON: a list of objects with those
    keys, e.g. the output of `hotline agent list --json`. Memberships are only added.
    PINs are never imported: `hotline agent set-pin --stdin`.

    \b
    Example:
      hotline agent import agents.csv
      hotline agent list --json > agents.json && hotline agent import agents.json
    """
    name = getattr(file, "name", "-")
    kind = fmt or ("json" if name.lower().endswith(".json") else "csv")
    rows, source = config_sync.parse_agents(file.read(), name, kind)

    async def unit(session: AsyncSession) -> config_sync.Result:
        return await config_sync.import_agents(session, rows, source, actor=actor())

    show_result(run(unit), planned=False)


@agent.command(name="set-pin")
@click.argument("number", required=False)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the PIN(s) from stdin (scripts).")
def set_pin(number: str | None, from_stdin: bool) -> None:
    """Set the PIN of agent NUMBER (prompted twice, hidden; never on the command line).
    Without NUMBER, --stdin reads a CSV of number,PIN rows (header optional) and sets
    them all in one transaction; a bad row changes nothing and is named by its line.

    \b
    Example:
      hotline agent set-pin 101
      echo 480159 | hotline agent set-pin 101 --stdin
      hotline agent set-pin --stdin < pins.csv
    """
    if number is None:
        if not from_stdin:
            raise click.UsageError("give NUMBER, or --stdin with number,PIN rows")
        pins = config_sync.parse_pins(sys.stdin.read(), "stdin")

        async def bulk(session: AsyncSession) -> int:
            return await config_sync.set_pins(
                session, pins, "stdin", actor=actor(), min_length=pin_min_length()
            )

        output.done(f"PINs of {run(bulk)} agent(s) set")
        return
    pin = read_pin(from_stdin)

    async def unit(session: AsyncSession) -> None:
        found = await admin.get_agent(session, number)
        await admin.set_pin(session, found, pin, min_length=pin_min_length(), actor=actor())

    run(unit)
    output.done(f"PIN of agent {number} set")


@agent.command()
@click.argument("number")
@click.argument("dial_string", required=False)
@click.option("--unbind", is_flag=True, help="Remove the agent's device.")
def device(number: str, dial_string: str | None, unbind: bool) -> None:
    """Bind DIAL_STRING as the internal device of agent NUMBER, or --unbind it.

    \b
    Example:
      hotline agent device 101 PJSIP/1001
      hotline agent device 101 --unbind
    """
    if unbind == (dial_string is not None):
        raise click.UsageError("give either DIAL_STRING or --unbind")

    async def unit(session: AsyncSession) -> str:
        found = await admin.get_agent(session, number)
        if dial_string is None:
            old = await admin.unbind_device(session, found, actor=actor())
            return f"agent {number} has no device now (was {old})"
        bound = await admin.bind_device(session, found, dial_string, actor=actor())
        return f"agent {number} uses device {bound}"

    output.done(run(unit))


@agent.group()
def number() -> None:
    """External numbers (mobile, home) an agent may log in from and take calls on.

    \b
    Example:
      hotline agent number add 101 +4915112345678
    """


@number.command(name="add")
@click.argument("agent_number")
@click.argument("phone", type=PHONE)
def number_add(agent_number: str, phone: str) -> None:
    """Add external number PHONE to agent AGENT_NUMBER.

    \b
    Example:
      hotline agent number add 101 +4915112345678
    """

    async def unit(session: AsyncSession) -> str:
        found = await admin.get_agent(session, agent_number)
        return await admin.add_external(session, found, phone, actor=actor())

    output.done(f"agent {agent_number} may use {run(unit)}")


@number.command(name="remove")
@click.argument("agent_number")
@click.argument("phone", type=PHONE)
def number_remove(agent_number: str, phone: str) -> None:
    """Remove external number PHONE from agent AGENT_NUMBER.

    \b
    Example:
      hotline agent number remove 101 +4915112345678
    """

    async def unit(session: AsyncSession) -> str:
        found = await admin.get_agent(session, agent_number)
        return await admin.remove_external(session, found, phone, actor=actor())

    output.done(f"agent {agent_number} may no longer use {run(unit)}")
