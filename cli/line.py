"""`hotline line`: create, list, show, update and delete hotlines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline
from ari_app.services import admin

from . import output
from .common import DATE, DURATION, PHONE, actor, json_option, run

# (option, column, click type, help). Durations take 30s / 5m / 1h; a number is seconds.
# fmt: off
SETTINGS: list[tuple[str, str, Any, str]] = [
    ("--name", "name", str, "Name callers and agents hear, e.g. 'Bürgerbüro'."),
    ("--strategy", "strategy", str,
     "ring_all, longest_idle, round_robin, linear, fewest_calls or random."),
    ("--ring-timeout", "ring_timeout_s", DURATION, "Ring an agent this long (20s)."),
    ("--retry-delay", "retry_delay_s", DURATION, "Pause before ringing the next agent (2s)."),
    ("--wrapup", "wrapup_s", DURATION, "Wrap-up time after each call (10s)."),
    ("--max-wait", "max_wait_s", DURATION, "Longest wait before the timeout action (5m)."),
    ("--max-queue", "max_queue_len", int, "Most callers waiting; more get the timeout action."),
    ("--no-answer-limit", "no_answer_limit", int,
     "Unanswered calls in a row before an agent is set not available (0: never)."),
    ("--greeting", "greeting_sound", str, "Sound on arrival, e.g. custom/welcome ('': none)."),
    ("--announce-every", "announce_frequency_s", DURATION,
     "Position announcement interval (0: off)."),
    ("--moh", "moh_class", str, "Music on hold class."),
    ("--timezone", "timezone", str, "Time zone of the opening hours, e.g. Europe/Berlin."),
    ("--hours", "opening_hours", str,
     "Opening hours, e.g. 'mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00' ('': always)."),
    ("--closed-action", "closed_action", str,
     "When closed: voicemail, forward:<number> or announce:<sound>."),
    ("--no-agent-action", "no_agent_action", str, "When nobody is logged in (same forms)."),
    ("--timeout-action", "timeout_action", str, "After --max-wait or with a full queue."),
    ("--vm-greeting", "voicemail_greeting", str, "Voicemail greeting sound ('': default)."),
    ("--vm-max", "voicemail_max_s", DURATION, "Longest voicemail message (2m, at most 10m)."),
    ("--vm-quota", "voicemail_quota", int,
     "Most voicemails kept; then callers hear the mailbox is full (100)."),
    ("--caller-id-to-agent", "caller_id_to_agent", click.Choice(["caller", "hotline"]),
     "Number agents see: the caller's or the hotline's."),
    ("--min-agents", "min_agents", int,
     "Agents that must stay available (logout/pause is refused below it)."),
    ("--service-level", "service_level_s", DURATION, "Answer-time goal for reports (20s)."),
    ("--vm-notify", "vm_notify", str,
     "E-mail addresses told of each new voicemail, comma-separated ('': none)."),
    ("--language", "language", click.Choice(["de", "en"]),
     "Language callers hear (default: HOTLINE_LANGUAGE of the server, de)."),
    ("--callback-after", "callback_after_s", DURATION,
     "Offer a callback keeping the place after this long in the queue (0: off, default)."),
    ("--callback-attempts", "callback_attempts", int, "Attempts to reach a callback (3)."),
    ("--callback-interval", "callback_interval_s", DURATION, "Between callback attempts (5m)."),
]
# fmt: on
SETTING_COLUMNS = [column for _, column, _, _ in SETTINGS] + [
    "accept_confirm",
    "escalation_numbers",
    "vm_notify_attach",
    "vm_notify_caller",
]
SHOWN = [  # column, label, is a duration
    ("number", "number", False),
    ("name", "name", False),
    ("strategy", "strategy", False),
    ("ring_timeout_s", "ring timeout", True),
    ("retry_delay_s", "retry delay", True),
    ("wrapup_s", "wrap-up", True),
    ("max_wait_s", "max wait", True),
    ("max_queue_len", "max queue", False),
    ("no_answer_limit", "no-answer limit", False),
    ("greeting_sound", "greeting", False),
    ("announce_frequency_s", "announce every", True),
    ("moh_class", "music on hold", False),
    ("timezone", "time zone", False),
    ("opening_hours", "opening hours", False),
    ("closed_action", "closed action", False),
    ("no_agent_action", "no-agent action", False),
    ("timeout_action", "timeout action", False),
    ("voicemail_greeting", "voicemail greeting", False),
    ("voicemail_max_s", "voicemail max", True),
    ("voicemail_quota", "voicemail quota", False),
    ("caller_id_to_agent", "caller ID to agent", False),
    ("accept_confirm", "accept confirm", False),
    ("min_agents", "min agents", False),
    ("escalation_numbers", "escalation", False),
    ("service_level_s", "service level", True),
    ("vm_notify", "voicemail e-mail", False),
    ("vm_notify_attach", "e-mail attaches audio", False),
    ("vm_notify_caller", "e-mail shows caller", False),
    ("language", "language", False),
    ("callback_after_s", "callback after", True),
    ("callback_attempts", "callback attempts", False),
    ("callback_interval_s", "callback interval", True),
]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def setting_options(*, create: bool) -> Decorator:
    """The hotline settings as options; on update every one is optional (unchanged)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--escalation",
            "escalation",
            type=PHONE,
            multiple=True,
            help="Number alerted when too few agents remain (repeatable; replaces the list).",
        )(func)
        func = click.option(
            "--vm-notify-caller/--vm-notify-no-caller",
            "vm_notify_caller",
            default=None,
            help="Voicemail e-mails show the caller's number (default: not shown).",
        )(func)
        func = click.option(
            "--vm-notify-attach/--vm-notify-link",
            "vm_notify_attach",
            default=None,
            help="Voicemail e-mails carry the recording, or only a link (default: attach;"
            " the link comes from HOTLINE_VM_LINK_URL).",
        )(func)
        func = click.option(
            "--accept-confirm/--no-accept-confirm",
            "accept_confirm",
            default=None,
            help="External agents press a key to accept a call (default: on).",
        )(func)
        for opt, column, kind, text in reversed(SETTINGS):
            required = create and column == "name"
            func = click.option(opt, column, type=kind, required=required, help=text)(func)
        return func

    return decorate


