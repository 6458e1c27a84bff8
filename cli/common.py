"""What every command shares: one unit of work in one transaction, the audit actor (the
services write the audit rows), and option types that wrap the domain validators.

Option values a validator refuses raise `InvalidValue` (exit 1 with one line naming the
option), not click's BadParameter (exit 2): a malformed phone number or opening hours is
a wrong value, not a wrong use of the command.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from ari_app.ari.client import AriClient
from ari_app.config import database_url_from_env, load_settings
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.domain import values
from ari_app.domain.errors import InvalidValue

from .errors import json_errors

T = TypeVar("T")
Unit = Callable[[AsyncSession], Awaitable[T]]


async def in_transaction(url: str, unit: Unit[T]) -> T:
    """Run `unit` in one transaction: committed when it returns, rolled back if it raises."""
    # NullPool: a CLI command opens one connection and must not leave any behind.
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await unit(session)
    finally:
        await engine.dispose()


def run(unit: Unit[T]) -> T:
    """One unit of work against HOTLINE_DATABASE_URL (no ARI settings needed)."""
    return asyncio.run(in_transaction(database_url_from_env(), unit))


def run_with_ari(unit: Callable[[AsyncSession, AriClient], Awaitable[T]]) -> T:
    """One unit of work that also talks to Asterisk (HOTLINE_ARI_* must be set)."""
    settings = load_settings()

    async def main() -> T:
        async with AriClient(
            settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app
        ) as ari:
            return await in_transaction(settings.database_url, lambda s: unit(s, ari))

    return asyncio.run(main())


def pin_min_length() -> int:
    """HOTLINE_PIN_MIN_LENGTH, validated like every setting."""
    return load_settings(need_ari=False).pin_min_length


def actor() -> str:
    """Who runs the command, for the audit log: `cli:<os user>`."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


# --- option types -----------------------------------------------------------------------


if TYPE_CHECKING:  # generic in click >= 8.2 only, so subscripted only for the checker
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class DomainType(_ParamType):
    """A click type whose conversion is a domain validator; errors name the option."""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except InvalidValue as exc:
            where = (param.opts[0] if param.opts else param.name) if param is not None else None
            raise InvalidValue(f"{where}: {exc.message}" if where else exc.message) from None


class DurationType(DomainType):
    """`30s`, `5m`, `1h30m`, `90d` (or plain seconds) -> whole seconds."""

    name = "duration"

    def parse(self, text: str) -> int:
        return values.duration(text)


class DateType(DomainType):
    name = "date"

    def parse(self, text: str) -> date:
        return values.parse_date(text)


class DayType(DomainType):
    """A report day: `2026-11-01`, `today`, `yesterday`, `7d` (7 days ago), `monday`.
    Checked here, kept as text: relative days count from the hotline's local today, which
    only the database knows (cli/report.py), not from this machine's date."""

    name = "day"

    def parse(self, text: str) -> str:
        values.report_day(text, date.today())  # refuses what is no day, before anything runs
        return text


class PhoneType(DomainType):
    name = "number"

    def parse(self, text: str) -> str:
        return values.phone_number(text)


class SinceType(DomainType):
    """A date (`2026-11-01`, local midnight) or a duration back from now (`7d`, `12h`)."""

    name = "date|duration"

    def parse(self, text: str) -> datetime:
        if "-" in text:
            return datetime.combine(values.parse_date(text), datetime.min.time()).astimezone()
        return datetime.now(UTC) - timedelta(seconds=values.duration(text))


DURATION = DurationType()
DATE = DateType()
DAY = DayType()
PHONE = PhoneType()
SINCE = SinceType()


def json_flag(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--json` (as `as_json`): the output as JSON, and a failing command's error too."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=json_errors,
        is_eager=True,  # before the other options' values, whose errors it formats
        help=help,
    )


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return json_flag("Print JSON instead of a table (errors too, with their code).")(func)
