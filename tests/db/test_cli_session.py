"""`hotline login`, `hotline logout` and `hotline audit` against the real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentLogin, AgentState, AuditEntry, TargetKind

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def cli(sessions: Sessions, database_url: str) -> Cli:
    cli = Cli(database_url)
    await cli.ok("line", "create", "500", "--name", "Bürgerbüro", "--min-agents", "1")
    await cli.ok("line", "create", "510", "--name", "Bauamt")
    await cli.ok(
        "agent", "create", "101", "--name", "Anna", "--device", "PJSIP/1001",
        "--external", "+4915111",
    )  # fmt: skip
    await cli.ok("agent", "create", "102", "--name", "Ben")
    for hotline in ("500", "510"):
        await cli.ok("member", "add", hotline, "101")
    await cli.ok("member", "add", "500", "102")
    return cli


async def _logins(sessions: Sessions) -> list[tuple[int, int]]:
    async with sessions() as session:
        rows = await session.execute(
            select(AgentLogin.agent_id, AgentLogin.hotline_id).order_by(
                AgentLogin.agent_id, AgentLogin.hotline_id
            )
        )
        return [(a, h) for a, h in rows]


async def test_login_logout_audited_as_cli(cli: Cli, sessions: Sessions) -> None:
    result = await cli.ok("login", "101", "500")
    assert result.stdout.strip() == "agent 101 logged in to 500 (calls go to PJSIP/1001)"
    assert await _logins(sessions) == [(1, 1)]
    await cli.ok("login", "101")
    assert await _logins(sessions) == [(1, 1), (1, 2)]
    result = await cli.ok("logout", "101", "510")
    assert "logged out of 510" in result.stdout and result.stderr == ""
    # Going below min_agents is allowed for a supervisor, with a warning.
    result = await cli.ok("logout", "101")
    assert result.stdout.strip() == "agent 101 logged out of 500"
    assert "warning: hotline 500 now has fewer than 1 available agent(s)" in result.stderr
    assert await _logins(sessions) == []
    async with sessions() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.in_(["login", "logout"]))
                .order_by(AuditEntry.id)
            )
        )
    assert [(e.action, e.hotline_id) for e in entries] == [
        ("login", 1),
        ("login", 1),
        ("login", 2),
        ("logout", 2),
        ("logout", 1),
        ("logout", 2),  # agents.logout audits every member hotline when logging out of all
    ]
    assert {e.path for e in entries} == {"cli"}
    assert all(e.actor.startswith("cli:") for e in entries)


async def test_login_external_number(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("login", "101", "500", "--external", "+49 151 11")
    async with sessions() as session:
        state = await session.get(AgentState, 1)
        assert state is not None
        assert (state.target, state.target_kind) == ("+4915111", TargetKind.EXTERNAL)
    assert "is not an external number of agent 101" in await cli.fails(
        "login", "101", "--external", "+4930999"
    )


async def test_login_errors(cli: Cli) -> None:
    assert await cli.fails("login", "999") == "error: no agent with number 999"
    assert await cli.fails("login", "101", "999") == "error: no hotline with number 999"
    await cli.ok("line", "create", "520", "--name", "Ordnungsamt")
    assert await cli.fails("login", "101", "520") == (
        "error: agent 101 is not a member of hotline 520"
    )
    assert "has no device" in await cli.fails("login", "102")
    assert await cli.fails("logout", "101", "999") == "error: no hotline with number 999"
    await cli.fails("login", code=2)


async def test_audit_listing_filters(cli: Cli, sessions: Sessions) -> None:
    await cli.ok("login", "101", "500")
    await cli.ok("agent", "number", "add", "102", "+4930222")
    await cli.ok("login", "102", "500", "--external", "+4930222")
    rows = await cli.json("audit", "--agent", "101")
    assert [r["action"] for r in rows][-1] == "login"
    assert {r["agent"] for r in rows} == {"101"}
    assert {r["path"] for r in rows} == {"cli"}
    by_hotline = await cli.json("audit", "--hotline", "510")
    assert [r["action"] for r in by_hotline] == ["hotline_create", "member_add"]
    newest = await cli.json("audit", "--limit", "2")
    assert [r["action"] for r in newest] == ["agent_number_add", "login"]
    # Older rows fall out of --since.
    async with sessions() as session, session.begin():
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.action != "login")
            .values(at=datetime.now(UTC) - timedelta(days=10))
        )
    assert {r["action"] for r in await cli.json("audit", "--since", "7d")} == {"login"}
    since_date = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    assert len(await cli.json("audit", "--since", since_date)) == len(await cli.json("audit"))
    table = (await cli.ok("audit", "--agent", "102")).stdout.splitlines()
    assert table[0].split() == ["AT", "ACTOR", "ACTION", "PATH", "AGENT", "HOTLINE", "DETAIL"]
    assert "target_kind=external" in table[-1]
    assert await cli.fails("audit", "--agent", "999") == "error: no agent with number 999"
    assert "--since: duration" in await cli.fails("audit", "--since", "yesterday")
    assert "no audit entries" in (await cli.ok("audit", "--since", "2099-01-01")).stderr
