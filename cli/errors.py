"""The one place where errors become exit codes and one readable line (DESIGN.md, "CLI").

Exit 0 ok, 1 domain error (not found, conflict, invalid value, unreachable database or
Asterisk), 2 usage error (click's own: unknown option, missing argument, bad choice).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ari_app.ari.errors import AriConnectionError, AriError
from ari_app.domain.errors import HotlineError

EXIT_OK = 0
EXIT_DOMAIN = 1
EXIT_USAGE = 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def message_for(exc: BaseException) -> str | None:
    """A one-line message for errors a user can act on; None for bugs."""
    if isinstance(exc, HotlineError):
        return exc.message
    if isinstance(exc, AriConnectionError):
        return f"Asterisk (ARI) unreachable: {_first_line(exc)}"
    if isinstance(exc, AriError):
        return f"Asterisk (ARI) refused: {_first_line(exc)}"
    if isinstance(exc, IntegrityError):
        # Two admins changing the same thing at once; the check before lost the race.
        return f"conflict with existing data: {_first_line(exc.orig or exc)}"
    if isinstance(exc, ProgrammingError) and "UndefinedTable" in str(exc):
        return "the database has no Hotline schema yet; run `hotline db upgrade`"
    if isinstance(exc, (OperationalError, DBAPIError, ConnectionError, OSError)):
        return f"database or network unavailable: {_first_line(exc)}"
    return None


def fail(exc: BaseException, debug: bool) -> int:
    """Print exc for a user and return the exit code."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    text = message_for(exc)
    if text is None:
        click.echo(f"error: internal error ({type(exc).__name__}); rerun with --debug", err=True)
    else:
        click.echo(f"error: {text}", err=True)
    return EXIT_DOMAIN


class HotlineGroup(click.Group):
    """The top-level group: turns every non-click exception of a subcommand (including
    option values a domain validator refused) into one line and exit 1, so `main()` and
    click's own standalone mode (CliRunner) behave the same."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            debug = bool((ctx.obj or {}).get("debug")) if isinstance(ctx.obj, dict) else False
            ctx.exit(fail(exc, debug))
