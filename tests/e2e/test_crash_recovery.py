"""`hotline serve` killed with SIGKILL while ten callers wait and two are bridged: after the
restart every caller is still connected, the waiting ones are served in their original
order, the bridged ones go on, the records are right at the end and nothing leaks."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from ari_app.db.models import Outcome
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .hotline_world import Sessions, calls_in_db, ended_calls, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

WAITING = 10


async def test_sigkill_and_restart_keeps_every_caller(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    seeded = await seed_hotline(
        sessions, devices=("1001", "1002"), strategy="longest_idle", max_wait_s=300
    )
    # Every call lasts 8 s (the agent hangs up): long enough for the kill and restart to
    # happen while the first two calls are bridged, also on a busy machine (the dialplan's
    # Answer() waits up to 500 ms for a silent caller's first frame before the app sees it).
    agent_kw = {"ring": 0.2, "hangup_after": 8.0}
    first = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, **agent_kw)
    second = SippPhone.for_phone(pbx.phone("1002"), sipp_dir, **agent_kw)
    callers: list[sipp.SippCall] = []
    try:
        async with first, second:
            for i in range(2):
                callers.append(await trunk_call(pbx, sipp_dir, bye_timeout=90, name=f"c{i}"))
                await (first if i == 0 else second).wait_for_invite(timeout=10)
            for i in range(2, 2 + WAITING):
                callers.append(await trunk_call(pbx, sipp_dir, bye_timeout=90, name=f"c{i}"))

            async def all_queued() -> bool:
                rows = await calls_in_db(sessions)
                return (
                    len(rows) == 2 + WAITING and sum(r.answered_at is not None for r in rows) == 2
                )

            await wait_until(all_queued, 15, "two calls bridged, ten callers queued")
            await serve.stop(signal.SIGKILL)
            await serve.start()
            results = await asyncio.wait_for(asyncio.gather(*(c.wait() for c in callers)), 90)
    finally:
        for caller in callers:
            await caller.stop()

    for result in results:
        assert result.final_status == 200 and result.got_bye(), result.describe()
    rows = await ended_calls(sessions, 2 + WAITING, timeout=15)
    assert [r.outcome for r in rows] == [Outcome.ANSWERED] * (2 + WAITING)
    assert {r.agent_id for r in rows} <= {a.id for a in seeded}
    waiting = rows[2:]  # by queue_seq, i.e. arrival order
    answered_order = sorted(waiting, key=lambda r: r.answered_at or r.entered_at)
    ranks = [waiting.index(r) for r in answered_order]
    # Two agents take two callers at a time: nobody is overtaken by more than one place.
    assert all(abs(rank - pos) <= 1 for pos, rank in enumerate(ranks)), ranks
    log = serve.log()
    assert "reconciled: 10 waiting and 2 bridged call(s) adopted" in log, log[-3000:]


async def test_a_call_killed_before_its_connection_was_written_stays_bridged(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    """The connection of an answered call goes to Postgres with the process's next
    statement (services/routing.py PendingWrites). Killed before that, the record says
    waiting with the agent reserved while Asterisk has the call's bridge: the restarted app
    finds the bridge by its name, keeps caller and agent together and stores the call as
    answered. (The record is set back to that state by hand while the app is dead: the
    kill itself cannot be timed into the half second.)"""
    await seed_hotline(sessions, devices=("1001",), max_wait_s=300)
    agent = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.2, hangup_after=8.0)
    caller: sipp.SippCall | None = None
    try:
        async with agent:
            caller = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="unwritten")

            async def bridged() -> bool:
                rows = await calls_in_db(sessions)
                return len(rows) == 1 and rows[0].answered_at is not None

            await wait_until(bridged, 15, "the call bridged and written")
            await serve.stop(signal.SIGKILL)
            async with sessions() as session, session.begin():
                for statement in (
                    "UPDATE calls SET status = 'waiting', answered_at = NULL, agent_id = NULL,"
                    " bridge_id = NULL",
                    "UPDATE agent_states SET activity = 'ringing'",
                    "DELETE FROM call_events WHERE event = 'CONNECT'",
                ):
                    await session.execute(text(statement))
            await serve.start()
            result = await asyncio.wait_for(caller.wait(), 60)
    finally:
        if caller is not None:
            await caller.stop()
    # The agent hung up after 8 s: the caller was with them until then, never requeued.
    assert result.final_status == 200 and result.got_bye(), result.describe()
    assert len(agent.invites()) == 1, "rung once: the caller never went back to the queue"
    (row,) = await ended_calls(sessions, 1, timeout=15)
    assert row.outcome is Outcome.ANSWERED and row.answered_at is not None
    assert row.agent_id is not None
    log = serve.log()
    assert "reconciled: 0 waiting and 1 bridged call(s) adopted" in log, log[-3000:]
