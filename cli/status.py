"""`hotline status`: agents by presence and callers waiting, per hotline; `--watch` redraws.

Only the exposed presence values (available, on_call, unavailable) are shown, the same
colleagues see on the panel; never why someone is unavailable.
"""

from __future__ import annotations

import sys
import time

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.domain.presence import Presence
from ari_app.services.status import HotlineStatus, hotline_status

from . import output
from .common import DURATION, json_option, run

CLEAR = "\x1b[H\x1b[2J"  # cursor home + clear screen: redraw in place
NOTHING_CONFIGURED = (
    "nothing configured yet: no hotlines. Create one with `hotline line create`,"
    " or load a configuration with `hotline config apply FILE`."
)


def render(statuses: list[HotlineStatus], *, with_agents: bool) -> str:
    rows = [
        [
            s.number,
            s.name,
            s.logged_in[Presence.AVAILABLE.value],
            s.logged_in[Presence.ON_CALL.value],
            s.waiting,
            output.seconds(s.longest_wait_s) if s.waiting else "-",
        ]
        for s in statuses
    ]
    text = output.table(
        ["HOTLINE", "NAME", "AVAILABLE", "ON_CALL", "WAITING", "LONGEST WAIT"],
        rows,
    )
    if with_agents:
        agents = [
            [s.number, a["agent"], a["name"], a["presence"]] for s in statuses for a in s.agents
        ]
        if agents:
            text += "\n\n" + output.table(["HOTLINE", "AGENT", "NAME", "PRESENCE"], agents)
    return text


@click.command()
@click.argument("hotline", required=False)
@click.option("--agents", "with_agents", is_flag=True, help="Also list each member's presence.")
@click.option("--watch", is_flag=True, help="Redraw until Ctrl-C.")
@click.option("--interval", type=DURATION, default="2s", show_default=True, help="Redraw interval.")
@click.option("--count", type=click.IntRange(min=1), help="With --watch: stop after N redraws.")
@json_option
def status(
    hotline: str | None,
    with_agents: bool,
    watch: bool,
    interval: int,
    count: int | None,
    as_json: bool,
) -> None:
    """Per hotline: logged-in agents by presence (available, on_call; agents shown as not
    available, whether paused, in wrap-up or logged out, are not counted), callers waiting
    and the longest wait.

    \b
    Example:
      hotline status
      hotline status 500 --agents --watch
      hotline status --json
    """

    async def unit(session: AsyncSession) -> list[HotlineStatus]:
        return await hotline_status(session, hotline, with_agents=with_agents)

    def frame() -> str:
        statuses = run(unit)
        if as_json:
            data = [s.as_dict(with_agents=with_agents) for s in statuses]
            return output.to_json(data, compact=watch)  # one JSON document per line when watching
        if not statuses:
            return NOTHING_CONFIGURED
        return render(statuses, with_agents=with_agents)

    if not watch:
        click.echo(frame())
        return
    in_place = sys.stdout.isatty() and not as_json
    shown = 0
    try:
        while True:
            text = frame()
            click.echo(CLEAR + text if in_place else text + ("" if as_json else "\n"))
            shown += 1
            if count is not None and shown >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
