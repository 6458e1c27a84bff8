"""`hotline line ...` against the real Postgres, including the error paths."""

from __future__ import annotations

import pytest
from cli_support import Cli
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AuditEntry, Voicemail

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


FULL = [
    "line", "create", "500", "--name", "Bürgerbüro", "--strategy", "longest-idle",
    "--ring-timeout", "20s", "--retry-delay", "3", "--wrapup", "10s", "--max-wait", "5m",
    "--max-queue", "8", "--no-answer-limit", "2", "--greeting", "custom/welcome",
    "--announce-every", "45s", "--moh", "default", "--timezone", "Europe/Berlin",
    "--hours", "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00",
    "--holiday", "2026-12-24", "--holiday", "2026-12-31",
    "--closed-action", "voicemail", "--no-agent-action", "forward:+4930123",
    "--timeout-action", "announce:custom/sorry", "--vm-greeting", "custom/vm",
    "--vm-max", "2m", "--vm-quota", "50", "--caller-id-to-agent", "hotline", "--no-accept-confirm",
    "--min-agents", "1", "--escalation", "+4915100001", "--escalation", "+4915100002",
    "--service-level", "30s", "--vm-notify", "team@example.org", "--vm-notify-link",
    "--language", "de", "--callback-after", "1m", "--callback-attempts", "2",
    "--callback-interval", "10m",
]  # fmt: skip


async def test_create_show_list_every_setting(cli: Cli, sessions: Sessions) -> None:
    result = await cli.ok(*FULL)
    assert "created hotline 500" in result.stdout
    shown = await cli.json("line", "show", "500")
    assert shown == {
        "number": "500",
        "name": "Bürgerbüro",
        "strategy": "longest_idle",
        "ring_timeout_s": 20,
        "retry_delay_s": 3,
        "wrapup_s": 10,
        "max_wait_s": 300,
        "max_queue_len": 8,
        "no_answer_limit": 2,
        "greeting_sound": "custom/welcome",
        "announce_frequency_s": 45,
        "moh_class": "default",
        "timezone": "Europe/Berlin",
        "opening_hours": "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00",
        "closed_action": "voicemail",
        "no_agent_action": "forward:+4930123",
        "timeout_action": "announce:custom/sorry",
        "voicemail_greeting": "custom/vm",
        "voicemail_max_s": 120,
        "voicemail_quota": 50,
        "caller_id_to_agent": "hotline",
        "accept_confirm": False,
        "min_agents": 1,
        "escalation_numbers": ["+4915100001", "+4915100002"],
        "service_level_s": 30,
        "vm_notify": ["team@example.org"],
        "vm_notify_attach": False,
        "vm_notify_caller": False,
        "language": "de",
        "callback_after_s": 60,
        "callback_attempts": 2,
        "callback_interval_s": 600,
        "holidays": ["2026-12-24", "2026-12-31"],
        "members": 0,
    }
    human = (await cli.ok("line", "show", "500")).stdout
    assert "ring timeout:" in human and "20s" in human and "5m" in human
    listed = await cli.json("line", "list")
    assert [h["number"] for h in listed] == ["500"]
    table = (await cli.ok("line", "list")).stdout.splitlines()
    assert table[0].split() == ["NUMBER", "NAME", "STRATEGY", "MEMBERS", "OPENING", "HOURS"]
    assert table[1].split()[:3] == ["500", "Bürgerbüro", "longest_idle"]
    async with sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert actions == ["hotline_create"]


async def test_defaults_and_update(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("line", "create", "510", "--name", "Bauamt", "--holiday", "2026-12-24")
    data = await cli.json("line", "show", "510")
    assert data["strategy"] == "ring_all" and data["opening_hours"] is None
    assert data["accept_confirm"] is True and data["escalation_numbers"] == []
    assert data["language"] is None  # the server's HOTLINE_LANGUAGE
    await cli.ok(
        "line", "update", "510", "--max-wait", "3m", "--hours", "MO-FR 8:00-16:00",
        "--escalation", "+4930999", "--holiday", "2026-12-31", "--remove-holiday", "2026-12-24",
        "--number", "511", "--language", "en",
    )  # fmt: skip
    data = await cli.json("line", "show", "511")
    assert data["max_wait_s"] == 180 and data["language"] == "en"
    assert data["opening_hours"] == "mo-fr 08:00-16:00"
    assert data["escalation_numbers"] == ["+4930999"]
    assert data["holidays"] == ["2026-12-31"]
    await cli.ok("line", "update", "511", "--no-escalation", "--hours", "")
    data = await cli.json("line", "show", "511")
    assert data["escalation_numbers"] == [] and data["opening_hours"] is None
    async with sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.action for e in entries] == ["hotline_create", "hotline_update", "hotline_update"]
    assert entries[1].detail["changed"]["max_wait_s"] == 180
    assert entries[1].actor.startswith("cli:") and entries[1].path == "cli"


