"""`hotline config export/apply/schema` against the real Postgres: round trip, idempotence,
dry run, prune, and errors that name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_support import Cli
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.base import Base
from ari_app.db.models import AuditEntry

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
PIN = "480159"


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def _empty(sessions: Sessions) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with sessions() as session, session.begin():
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def _audit_rows(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def _populate(cli: Cli) -> None:
    """A small town: two hotlines with every kind of setting, three agents, members in a
    non-default order, PINs set."""
    await cli.ok(
        "line", "create", "500", "--name", "Bürgerbüro", "--strategy", "linear",
        "--ring-timeout", "25s", "--wrapup", "15s", "--max-wait", "3m",
        "--hours", "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00",
        "--holiday", "2026-12-24", "--holiday", "2026-12-31",
        "--closed-action", "voicemail", "--no-agent-action", "forward:+4930123456",
        "--min-agents", "1", "--escalation", "+4915112345678", "--no-accept-confirm",
        "--greeting", "custom/welcome", "--caller-id-to-agent", "hotline",
    )  # fmt: skip
    await cli.ok("line", "create", "0301", "--name", "Bauamt", "--timezone", "Europe/Vienna")
    await cli.ok(
        "agent", "create", "101", "--name", "Anna Amsel", "--device", "PJSIP/1001",
        "--external", "+4915100000001", "--external", "0301234567", "--pin-stdin",
        input=f"{PIN}\n",
    )  # fmt: skip
    await cli.ok("agent", "create", "102", "--name", "Ben Buche", "--device", "PJSIP/1002")
    await cli.ok("agent", "create", "103", "--name", "Cem Cedar")
    await cli.ok("member", "add", "500", "101")
    await cli.ok("member", "add", "500", "102")
    await cli.ok("member", "add", "500", "103", "--position", "0")
    await cli.ok("member", "add", "0301", "102")


async def _export(cli: Cli) -> str:
    return (await cli.ok("config", "export")).stdout


async def test_round_trip_idempotent_dry_run_prune(
    cli: Cli, sessions: Sessions, tmp_path: Path
) -> None:
    await _populate(cli)
    exported = await _export(cli)
    assert PIN not in exported and "pin" not in exported.lower() and "scrypt" not in exported
    data = yaml.safe_load(exported)
    assert [h["number"] for h in data["hotlines"]] == ["0301", "500"], "numbers stay text"
    assert data["hotlines"][1]["members"] == ["103", "101", "102"], "ring order"
    assert data["agents"][0]["external_numbers"] == ["+4915100000001", "0301234567"]
    town = tmp_path / "town.yaml"
    town.write_text(exported, encoding="utf-8")

    # Applied to an empty database, the file gives the same export back.
    await _empty(sessions)
    first = await cli.ok("config", "apply", str(town))
    assert first.stdout.splitlines()[-1] == "applied: 9 created, 0 updated, 0 deleted"
    assert "+ hotline 500 name=Bürgerbüro" in first.stdout
    assert "+ member 500/103" in first.stdout
    assert await _export(cli) == exported
    rows = await _audit_rows(sessions)
    assert len(rows) == 5 + 4, "one audit row per change (2 hotlines, 3 agents, 4 members)"
    assert {r.action for r in rows} == {"hotline_create", "agent_create", "member_add"}
    assert all(r.actor.startswith("cli:") and r.detail["via"] == "config" for r in rows)
    # ... and a second apply has nothing to do, and says so.
    second = await cli.ok("config", "apply", str(town))
    assert second.stdout.strip() == "no changes"
    assert len(await _audit_rows(sessions)) == 9

    # A dry run prints the plan like a diff and changes nothing.
    changed = yaml.safe_load(exported)
    changed["hotlines"][1]["max_wait_s"] = "5m"
    changed["hotlines"][1]["holidays"] = ["2026-12-24", "2027-01-01"]
    changed["hotlines"][1]["members"] = ["101", "103"]  # 102 left out, 101 first
    changed["agents"][1]["device"] = "PJSIP/1001"  # moves from 101 ...
    changed["agents"][0]["device"] = "PJSIP/1011"  # ... which gets a new one
    changed["agents"] = [a for a in changed["agents"] if a["number"] != "103"] + [
        {"number": "104", "name": "Dora Dahl", "external_numbers": ["+49 170 4444"]}
    ]
    changed["hotlines"][1]["members"] = ["101", "104"]
    changed["hotlines"] = changed["hotlines"][1:]  # hotline 0301 left out
    town.write_text(yaml.safe_dump(changed, allow_unicode=True, sort_keys=False), "utf-8")
    plan = await cli.ok("config", "apply", str(town), "--dry-run")
    lines = plan.stdout.splitlines()
    assert "~ hotline 500 max_wait_s: 180 -> 300; holidays: +2027-01-01 -2026-12-31" in lines
    assert "~ agent 101 device: PJSIP/1001 -> PJSIP/1011" in lines
    assert "~ agent 102 device: PJSIP/1002 -> PJSIP/1001" in lines
    assert "+ agent 104 name=Dora Dahl; external_numbers=[+491704444]" in lines
    assert "+ member 500/104" in lines
    assert "~ member order 500 members: [103, 101, 102] -> [101, 104, 103, 102]" in lines
    assert lines[-1] == "plan: 2 to create, 4 to update, 0 to delete (dry run, nothing changed)"
    assert "kept (--prune deletes them): agent 103, hotline 0301" in plan.stderr
    assert "member 500/103" in plan.stderr
    assert await _export(cli) == exported, "a dry run changes nothing"
    assert len(await _audit_rows(sessions)) == 9

    # Without --prune nothing absent from the file is deleted ...
    await cli.ok("config", "apply", str(town))
    after = yaml.safe_load(await _export(cli))
    assert [h["number"] for h in after["hotlines"]] == ["0301", "500"]
    assert [a["number"] for a in after["agents"]] == ["101", "102", "103", "104"]
    assert after["hotlines"][1]["members"] == ["101", "104", "103", "102"]
    # ... with it, what the file leaves out goes, each deletion audited.
    pruned = await cli.ok("config", "apply", str(town), "--prune", "--dry-run")
    assert sorted(line for line in pruned.stdout.splitlines() if line.startswith("-")) == [
        "- agent 103 name=Cem Cedar",
        "- hotline 0301 name=Bauamt",
        "- member 500/102",
    ]
    await cli.ok("config", "apply", str(town), "--prune")
    final = yaml.safe_load(await _export(cli))
    assert [h["number"] for h in final["hotlines"]] == ["500"]
    assert [a["number"] for a in final["agents"]] == ["101", "102", "104"]
    assert final["hotlines"][0]["members"] == ["101", "104"]
    deletions = [r for r in await _audit_rows(sessions) if r.action.endswith(("delete", "remove"))]
    assert sorted(r.action for r in deletions) == [
        "agent_delete",
        "hotline_delete",
        "member_remove",
    ]
    assert (await cli.ok("config", "apply", str(town), "--prune")).stdout.strip() == "no changes"


async def test_partial_file_and_json(cli: Cli, sessions: Sessions, tmp_path: Path) -> None:
    """Keys left out are not managed; JSON works like YAML; durations take units."""
    await _populate(cli)
    only = tmp_path / "one.json"
    only.write_text(
        json.dumps({"hotlines": [{"number": 500, "name": "Bürgerbüro", "wrapup_s": "1m"}]}),
        encoding="utf-8",
    )
    result = await cli.ok("config", "apply", str(only), "--prune")
    assert result.stdout.splitlines() == [
        "- hotline 0301 name=Bauamt",
        "~ hotline 500 wrapup_s: 15 -> 60",
        "applied: 0 created, 1 updated, 1 deleted",
    ]
    shown = await cli.json("line", "show", "500")
    assert shown["holidays"] == ["2026-12-24", "2026-12-31"] and shown["members"] == 3
    assert len(await cli.json("agent", "list")) == 3, "no agents key: agents left alone"
    exported = json.loads((await cli.ok("config", "export", "--format", "json")).stdout)
    assert exported["hotlines"][0]["wrapup_s"] == 60
    # Plain YAML numbers stay text: a leading 0 or '+' is kept.
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        "hotlines:\n  - number: 0301\n    name: Bauamt\n    escalation_numbers: [+4930123]\n",
        encoding="utf-8",
    )
    await cli.ok("config", "apply", str(plain))
    assert (await cli.json("line", "show", "0301"))["escalation_numbers"] == ["+4930123"]
    schema = json.loads((await cli.ok("config", "schema")).stdout)
    assert "max_wait_s" in schema["$defs"]["HotlineConfig"]["properties"]


BAD_FILE = """\
version: 1
hotlines:
  - number: "500"
    name: Bürgerbüro
    max_wait_s: 0
