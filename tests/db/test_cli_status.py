"""`hotline status`: only the exposed presence values, callers waiting, longest wait."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentActivity, AgentState, Call, CallStatus
from ari_app.domain.presence import Presence
from ari_app.services.status import hotline_status

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
PRESENCES = {p.value for p in Presence}
INTERNAL_WORDS = re.compile(r"paused|pause|wrap|logged.?out|ringing|idle|reason", re.IGNORECASE)


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def _set(sessions: Sessions, agent_id: int, **values: object) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(AgentState).where(AgentState.agent_id == agent_id).values(**values)
        )


async def _scene(cli: Cli, sessions: Sessions) -> None:
    """Hotline 500 with six members in every internal state, two callers waiting."""
    await cli.ok("line", "create", "500", "--name", "Bürgerbüro")
    await cli.ok("line", "create", "510", "--name", "Bauamt")
    for i in range(1, 7):
        await cli.ok("agent", "create", f"10{i}", "--name", f"Agent {i}", "--device", f"PJSIP/{i}")
        await cli.ok("member", "add", "500", f"10{i}")
        if i != 5:
            await cli.ok("login", f"10{i}", "500")
    now = datetime.now(UTC)
    # 101 available; 102 on a call; 103 paused; 104 in wrap-up; 105 logged out but busy with
    # a private call; 106 in a wrap-up that is over (available, as routing sees it).
    await _set(sessions, 2, activity=AgentActivity.ON_CALL)
    await _set(sessions, 3, paused=True)
    await _set(sessions, 4, activity=AgentActivity.WRAPUP, wrapup_until=now + timedelta(minutes=1))
    await _set(sessions, 5, device_busy=True)
    await _set(sessions, 6, activity=AgentActivity.WRAPUP, wrapup_until=now - timedelta(seconds=1))
    async with sessions() as session, session.begin():
        for seconds, status in ((90, CallStatus.WAITING), (30, CallStatus.WAITING),
                                (600, CallStatus.BRIDGED)):  # fmt: skip
            session.add(
                Call(
                    hotline_id=1,
                    dialled_number="500",
                    channel_id=f"c{seconds}",
                    node="t",
                    caller_number="+4930555",
                    status=status,
                    entered_at=now - timedelta(seconds=seconds),
                )
            )


async def test_status_json_shows_only_exposed_presence(cli: Cli, sessions: Sessions) -> None:
    await _scene(cli, sessions)
    data = await cli.json("status")
    assert [h["hotline"] for h in data] == ["500", "510"]
    first = data[0]
    assert set(first) == {
        "hotline", "name", "agents_logged_in", "callers_waiting", "longest_wait_s",
    }  # fmt: skip
    # Only agents shown as available or on a call count: paused (103), wrap-up (104) and
    # logged out are all "not available" and all left out (issue 13, finding 8).
    assert first["agents_logged_in"] == {"available": 2, "on_call": 1}
    assert first["callers_waiting"] == 2
    assert 90 <= first["longest_wait_s"] < 120
    assert data[1]["agents_logged_in"] == {"available": 0, "on_call": 0}
    assert data[1]["callers_waiting"] == 0 and data[1]["longest_wait_s"] == 0

    with_agents = await cli.json("status", "500", "--agents")
    records = with_agents[0]["agents"]
    assert all(set(r) == {"agent", "name", "presence"} for r in records)
    assert {r["presence"] for r in records} <= PRESENCES
    assert [(r["agent"], r["presence"]) for r in records] == [
        ("101", "available"),
        ("102", "on_call"),
        ("103", "unavailable"),
        ("104", "unavailable"),
        ("105", "on_call"),
        ("106", "available"),
    ]
    assert not INTERNAL_WORDS.search(json.dumps(with_agents))


async def test_status_table_shows_only_exposed_presence(cli: Cli, sessions: Sessions) -> None:
    await _scene(cli, sessions)
    out = (await cli.ok("status", "--agents")).stdout
    lines = out.splitlines()
    assert lines[0].split() == [
        "HOTLINE", "NAME", "AVAILABLE", "ON_CALL", "WAITING", "LONGEST", "WAIT",
    ]  # fmt: skip
    assert lines[1].split()[:5] == ["500", "Bürgerbüro", "2", "1", "2"]
    assert re.fullmatch(r"1m3\ds", lines[1].split()[5])
    agent_rows = [line.split() for line in lines if line.startswith("500  ") and "Agent" in line]
    assert [row[-1] for row in agent_rows] == [
        "available", "on_call", "unavailable", "unavailable", "on_call", "available",
    ]  # fmt: skip
    assert not INTERNAL_WORDS.search(out)


async def test_status_service_matches_cli(cli: Cli, sessions: Sessions) -> None:
    await _scene(cli, sessions)
    async with sessions() as session:
        (status,) = await hotline_status(session, "500", with_agents=True)
    assert status.logged_in_total == 3
    assert (
        status.as_dict(with_agents=True)["agents"]
        == (await cli.json("status", "500", "--agents"))[0]["agents"]
    )


async def test_status_watch_and_errors(cli: Cli, sessions: Sessions) -> None:
    await _scene(cli, sessions)
    out = (await cli.ok("status", "500", "--watch", "--interval", "0s", "--count", "3")).stdout
    assert out.count("HOTLINE") == 3
    out = (
        await cli.ok("status", "500", "--watch", "--interval", "0", "--count", "2", "--json")
    ).stdout
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) == 2 and frames[0][0]["callers_waiting"] == 2
    assert await cli.fails("status", "999") == "error: no hotline with number 999"
    assert "--interval: duration" in await cli.fails("status", "--interval", "soon")
    await cli.fails("status", "--count", "0", "--watch", code=2)


async def test_status_without_hotlines(cli: Cli) -> None:
    text = (await cli.ok("status")).stdout.strip()
    assert text.startswith("nothing configured yet: no hotlines.")
    assert "hotline line create" in text and "hotline config apply" in text
    assert await cli.json("status") == []