async def test_delete(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("line", "create", "500", "--name", "A")
    await cli.ok("line", "delete", "500", "--yes")
    assert await cli.json("line", "list") == []
    assert "no hotlines" in (await cli.ok("line", "list")).stderr
    line = await cli.fails("line", "delete", "500", "--yes")
    assert line == "error: no hotline with number 500"


async def test_delete_refused_while_voicemails_remain(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("line", "create", "500", "--name", "A")
    async with sessions() as session, session.begin():
        session.add(Voicemail(hotline_id=1, recording_name="vm-1", duration_s=3))
    line = await cli.fails("line", "delete", "500", "--yes")
    assert "1 voicemail(s)" in line
    assert len(await cli.json("line", "list")) == 1


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--hours", "mo-xx 08:00-12:00"], "opening hours: unknown day 'xx'"),
        (["--hours", "mo-fr 12:00-08:00"], "opening hours: 12:00-08:00 ends before it starts"),
        (["--ring-timeout", "5x"], "--ring-timeout: duration: '5x' is not a duration"),
        (["--strategy", "fastest"], "strategy: unknown 'fastest'"),
        (["--escalation", "+49 30 abc"], "--escalation: phone number"),
        (["--holiday", "2026-02-30"], "--holiday: date: '2026-02-30' does not exist"),
        (["--closed-action", "forward:"], "closed action: action: 'forward:' needs a number"),
        (["--timezone", "Mars/Base"], "time zone: unknown 'Mars/Base'"),
        (["--min-agents", "-1"], "minimum agents: must be at least 0"),
        (["--greeting", "../etc/passwd"], "greeting: sound name"),
        # disk: a message and the number kept are bounded (issue 13, finding 7)
        (["--vm-max", "11m"], "voicemail length: must be at most 600, got 660"),
        (["--vm-quota", "0"], "voicemail quota: must be at least 1"),
        (["--vm-quota", "10001"], "voicemail quota: must be at most 10000"),
    ],
)
async def test_invalid_values_exit_1_naming_the_problem(
    cli: Cli, args: list[str], problem: str
) -> None:
    line = await cli.fails("line", "create", "500", "--name", "A", *args)
    assert problem in line
    assert await cli.json("line", "list") == [], "nothing is created by a refused command"


async def test_invalid_number_and_conflict(cli: Cli) -> None:
    assert "hotline number: '5a0' may contain only digits" in await cli.fails(
        "line", "create", "5a0", "--name", "A"
    )
    await cli.ok("line", "create", "500", "--name", "A")
    assert await cli.fails("line", "create", "500", "--name", "B") == (
        "error: a hotline with number 500 exists already"
    )
    await cli.ok("line", "create", "510", "--name", "B")
    assert "exists already" in await cli.fails("line", "update", "510", "--number", "500")


async def test_unknown_hotline_exits_1_with_one_line(cli: Cli) -> None:
    for args in (["line", "show", "999"], ["line", "update", "999", "--name", "X"]):
        assert await cli.fails(*args) == "error: no hotline with number 999"


async def test_usage_errors_exit_2(cli: Cli) -> None:
    await cli.fails("line", "create", "500", code=2)  # --name missing
    await cli.fails("line", "create", "500", "--name", "A", "--bogus", code=2)
    await cli.fails("line", "create", "500", "--name", "A", "--max-queue", "many", code=2)
    await cli.fails("line", "create", "500", "--name", "A", "--caller-id-to-agent", "x", code=2)
    await cli.ok("line", "create", "500", "--name", "A")
    await cli.fails("line", "update", "500", code=2)  # nothing to change
    declined = await cli("line", "delete", "500", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.stderr
    assert len(await cli.json("line", "list")) == 1


async def test_debug_shows_a_traceback(cli: Cli) -> None:
    result = await cli("--debug", "line", "show", "999")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "error: no hotline with number 999" in result.stderr


async def test_missing_database_url_is_one_line(cli: Cli) -> None:
    line = await cli.fails("line", "list", env={"HOTLINE_DATABASE_URL": None})
    assert line == "error: HOTLINE_DATABASE_URL is not set"
