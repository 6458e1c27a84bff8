"""`hotline serve --workers 2`, one worker SIGKILLed while it has callers waiting and
bridged: the other worker adopts them within 5 s (every caller stays connected, the waiting
ones are served in their original order), and new calls go to the surviving worker through
the dialplan's rotation, never to the fallback."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ari_app.db.models import Call, CallStatus, Node, Outcome
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .hotline_world import Sessions, calls_in_db, ended_calls, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

OPEN = (CallStatus.NEW, CallStatus.WAITING, CallStatus.BRIDGED)


async def _apps(pbx: PrivateAsterisk) -> set[str]:
    async with (
        aiohttp.ClientSession(headers=pbx.ari_headers()) as http,
        http.get(f"{pbx.ari_url}/ari/applications") as resp,
    ):
        return {app["name"] for app in await resp.json()}


async def _nodes(sessions: Sessions) -> dict[str, int]:
    async with sessions() as session:
        return {n.name: n.pid for n in await session.scalars(select(Node))}


def _open_by_node(rows: list[Call]) -> dict[str, list[Call]]:
    by_node: dict[str, list[Call]] = {}
    for row in rows:
        if row.status in OPEN:
            by_node.setdefault(row.node, []).append(row)
    return by_node


async def test_sigkill_one_of_two_workers_a_sibling_adopts_its_calls(
    pbx: PrivateAsterisk, serve_factory: Any, sessions: Sessions, sipp_dir: Path
) -> None:
    await seed_hotline(sessions, devices=("1001", "1002"), strategy="longest_idle", max_wait_s=300)
    serve = await serve_factory(pbx, HOTLINE_WORKERS="2")
    # start() waited for worker 0's Stasis app; worker 1 registers "hotline-1"
    await wait_until(lambda: _has_both(pbx), 20, "Stasis apps hotline and hotline-1 registered")
    await wait_until(lambda: _two_nodes(sessions), 10, "both workers' heartbeats")

    agent_kw = {"ring": 0.2, "hangup_after": 8.0}
    first = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, **agent_kw)
    second = SippPhone.for_phone(pbx.phone("1002"), sipp_dir, **agent_kw)
    callers: list[sipp.SippCall] = []
    try:
        async with first, second:
            for i in range(2):
                callers.append(await trunk_call(pbx, sipp_dir, bye_timeout=120, name=f"c{i}"))
                await (first if i == 0 else second).wait_for_invite(timeout=10)

            async def bridged() -> list[Call]:
                rows = await calls_in_db(sessions)
                return [r for r in rows if r.status is CallStatus.BRIDGED]

            victim = (await wait_until(bridged, 15, "a bridged call"))[0].node
            # Callers queue behind the two conversations until the victim has two of them
            # waiting (the dialplan spreads them at random), at least four in all.
            for i in range(2, 26):
                callers.append(await trunk_call(pbx, sipp_dir, bye_timeout=120, name=f"c{i}"))

                async def queued() -> bool:
                    return len(await calls_in_db(sessions)) >= len(callers)

                await wait_until(queued, 10, f"caller {i} in the database")
                waiting = [r for r in await calls_in_db(sessions) if r.status is CallStatus.WAITING]
                if len(waiting) >= 4 and sum(r.node == victim for r in waiting) >= 2:
                    break
            rows = await calls_in_db(sessions)
            by_node = _open_by_node(rows)
            assert any(r.status is CallStatus.BRIDGED for r in by_node[victim]), by_node
            assert sum(r.status is CallStatus.WAITING for r in by_node[victim]) >= 2, by_node
            survivor = next(name for name in await _nodes(sessions) if name != victim)

            os.kill((await _nodes(sessions))[victim], signal.SIGKILL)
            killed_at = time.monotonic()

            async def adopted() -> bool:
                return victim not in _open_by_node(await calls_in_db(sessions))

            await wait_until(adopted, 5, "the victim's calls adopted by its sibling")
            assert time.monotonic() - killed_at <= 5.0
            assert f"adopting the calls of {victim}" in serve.log(), serve.log()[-3000:]

            # New calls while the victim is down: the dialplan's rotation skips its app.
            before = len(await calls_in_db(sessions))
            for i in range(2):
                callers.append(await trunk_call(pbx, sipp_dir, bye_timeout=120, name=f"n{i}"))

            async def new_calls() -> list[Call] | None:
                rows = await calls_in_db(sessions)
                return rows[before:] if len(rows) >= before + 2 else None

            fresh = await wait_until(new_calls, 10, "the new calls in the database")
            assert {r.node for r in fresh} == {survivor}, [(r.node, r.status) for r in fresh]

            results = await asyncio.wait_for(asyncio.gather(*(c.wait() for c in callers)), 150)
    finally:
        for caller in callers:
            await caller.stop()

    # Every caller was answered and connected to an agent: nobody reached the fallback.
    for result in results:
        assert result.final_status == 200 and result.got_bye(), result.describe()
    rows = await ended_calls(sessions, len(callers), timeout=20)
    assert [r.outcome for r in rows] == [Outcome.ANSWERED] * len(callers)
    waiting = rows[2:]  # by queue_seq, i.e. arrival order
    answered_order = sorted(waiting, key=lambda r: r.answered_at or r.entered_at)
    ranks = [waiting.index(r) for r in answered_order]
    # Two agents take two callers at a time: nobody is overtaken by more than one place.
    assert all(abs(rank - pos) <= 1 for pos, rank in enumerate(ranks)), ranks


async def _has_both(pbx: PrivateAsterisk) -> bool:
    return {"hotline", "hotline-1"} <= await _apps(pbx)


async def _two_nodes(sessions: Sessions) -> bool:
    return len(await _nodes(sessions)) == 2
