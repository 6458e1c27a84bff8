"""The CLI as a whole: every command's help has an example; `main()` keeps the exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

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
