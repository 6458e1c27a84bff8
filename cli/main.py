"""`hotline`: the ops CLI. A thin layer over ari_app/services; one module per noun."""

from __future__ import annotations

import sys

import click

from . import (
    agent,
    audit,
    callback,
    config,
    db,
    flows,
    line,
    member,
    prompts,
    purge,
    report,
    roster,
    serve,
    session,
    status,
    voicemail,
)
from .errors import EXIT_OK, EXIT_USAGE, HotlineGroup, fail


@click.group(cls=HotlineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def hotline(ctx: click.Context, debug: bool) -> None:
    """Hotline: TeamDesk-style hotlines on Asterisk.

    Settings come from HOTLINE_* environment variables (HOTLINE_DATABASE_URL for every
    command; HOTLINE_ARI_* for voicemail export/delete and purge). Exit codes: 0 ok,
    1 error (one line on stderr), 2 wrong usage.

    \b
    Example:
      hotline db upgrade
      hotline line create 500 --name "Bürgerbüro"
      hotline status --watch
    """
    ctx.obj = {"debug": debug}


for command in (
    db.db,
    serve.serve,
    line.line,
    agent.agent,
    member.member,
    config.config,
    voicemail.voicemail,
    callback.callback,
    roster.roster_group,
    session.login,
    session.logout,
    status.status,
    report.report,
    audit.audit,
    purge.purge,
    prompts.prompts,
    flows.flows,
):
    hotline.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors exit 2, domain errors exit 1, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Not standalone, click returns the code of a ctx.exit() (HotlineGroup's exit 1)
        # instead of raising it; our commands themselves return nothing.
        result = hotline.main(args=args, prog_name="hotline", standalone_mode=False)
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
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
