"""`hotline config`: the whole configuration as one file to review, keep in version
control and apply (ari_app/services/config_sync.py does the work)."""

from __future__ import annotations

from typing import Any, TextIO

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.services import config_sync
from ari_app.services.config_sync import Change, Result

from . import output
from .common import actor, run

SIGNS = {"create": "+", "update": "~", "delete": "-"}


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _field(name: str, old: Any, new: Any, op: str) -> str:
    if op == "create":
        return f"{name}={_value(new)}"
    if op == "delete":
        return f"{name}={_value(old)}"
    if isinstance(old, list) and isinstance(new, list) and name != "members":  # order matters
        parts = [f"+{v}" for v in new if v not in old] + [f"-{v}" for v in old if v not in new]
        if parts:
            return f"{name}: {' '.join(parts)}"
    return f"{name}: {_value(old)} -> {_value(new)}"


def plan_line(change: Change) -> str:
    """One change like a diff line: `+ agent 101 name=Anna`, `~ hotline 500 max_wait_s: ...`."""
    text = f"{SIGNS[change.op]} {change.kind} {change.key}"
    fields = [_field(k, old, new, change.op) for k, (old, new) in change.fields.items()]
    return text + (" " + "; ".join(fields) if fields else "")


def summary(result: Result, *, planned: bool) -> str:
    if not result.changes:
        return "no changes"
    counts = (result.count("create"), result.count("update"), result.count("delete"))
    if planned:
        return "plan: {} to create, {} to update, {} to delete (dry run, nothing changed)".format(
            *counts
        )
    return "applied: {} created, {} updated, {} deleted".format(*counts)


def show_result(result: Result, *, planned: bool) -> None:
    for change in result.changes:
        click.echo(plan_line(change))
    click.echo(summary(result, planned=planned))
    if result.kept:
        output.note(f"not in the file, kept (--prune deletes them): {', '.join(result.kept)}")


@click.group()
def config() -> None:
    """Configuration as code: hotlines, agents and memberships in one YAML file.

    \b
    Example:
      hotline config export > town.yaml
      hotline config apply town.yaml --dry-run
      hotline config apply town.yaml
    """


@config.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="YAML for people, JSON for programs; apply reads both.",
)
def export(fmt: str) -> None:
    """Write the configuration to stdout: every hotline setting, holidays, members in
    ring order, agents with device and external numbers. Never PINs or their hashes.

    \b
    Example:
      hotline config export > town.yaml
      hotline config export --format json | jq '.agents | length'
    """

    async def unit(session: AsyncSession) -> dict[str, Any]:
        return await config_sync.export_config(session)

    data = run(unit)
    text = config_sync.dump_json(data) if fmt == "json" else config_sync.dump_yaml(data)
    click.echo(text, nl=False)


@config.command()
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))  # -sig: a BOM is no key
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--prune",
    is_flag=True,
    help="Also delete hotlines, agents and memberships the file leaves out.",
)
def apply(file: TextIO, dry_run: bool, prune: bool) -> None:
    """Make the database match FILE (YAML or JSON, `-` for stdin) in one transaction,
    with one audit row per change. Prints each change like a diff (+ create, ~ update,
    - delete) and "no changes" when the database matches already. A key left out of the
    file is left alone; nothing is deleted without --prune. Errors name the file, line
    and field, and change nothing. The schema: `hotline config schema`.

    \b
    Example:
      hotline config apply town.yaml --dry-run
      hotline config apply town.yaml --prune
    """
    name = getattr(file, "name", "-")
    parsed, source = config_sync.parse_config(file.read(), name)

    async def unit(session: AsyncSession) -> Result:
        return await config_sync.apply_config(
            session, parsed, source, actor=actor(), prune=prune, dry_run=dry_run
        )

    show_result(run(unit), planned=dry_run)


@config.command()
def schema() -> None:
    """Print the JSON Schema of the configuration file (made from the models apply uses).

    \b
    Example:
      hotline config schema > town.schema.json
    """
    click.echo(config_sync.dump_json(config_sync.json_schema()), nl=False)
