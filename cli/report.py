"""`hotline report`: call figures per hotline and day as a table, CSV or JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.domain import values
from ari_app.services import reports

from . import chart, output
from .common import DAY, DURATION, json_flag, run

HOTLINE_COLUMNS = [
    *("hotline", "name", "day", "calls", "offered"),
    *(o.value for o in reports.OUTCOMES),
    *("avg_wait_s", "max_wait_s", "service_level_s", "service_level_pct"),
    *("callbacks_requested", "callbacks_completed", "callbacks_failed"),
    "avg_time_to_callback_s",
]
AGENT_COLUMNS = [
    *("hotline", "day", "agent", "name"),
    *("answered", "talk_time_s", "avg_talk_s", "not_answered"),
]


def _hotline_table(rows: list[dict[str, Any]]) -> None:
    headers = [
        *("HOTLINE", "DAY", "CALLS", "OFFERED"),
        *(o.value.upper() for o in reports.OUTCOMES),
        *("AVG WAIT", "MAX WAIT", "SERVICE LEVEL", "CALLBACKS"),
    ]
    table = []
    for r in rows:
        level = r["service_level_pct"]
        goal = output.seconds(r["service_level_s"])
        table.append(
            [
                *(r["hotline"], r.get("period", r["day"]), r["calls"], r["offered"]),
                *(r[o.value] for o in reports.OUTCOMES),
                output.seconds(r["avg_wait_s"]),
                output.seconds(r["max_wait_s"]),
                "-" if level is None else f"{level:.1f}% <={goal}",
                _callbacks(r),
            ]
        )
    output.echo_table(headers, table, empty="no calls in this period")


def _callbacks(r: dict[str, Any]) -> str:
    """`3 (2 ok, 1 failed, avg 4m)`: requested, completed, failed, average time to callback."""
    if not r["callbacks_requested"]:
        return "-"
    avg = output.seconds(r["avg_time_to_callback_s"])
    done, failed = r["callbacks_completed"], r["callbacks_failed"]
    return f"{r['callbacks_requested']} ({done} ok, {failed} failed, avg {avg})"


def _agent_table(rows: list[dict[str, Any]]) -> None:
    headers = ["HOTLINE", "DAY", "AGENT", "NAME", "ANSWERED", "TALK TIME", "AVG TALK", "MISSED"]
    table = [
        [
            *(r["hotline"], r["day"], r["agent"], r["name"], r["answered"]),
            output.seconds(r["talk_time_s"]),
            output.seconds(r["avg_talk_s"]),
            r["not_answered"],
        ]
        for r in rows
    ]
    output.echo_table(headers, table, empty="no agent calls in this period")


@click.command()
@click.option(
    "--from",
    "start",
    type=DAY,
    help="First day: YYYY-MM-DD, today, yesterday, 7d (7 days ago) or a weekday such as"
    " monday (the latest one), counted from the hotline's local today. Default: today.",
)
@click.option("--to", "end", type=DAY, help="Last day, inclusive, same forms (default: today).")
@click.option("--hotline", help="Only this hotline.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@json_flag("Same as --format json (errors too, with their code).")
@click.option(
    "--service-level",
    type=DURATION,
    help="Answer-time goal for the service level (default: each hotline's own).",
)
@click.option(
    "--by",
    type=click.Choice(reports.BY),
    default="day",
    show_default=True,
    help="Figures per local hour, day or week (Monday to Sunday).",
)
@click.option(
    "--chart",
    "chart_file",
    metavar="FILE.svg|png",
    help="Also draw the figures: calls by outcome and the service level (SVG or PNG).",
)
@click.option(
    "--per-agent",
    is_flag=True,
    help="Figures per agent instead of per hotline (off by default on purpose).",
)
def report(
    start: str | None,
    end: str | None,
    hotline: str | None,
    fmt: str,
    as_json: bool,
    service_level: int | None,
    by: reports.By,
    chart_file: str | None,
    per_agent: bool,
) -> None:
    """Calls per hotline and day: offered, answered, abandoned, voicemail, forwarded,
    closed, no agents, timeout, average and longest wait, and the service level (share
    of offered calls answered within the goal). Days are the hotline's local days.

    \b
    Example:
      hotline report                        # today
      hotline report --from 7d              # the last seven days and today
      hotline report --from monday --hotline 500
      hotline report --from 2026-11-01 --to 2026-11-30
      hotline report --from 2026-11-01 --hotline 500 --format csv > november.csv
      hotline report --from 2026-11-01 --service-level 30s --json
      hotline report --by hour --chart today.svg
      hotline report --from 2026-10-01 --by week --hotline 500 --chart autumn.png
    """
    fmt = "json" if as_json else fmt
    if chart_file is not None and per_agent:
        raise click.UsageError("--chart draws hotline figures; leave out --per-agent")
    if per_agent and by != "day":
        raise click.UsageError("--per-agent figures are per day; leave out --by")
    target = chart.check_path(chart_file) if chart_file is not None else None
    drawn: list[reports.DayReport] = []
    first = last = date.min  # the days asked for, from the hotline's local today

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        nonlocal first, last
        # "today" is the hotline's day (Berlin's 00:30 is still yesterday in UTC).
        today = (await reports.local_now(session, datetime.now(UTC), hotline)).date()
        first = values.report_day(start, today) if start else today
        last = values.report_day(end, today) if end else today
        if per_agent:
            return [
                r.as_dict()
                for r in await reports.agent_report(session, first, last, hotline_number=hotline)
            ]
        drawn.extend(
            await reports.hotline_report(
                session, first, last, hotline_number=hotline, service_level_s=service_level,
                by=by,
            )
        )  # fmt: skip
        return [r.as_dict() for r in drawn]

    rows = run(unit)
    if target is not None:
        what = f"hotline {hotline}" if hotline else "all hotlines"
        span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
        chart.draw(target, chart.periods(drawn, first, last, by), f"Calls per {by}, {what}, {span}")
        output.note(f"wrote chart {target}")
    if fmt == "json":
        output.echo_json(rows)
    elif fmt == "csv":
        columns = HOTLINE_COLUMNS if by == "day" else ["period", *HOTLINE_COLUMNS]
        output.echo_csv(AGENT_COLUMNS if per_agent else columns, rows)
    elif per_agent:
        _agent_table(rows)
    else:
        _hotline_table(rows)
