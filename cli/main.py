"""`hotline`: the ops CLI. A thin layer over ari_app/services; one module per noun."""

from __future__ import annotations

import sys

import click

from . import db, serve
from .errors import EXIT_USAGE, fail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def hotline(ctx: click.Context, debug: bool) -> None:
    """Hotline: TeamDesk-style hotlines on Asterisk.

    \b
    Example:
      hotline db upgrade
      hotline serve
    """
    ctx.obj = {"debug": debug}


hotline.add_command(db.db)
hotline.add_command(serve.serve)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors exit 2, domain errors exit 1, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        hotline.main(args=args, prog_name="hotline", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return fail(exc, debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
