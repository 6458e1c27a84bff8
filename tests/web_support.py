"""Helpers shared by the panel tests (tests/db/test_web_*.py, tests/e2e/test_panel_browser.py):
a small team in Postgres, agent state changes through the services, an SSE reader."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentState, Call, CallStatus, Hotline
from ari_app.services import admin, agents, calls, routing

Sessions = async_sessionmaker[AsyncSession]

TEAM = (("1001", "Anna Adler"), ("1002", "Ben Brandt"), ("1003", "Clara Christ"))


@dataclass
class Team:
    hotline: Hotline
    agent_ids: dict[str, int]


async def seed_team(sessions: Sessions, *, logged_in: tuple[str, ...] = ("1001", "1002")) -> Team:
    """Hotline 500 with three members; `logged_in` of them logged in on their desk phone."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro", wrapup_s=0)
        ids = {}
        for number, name in TEAM:
            agent = await admin.create_agent(session, number, name, device=f"PJSIP/{number}")
            await admin.add_member(session, hotline, agent)
            if number in logged_in:
                await agents.login(session, agent, target=None, path="cli", actor="test")
            ids[number] = agent.id
    return Team(hotline, ids)


async def set_state(sessions: Sessions, agent_id: int, **values: Any) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(AgentState).where(AgentState.agent_id == agent_id).values(**values)
        )


async def set_paused(sessions: Sessions, number: str, paused: bool) -> None:
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, number)
        await agents.set_paused(
            session, agent, paused, path="cli", actor="test", enforce_staffing=False
        )


async def waiting_call(
    sessions: Sessions,
    hotline: Hotline,
    *,
    caller: str = "+4930555000",
    waited_s: float = 0,
    channel_id: str | None = None,
    node: str = "test",
) -> uuid.UUID:
    """A caller in the hotline's queue, as the inbound flow leaves it."""
    async with sessions() as session, session.begin():
        call = await calls.open_call(
            session,
            channel_id=channel_id or f"chan-{uuid.uuid4().hex[:8]}",
            dialled=hotline.number,
            caller_number=caller,
            hotline_id=hotline.id,
            node=node,
            status=CallStatus.WAITING,
        )
        await calls.log_event(session, call.id, "ENTERQUEUE", caller=caller)
        if waited_s:
            await calls.mark(
                session, call.id, entered_at=datetime.now(UTC) - timedelta(seconds=waited_s)
            )
    return call.id


async def connect_call(sessions: Sessions, hotline: Hotline, call_id: uuid.UUID) -> int:
    """Reserve an agent for the waiting call and bridge it (the agent is now on a call)."""
    async with sessions() as session, session.begin():
        call = await session.get(Call, call_id)
        assert call is not None
        offers = await routing.reserve_agents(
            session,
            call_id=call_id,
            hotline=hotline,
            queue_seq=call.queue_seq,
            tried=set(),
            node="test",
            now=datetime.now(UTC),
        )
        assert offers, "an agent is free"
        agent_id = offers[0].agent_id
        for other in offers[1:]:  # ring_all: the others stop ringing
            await routing.release_agent(
                session, agent_id=other.agent_id, call_id=call_id, unanswered=False, limit=0
            )
        await routing.agent_connected(session, agent_id=agent_id, call_id=call_id)
        await calls.mark(session, call_id, status=CallStatus.BRIDGED, answered_at=datetime.now(UTC))
    return agent_id


async def finish_call(sessions: Sessions, agent_id: int, call_id: uuid.UUID) -> None:
    async with sessions() as session, session.begin():
        await routing.agent_finished(
            session, agent_id=agent_id, call_id=call_id, wrapup_s=0, now=datetime.now(UTC)
        )
        await calls.mark(session, call_id, status=CallStatus.ENDED, ended_at=datetime.now(UTC))


class SseReader:
    """Reads `event:`/`data:` blocks from a text/event-stream response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0
        self.retry_ms: int | None = None

    async def next(self, timeout: float) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            event, data = "message", []
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        return event, json.loads("\n".join(data))
                    event = "message"
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self.comments += 1
                elif field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry_ms = int(value)

        return await asyncio.wait_for(read(), timeout)

    async def wait_for(
        self, event: str, predicate: Callable[[Any], bool], timeout: float
    ) -> tuple[Any, float]:
        """The first `event` whose payload satisfies `predicate`, and how long it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching {event!r} event within {timeout}s")
            name, data = await self.next(left)
            if name == event and predicate(data):
                return data, time.monotonic() - start


def presence_of(agents_payload: dict[str, Any], number: str) -> str:
    return next(a["presence"] for a in agents_payload["agents"] if a["agent"] == number)
