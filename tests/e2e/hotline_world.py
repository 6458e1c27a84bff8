"""Seeding and calling helpers for hotline e2e tests: a hotline 500 with agents bound to
the PBX's sipp phones, and citizens calling in over the trunk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Call, TargetKind
from ari_app.services import admin, agents
from devenv import sipp
from devenv.asterisk import PrivateAsterisk

Sessions = async_sessionmaker[AsyncSession]
HOTLINE = "500"
HOTLINE_NAME = "Buergerbuero"
CALLER = "030111222"

# Short timings so the tests run fast; each test overrides what it is about.
FAST = {
    "ring_timeout_s": 3,
    "retry_delay_s": 0,
    "wrapup_s": 0,
    "max_wait_s": 60,
    "announce_frequency_s": 0,
    "no_answer_limit": 0,
}


@dataclass(frozen=True)
class SeededAgent:
    id: int
    number: str
    device: str | None
    external: str | None


async def seed_hotline(
    sessions: Sessions,
    *,
    devices: tuple[str, ...] = ("1001", "1002"),
    externals: dict[int, str] | None = None,
    logged_in: bool = True,
    **settings: Any,
) -> list[SeededAgent]:
    """Hotline 500 with one agent per device (agent numbers 201, 202, ...), in that order.
    `externals` maps an agent index to an external number its login targets instead."""
    externals = externals or {}
    seeded = []
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, HOTLINE, HOTLINE_NAME, **{**FAST, **settings})
        for i, device in enumerate(devices):
            external = externals.get(i)
            agent = await admin.create_agent(
                session,
                f"2{i + 1:02d}",
                f"Agent {i + 1}",
                device=f"PJSIP/{device}",
                external_numbers=[external] if external else [],
            )
            await admin.add_member(session, hotline, agent)
            if logged_in:
                target = agents.Target(external, TargetKind.EXTERNAL) if external else None
                await agents.login(session, agent, target=target, path="cli", actor="test")
            seeded.append(SeededAgent(agent.id, agent.number, f"PJSIP/{device}", external))
    return seeded


def trunk_call(pbx: PrivateAsterisk, workdir: Path, **kwargs: Any) -> Any:
    """A citizen calling the hotline over the trunk (returns sipp.start_call's awaitable)."""
    options: dict[str, Any] = {
        "local_addr": pbx.trunk_in_address,
        "pbx_addr": pbx.sip_address,
        "workdir": workdir,
        "caller_id": CALLER,
        "audio": False,
        **kwargs,
    }
    number = options.pop("number", HOTLINE)
    return sipp.start_call(number, **options)


async def leave_voicemail(
    pbx: PrivateAsterisk, sessions: Sessions, workdir: Path, **settings: Any
) -> Any:
    """Hotline 500 whose only agent (phone 1001) never answers: after 4 s in the queue the
    caller gets the voicemail, speaks after the greeting (1 s + beep) from second 6 and
    presses # at second 10. Returns sipp's result for the caller."""
    await seed_hotline(
        sessions,
        devices=("1001",),
        max_wait_s=4,
        timeout_action="voicemail",
        voicemail_greeting="silence/1",
        **settings,
    )
    async with sipp.SippPhone.for_phone(pbx.phone("1001"), workdir, mode="never") as agent:
        call = await trunk_call(
            pbx, workdir, audio=True, audio_delay=6, dtmf="#", dtmf_delay=4, bye_timeout=15
        )
        async with call:
            await agent.wait_for_invite()
            await agent.wait_for_message(method="CANCEL", timeout=8)
            return await call.wait()


async def calls_in_db(sessions: Sessions) -> list[Call]:
    async with sessions() as session:
        return list(await session.scalars(select(Call).order_by(Call.queue_seq)))


async def wait_until(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll an (async or sync) check until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.1)


async def ended_calls(sessions: Sessions, count: int = 1, timeout: float = 15.0) -> list[Call]:
    async def check() -> list[Call] | None:
        rows = await calls_in_db(sessions)
        done = [c for c in rows if c.outcome is not None]
        return done if len(done) >= count else None

    result: list[Call] = await wait_until(check, timeout, f"{count} call(s) with an outcome")
    return result