agents: []
"""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (BAD_FILE, "town.yaml:5: hotlines[0].max_wait_s: maximum wait: must be at least 1, got 0"),
        (
            BAD_FILE.replace("max_wait_s: 0", "hours: always"),
            "town.yaml:5: hotlines[0].hours: Extra inputs are not permitted",
        ),
        (
            BAD_FILE.replace("max_wait_s: 0", "strategy: fastest"),
            "town.yaml:5: hotlines[0].strategy: ",
        ),
        (
            BAD_FILE.replace("    name: Bürgerbüro\n", ""),
            "town.yaml:3: hotlines[0].name: Field required",
        ),
        (
            BAD_FILE.replace("max_wait_s: 0", "max_wait_s: 60").replace(
                "agents: []", "agents:\n  - number: '101'\n    name: A\n    device: PJSIP/1&SIP/2"
            ),
            "town.yaml:9: agents[0].device: dial string: 'PJSIP/1&SIP/2' contains forbidden",
        ),
        (
            BAD_FILE.replace("max_wait_s: 0", "holidays: [2026-12-24, 2026-02-30]"),
            "town.yaml:5: hotlines[0].holidays[1]: date: '2026-02-30' does not exist",
        ),
        (
            BAD_FILE.replace("max_wait_s: 0", "members: ['999']"),
            "town.yaml:5: hotlines[0].members[0]: no agent with number 999",
        ),
        (
            BAD_FILE.replace("max_wait_s: 0\n", "max_wait_s: 5m\n    max_wait_s: 6m\n"),
            "town.yaml:6: hotlines[0].max_wait_s: given twice",
        ),
        (BAD_FILE.replace("agents: []", "agents: [}"), "town.yaml:6: not valid YAML/JSON"),
    ],
)
async def test_errors_name_file_line_and_field(
    cli: Cli, sessions: Sessions, tmp_path: Path, content: str, expected: str
) -> None:
    town = tmp_path / "town.yaml"
    town.write_text(content, encoding="utf-8")
    line = await cli.fails("config", "apply", str(town))
    assert line.startswith(f"error: {tmp_path}/{expected}"), line
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0


async def test_rule_of_the_database_is_located_and_changes_nothing(
    cli: Cli, sessions: Sessions, tmp_path: Path
) -> None:
    """A device already bound to an agent the file does not list: the admin rule refuses,
    the error names the agent's line, and the hotline created before it is rolled back."""
    await cli.ok("agent", "create", "101", "--name", "Anna", "--device", "PJSIP/1001")
    town = tmp_path / "town.yaml"
    town.write_text(
        "hotlines:\n  - number: '500'\n    name: A\n"
        "agents:\n  - number: '102'\n    name: Ben\n    device: PJSIP/1001\n",
        encoding="utf-8",
    )
    line = await cli.fails("config", "apply", str(town))
    assert line == f"error: {town}:5: agents[0]: PJSIP/1001 is configured already"
    assert await cli.json("line", "list") == []


async def test_languages_in_the_file(cli: Cli, tmp_path: Path) -> None:
    """A hotline's and an agent's language are settings of the file; null: the server's."""
    town = tmp_path / "town.yaml"
    town.write_text(
        "hotlines:\n- number: '500'\n  name: Bürgerbüro\n  language: en\n"
        "agents:\n- number: '101'\n  name: Anna\n  language: de\n"
    )
    await cli.ok("config", "apply", str(town))
    exported = json.loads((await cli.ok("config", "export", "--format", "json")).stdout)
    assert exported["hotlines"][0]["language"] == "en"
    assert exported["agents"][0]["language"] == "de"
    assert (await cli.json("agent", "show", "101"))["language"] == "de"
    town.write_text("agents:\n- number: '101'\n  name: Anna\n  language: null\n")
    assert "language" in (await cli.ok("config", "apply", str(town))).stdout
    assert (await cli.json("agent", "show", "101"))["language"] is None
    town.write_text("agents:\n- number: '101'\n  name: Anna\n  language: fr\n")
    assert "language" in await cli.fails("config", "apply", str(town))