def _settings(options: dict[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in options.items() if k in SETTING_COLUMNS and v is not None}
    if options.get("escalation"):
        settings["escalation_numbers"] = list(options["escalation"])
    return settings


def hotline_dict(hotline: Hotline, holidays: list[date], members: int) -> dict[str, Any]:
    data: dict[str, Any] = {column: getattr(hotline, column) for column, _, _ in SHOWN}
    data["strategy"] = hotline.strategy.value
    data["escalation_numbers"] = list(hotline.escalation_numbers)
    data["vm_notify"] = list(hotline.vm_notify)
    data["holidays"] = [d.isoformat() for d in holidays]
    data["members"] = members
    return data


@click.group()
def line() -> None:
    """Hotlines: the numbers citizens call.

    \b
    Example:
      hotline line create 500 --name "Bürgerbüro" --hours "mo-fr 08:00-16:00"
      hotline line list
    """


@line.command()
@click.argument("number")
@setting_options(create=True)
@click.option("--holiday", "holiday", type=DATE, multiple=True, help="Closed all day (repeat).")
def create(number: str, holiday: tuple[date, ...], **options: Any) -> None:
    """Create hotline NUMBER (the number callers dial).

    \b
    Example:
      hotline line create 500 --name "Bürgerbüro" --strategy longest_idle \\
        --ring-timeout 20s --wrapup 10s --max-wait 5m \\
        --hours "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00" --holiday 2026-12-24 \\
        --closed-action voicemail --no-agent-action forward:+4930123456 \\
        --min-agents 1 --escalation +4915112345678
    """
    settings = _settings(options)

    async def unit(session: AsyncSession) -> Hotline:
        name = settings.pop("name")
        return await admin.create_hotline(
            session, number, name, holidays=holiday, actor=actor(), **settings
        )

    hotline = run(unit)
    output.done(f"created hotline {hotline.number} ({hotline.name})")


@line.command(name="list")
@json_option
def list_(as_json: bool) -> None:
    """List all hotlines.

    \b
    Example:
      hotline line list --json
    """

    async def unit(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            hotline_dict(h, await admin.holidays(session, h), len(await admin.members(session, h)))
            for h in await admin.list_hotlines(session)
        ]

    hotlines = run(unit)
    if as_json:
        output.echo_json(hotlines)
        return
    output.echo_table(
        ["NUMBER", "NAME", "STRATEGY", "MEMBERS", "OPENING HOURS"],
        [
            [h["number"], h["name"], h["strategy"], h["members"], h["opening_hours"] or "always"]
            for h in hotlines
        ],
        empty="no hotlines (create one with: hotline line create)",
    )


@line.command()
@click.argument("number")
@json_option
def show(number: str, as_json: bool) -> None:
    """Show every setting of hotline NUMBER.

    \b
    Example:
      hotline line show 500
    """

    async def unit(session: AsyncSession) -> dict[str, Any]:
        hotline = await admin.get_hotline(session, number)
        data = hotline_dict(
            hotline,
            await admin.holidays(session, hotline),
            len(await admin.members(session, hotline)),
        )
        return data

    data = run(unit)
    if as_json:
        output.echo_json(data)
        return
    fields: list[tuple[str, Any]] = []
    for column, label, is_duration in SHOWN:
        value = data[column]
        if column == "opening_hours" and value is None:
            value = "always open"
        fields.append((label, output.seconds(value) if is_duration else value))
    fields += [("holidays", data["holidays"]), ("members", data["members"])]
    output.echo_fields(fields)


@line.command(name="update")
@click.argument("number")
@click.option("--number", "new_number", help="Give the hotline a new number.")
@setting_options(create=False)
@click.option("--no-escalation", is_flag=True, help="Remove every escalation number.")
@click.option("--holiday", "add", type=DATE, multiple=True, help="Add a holiday (repeat).")
@click.option("--remove-holiday", "remove", type=DATE, multiple=True, help="Remove a holiday.")
def update_(
    number: str,
    new_number: str | None,
    no_escalation: bool,
    add: tuple[date, ...],
    remove: tuple[date, ...],
    **options: Any,
) -> None:
    """Change settings of hotline NUMBER; options not given stay as they are.

    \b
    Example:
      hotline line update 500 --max-wait 3m --hours "mo-fr 08:00-15:00" --holiday 2026-12-31
      hotline line update 500 --vm-notify team@example.org,lead@example.org --vm-notify-link
    """
    settings = _settings(options)
    if no_escalation:
        if "escalation_numbers" in settings:
            raise click.UsageError("--escalation and --no-escalation exclude each other")
        settings["escalation_numbers"] = []
    if new_number is not None:
        settings["number"] = new_number
    if not settings and not add and not remove:
        raise click.UsageError("nothing to change; give at least one option (see --help)")

    async def unit(session: AsyncSession) -> str:
        hotline = await admin.get_hotline(session, number)
        await admin.update_hotline(
            session,
            hotline,
            holidays_added=add,
            holidays_removed=remove,
            actor=actor(),
            **settings,
        )
        return hotline.number

    output.done(f"updated hotline {run(unit)}")


@line.command()
@click.argument("number")
@click.confirmation_option(prompt="Delete this hotline with its memberships and holidays?")
def delete(number: str) -> None:
    """Delete hotline NUMBER (refused while it has calls in progress or voicemails).

    \b
    Example:
      hotline line delete 500 --yes
    """

    async def unit(session: AsyncSession) -> None:
        hotline = await admin.get_hotline(session, number)
        await admin.delete_hotline(session, hotline, actor=actor())

    run(unit)
    output.done(f"deleted hotline {number}")
