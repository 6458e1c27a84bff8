"""`hotline agent ...` and `hotline member ...` against the real Postgres."""

from __future__ import annotations

import pytest
from cli_support import Cli
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Agent, AgentState, AuditEntry
from ari_app.domain.pin import verify_pin

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
PIN = "480159"


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def _pin_hash(sessions: Sessions, number: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(select(Agent.pin_hash).where(Agent.number == number))


async def test_create_list_show(cli: Cli, sessions: Sessions) -> None:
    await cli.ok(
        "agent", "create", "101", "--name", "Anna Amsel", "--device", "PJSIP/1001",
        "--external", "+49 151 1234", "--pin-stdin", input=f"{PIN}\n",
    )  # fmt: skip
    await cli.ok("agent", "create", "102", "--name", "Ben Buche")
    assert verify_pin(PIN, await _pin_hash(sessions, "101"))
    assert await _pin_hash(sessions, "102") is None
    shown = await cli.json("agent", "show", "101")
    assert shown == {
        "number": "101",
        "name": "Anna Amsel",
        "pin_set": True,
        "device": "PJSIP/1001",
        "external_numbers": ["+491511234"],
        "hotlines": [],
        "logged_in": [],
        "presence": "unavailable",
        "pin_locks": [],
        "language": None,  # the server's HOTLINE_LANGUAGE
    }
    assert [a["number"] for a in await cli.json("agent", "list")] == ["101", "102"]
    table = (await cli.ok("agent", "list")).stdout.splitlines()
    assert table[0].split() == ["NUMBER", "NAME", "PIN", "DEVICE", "EXTERNAL", "HOTLINES"]
    assert "PJSIP/1001" in table[1] and "yes" in table[1]
    human = (await cli.ok("agent", "show", "102")).stdout
    assert "PIN set:" in human and "no" in human
    async with sessions() as session:
        details = [e.detail for e in await session.scalars(select(AuditEntry))]
    assert all(PIN not in str(d) for d in details), "a PIN never reaches the audit log"


async def test_language(cli: Cli) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna", "--language", "de")
    assert (await cli.json("agent", "show", "101"))["language"] == "de"
    await cli.ok("agent", "update", "101", "--language", "en")
    assert (await cli.json("agent", "show", "101"))["language"] == "en"
    await cli.fails("agent", "update", "101", "--language", "fr", code=2)  # not a choice


async def test_update_delete(cli: Cli) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna")
    await cli.ok("agent", "update", "101", "--name", "Anna Amsel-Berg", "--number", "111")
    assert (await cli.json("agent", "show", "111"))["name"] == "Anna Amsel-Berg"
    assert await cli.fails("agent", "show", "101") == "error: no agent with number 101"
    await cli.ok("agent", "delete", "111", "--yes")
    assert await cli.json("agent", "list") == []


async def test_delete_refused_during_a_call(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna")
    async with sessions() as session, session.begin():
        state = await session.get(AgentState, 1)
        assert state is not None
        state.activity = "on_call"  # type: ignore[assignment]
    assert "on a call" in await cli.fails("agent", "delete", "101", "--yes")


async def test_set_pin_prompt_stdin_and_policy(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna")
    result = await cli.ok("agent", "set-pin", "101", input=f"{PIN}\n{PIN}\n")
    assert PIN not in result.output
    assert verify_pin(PIN, await _pin_hash(sessions, "101"))
    await cli.ok("agent", "set-pin", "101", "--stdin", input="730592\n")
    assert verify_pin("730592", await _pin_hash(sessions, "101"))
    assert "PIN: too easy to guess" in await cli.fails(
        "agent", "set-pin", "101", "--stdin", input="123456\n"
    )
    assert "PIN: too short" in await cli.fails("agent", "set-pin", "101", "--stdin", input="91\n")
    assert "must not contain the agent number" in await cli.fails(
        "agent", "set-pin", "101", "--stdin", input="810193\n"
    )
    assert verify_pin("730592", await _pin_hash(sessions, "101")), "refused PINs change nothing"


async def test_device_bind_unbind(cli: Cli) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna", "--device", "PJSIP/1001")
    await cli.ok("agent", "create", "102", "--name", "Ben")
    await cli.ok("agent", "device", "101", "PJSIP/1011")
    assert (await cli.json("agent", "show", "101"))["device"] == "PJSIP/1011"
    assert "PJSIP/1011 is configured already" in await cli.fails(
        "agent", "device", "102", "PJSIP/1011"
    )
    assert "forbidden character" in await cli.fails("agent", "device", "102", "PJSIP/1&SIP/2")
    await cli.ok("agent", "device", "101", "--unbind")
    assert (await cli.json("agent", "show", "101"))["device"] is None
    assert "has no device" in await cli.fails("agent", "device", "101", "--unbind")
    await cli.fails("agent", "device", "101", code=2)
    await cli.fails("agent", "device", "101", "PJSIP/1", "--unbind", code=2)


async def test_unbind_refused_while_logged_in_on_it(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("line", "create", "500", "--name", "A")
    await cli.ok("agent", "create", "101", "--name", "Anna", "--device", "PJSIP/1001")
    await cli.ok("member", "add", "500", "101")
    await cli.ok("login", "101")
    assert "logged in on PJSIP/1001" in await cli.fails("agent", "device", "101", "--unbind")
    await cli.ok("agent", "device", "101", "PJSIP/1002")
    async with sessions() as session:
        state = await session.get(AgentState, 1)
        assert state is not None and state.target == "PJSIP/1002", "the login moves along"
    await cli.ok("logout", "101")
    await cli.ok("agent", "device", "101", "--unbind")


async def test_external_numbers(cli: Cli) -> None:
    await cli.ok("agent", "create", "101", "--name", "Anna")
    await cli.ok("agent", "create", "102", "--name", "Ben")
    await cli.ok("agent", "number", "add", "101", "+4915111")
    await cli.ok("agent", "number", "add", "101", "030 1234")
    assert (await cli.json("agent", "show", "101"))["external_numbers"] == ["+4915111", "0301234"]
    assert "+4915111 is configured already" in await cli.fails(
        "agent", "number", "add", "102", "+4915111"
    )
    assert "phone number: '+49abc' may contain only digits" in await cli.fails(
        "agent", "number", "add", "101", "+49abc"
    )
    await cli.ok("agent", "number", "remove", "101", "+4915111")
    assert (await cli.json("agent", "show", "101"))["external_numbers"] == ["0301234"]
    assert "is not an external number of agent 101" in await cli.fails(
        "agent", "number", "remove", "101", "+4915111"
    )


async def test_agent_errors(cli: Cli) -> None:
    assert await cli.fails("agent", "show", "999") == "error: no agent with number 999"
    assert "agent number: '1a' may contain only digits" in await cli.fails(
        "agent", "create", "1a", "--name", "X"
    )
    await cli.ok("agent", "create", "101", "--name", "Anna")
    assert await cli.fails("agent", "create", "101", "--name", "B") == (
        "error: an agent with number 101 exists already"
    )
    await cli.fails("agent", "create", "103", code=2)  # --name missing
    await cli.fails("agent", "update", "101", code=2)  # nothing to change
    await cli.fails("agent", "frobnicate", code=2)


async def test_members(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("line", "create", "500", "--name", "A", "--strategy", "linear")
    for number in ("101", "102", "103"):
        await cli.ok("agent", "create", number, "--name", f"Agent {number}")
    await cli.ok("member", "add", "500", "101")
    await cli.ok("member", "add", "500", "102")
    await cli.ok("member", "add", "500", "103", "--position", "0")
    members = await cli.json("member", "list", "500")
    assert [(m["agent"], m["position"]) for m in members] == [("103", 0), ("101", 1), ("102", 2)]
    table = (await cli.ok("member", "list", "500")).stdout.splitlines()
    assert table[0].split() == ["POSITION", "AGENT", "NAME"]
    assert "is a member of hotline 500 already" in await cli.fails("member", "add", "500", "101")
    await cli.ok("member", "remove", "500", "101")
    assert [m["agent"] for m in await cli.json("member", "list", "500")] == ["103", "102"]
    assert "is not a member" in await cli.fails("member", "remove", "500", "101")
    assert await cli.fails("member", "add", "999", "101") == "error: no hotline with number 999"
    assert await cli.fails("member", "add", "500", "999") == "error: no agent with number 999"
    assert await cli.fails("member", "list", "999") == "error: no hotline with number 999"
    await cli.fails("member", "add", "500", "102", "--position", "-1", code=2)
    assert (await cli.json("line", "show", "500"))["members"] == 2
    async with sessions() as session:
        actions = [e.action for e in await session.scalars(select(AuditEntry))]
    assert actions.count("member_add") == 3 and actions.count("member_remove") == 1


async def test_pin_min_length_comes_from_the_settings(cli: Cli) -> None:
    longer = {"HOTLINE_PIN_MIN_LENGTH": "8"}
    args = ("agent", "create", "150", "--name", "Lena", "--pin-stdin")
    refused = await cli(*args, input=f"{PIN}\n", env=longer)
    assert refused.exit_code == 1 and "PIN" in refused.stderr, refused.stderr
    await cli.ok(*args, input="48015937\n", env=longer)
