"""The CLI as a whole: every command's help has an example; `main()` keeps the exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import click
import pytest
from cli_support import Cli
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline_cli.main import hotline, main

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


ALL = list(_commands(hotline))


def test_every_noun_and_command_is_there() -> None:
    top = {p[0] for p in ALL if p}
    assert top >= {"line", "agent", "member", "voicemail", "db", "serve", "status", "report",
                   "login", "logout", "purge", "audit"}  # fmt: skip
    assert {p for p in ALL if len(p) > 1 and p[0] == "agent"} >= {
        ("agent", name)
        for name in ("create", "list", "show", "update", "delete", "set-pin", "device", "number")
    }


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "hotline")
async def test_help_shows_an_example(path: tuple[str, ...], database_url: str) -> None:
    result = await Cli(database_url).ok(*path, "--help")
    assert "Example:" in result.stdout
    assert "hotline " in result.stdout.split("Example:", 1)[1]


async def test_main_exit_codes(
    sessions: Sessions, database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("HOTLINE_DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["line", "create", "500", "--name", "A"]) == 0
    assert await asyncio.to_thread(main, ["line", "show", "999"]) == 1
    assert await asyncio.to_thread(main, ["line", "create", "500", "--hours", "xx"]) == 2
    assert await asyncio.to_thread(main, ["line", "create", "501", "--name", "B",
                                          "--hours", "xx 08:00-09:00"]) == 1  # fmt: skip
    assert await asyncio.to_thread(main, ["nope"]) == 2
    err = capsys.readouterr().err
    assert "error: no hotline with number 999" in err
    assert "error: opening hours: unknown day 'xx'" in err
    assert "Traceback" not in err


async def test_json_errors_carry_the_domain_errors_code(
    sessions: Sessions, database_url: str
) -> None:
    """With --json a failing command prints its error as one JSON line on stderr with the
    stable code of the domain error (domain/errors.py); without, the readable line."""
    cli = Cli(database_url)

    async def error(*args: str) -> Any:
        result = await cli(*args, "--json")
        assert result.exit_code == 1 and not result.stdout, result.output
        [line] = result.stderr.strip().splitlines()
        return json.loads(line)

    assert await error("line", "show", "999") == {
        "error": "no hotline with number 999",
        "code": "not_found",
    }
    assert (await error("status", "999"))["code"] == "not_found"
    invalid = await error("report", "--from", "13/13")
    assert invalid["code"] == "invalid" and invalid["error"].startswith("--from")
    await cli.ok("line", "create", "500", "--name", "A")
    await cli.ok("agent", "create", "101", "--name", "Anna")
    assert (await error("agent", "show", "102"))["code"] == "not_found"
    assert await cli.fails("line", "show", "999") == "error: no hotline with number 999"


def test_every_error_the_cli_reports_has_a_code() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    from ari_app.ari.errors import AriConnectionError
    from ari_app.domain import errors
    from hotline_cli.errors import describe

    for cls in (errors.NotFound, errors.Conflict, errors.InvalidValue, errors.Refused):
        assert describe(cls("x")) == (cls.code, "x")
    assert describe(AriConnectionError("down"))[0] == errors.Unavailable.code  # type: ignore[index]
    integrity = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert describe(integrity)[0] == errors.Conflict.code  # type: ignore[index]
    outage = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert describe(outage)[0] == errors.Unavailable.code  # type: ignore[index]
    assert describe(ValueError("bug")) is None  # printed as code "internal"
