"""The one place where errors become exit codes and one readable line (DESIGN.md, "CLI")."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from ari_app.domain.errors import HotlineError

EXIT_OK = 0
EXIT_DOMAIN = 1
EXIT_USAGE = 2


def message_for(exc: BaseException) -> str | None:
    """A one-line message for errors a user can act on; None for bugs."""
    if isinstance(exc, HotlineError):
        return exc.message
    if isinstance(exc, (OperationalError, DBAPIError, ConnectionError, OSError)):
        return f"database or network unavailable: {str(exc).splitlines()[0] if str(exc) else exc!r}"
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
