"""The one place where errors become exit codes and one readable line (DESIGN.md, "CLI").

Exit 0 ok, 1 domain error (not found, conflict, invalid value, unreachable database or
Asterisk), 2 usage error (click's own: unknown option, missing argument, bad choice).
A command run with --json reports its error as one JSON line on stderr,
`{"error": "<message>", "code": "<code>"}`: the domain error's stable code
(domain/errors.py), as the panel's API does.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ari_app.ari.errors import AriConnectionError, AriError
from ari_app.domain.errors import Conflict, HotlineError, Unavailable

EXIT_OK = 0
EXIT_DOMAIN = 1
EXIT_USAGE = 2
JSON_ERRORS = "hotline.json_errors"  # ctx.meta key set by --json: errors as JSON too
INTERNAL = "internal"  # the code of a bug (no message a user can act on)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def describe(exc: BaseException) -> tuple[str, str] | None:
    """(code, one-line message) for errors a user can act on; None for bugs. Failures
    that are not domain errors get the code of the domain error they amount to."""
    if isinstance(exc, HotlineError):
        return exc.code, exc.message
    if isinstance(exc, AriConnectionError):
        return Unavailable.code, f"Asterisk (ARI) unreachable: {_first_line(exc)}"
    if isinstance(exc, AriError):
        return "ari_refused", f"Asterisk (ARI) refused: {_first_line(exc)}"
    if isinstance(exc, IntegrityError):
        # Two admins changing the same thing at once; the check before lost the race.
        return Conflict.code, f"conflict with existing data: {_first_line(exc.orig or exc)}"
    if isinstance(exc, ProgrammingError) and "UndefinedTable" in str(exc):
        return "no_schema", "the database has no Hotline schema yet; run `hotline db upgrade`"
    if isinstance(exc, (OperationalError, DBAPIError, ConnectionError, OSError)):
        return Unavailable.code, f"database or network unavailable: {_first_line(exc)}"
    return None


def message_for(exc: BaseException) -> str | None:
    """A one-line message for errors a user can act on; None for bugs."""
    described = describe(exc)
    return None if described is None else described[1]


def fail(exc: BaseException, debug: bool, as_json: bool = False) -> int:
    """Print exc for a user (one line; JSON with its code after --json) and return the
    exit code."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    code, text = describe(exc) or (
        INTERNAL,
        f"internal error ({type(exc).__name__}); rerun with --debug",
    )
    if as_json:
        click.echo(json.dumps({"error": text, "code": code}, ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {text}", err=True)
    return EXIT_DOMAIN


def json_errors(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
    """Callback of every --json flag: the command's errors are printed as JSON too."""
    if value:
        ctx.meta[JSON_ERRORS] = True
    return value


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
            ctx.exit(fail(exc, debug, bool(ctx.meta.get(JSON_ERRORS))))
