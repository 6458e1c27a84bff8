"""The cluster for real: Kamailio's dispatcher in front of two Asterisk nodes, a
`hotline serve` per node, one Postgres, one hotline whose five agents are shared.

Phase 1: HOTLINE_CLUSTER_CALLS callers (default 100, the issue's figure) come in
through Kamailio, spread over both nodes; every caller reaches an agent, no agent's phone
ever has two calls at once (from the phones' own SIP traces: INVITE..BYE/CANCEL intervals
per phone), and both nodes' panels show the same presence.
Phase 2: node1's Asterisk is killed (SIGKILL) during traffic; calls started after the
dispatcher's detection time (5 s) all reach an agent on node2; the calls lost on the dead
node are counted and reported; no agent stays busy afterwards.
Run with `-s` to see the figures.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, update

from ari_app.db.models import AgentState, Call, Hotline
from devenv import sipp
from devenv.cluster import Cluster
from devenv.sipp import CallResult, SippPhone

from .hotline_world import Sessions, wait_until

CALLS = int(os.environ.get("HOTLINE_CLUSTER_CALLS", "100"))
KILL_CALLS = int(os.environ.get("HOTLINE_CLUSTER_KILL_CALLS", "24"))
IN_FLIGHT = 8  # callers at once (5 agents: a short queue on the way)
AGENTS = 5
DETECTION_S = 5.0  # the dispatcher takes a dead node out within this
TALK_S = 2.5  # agents hang up this long after answering (under load the app may
# need over a second from the answer to the bridge; an agent gone by then is another test)
CALLER_ADDRESS = "127.0.0.50"


def busy_intervals(messages: list[Any]) -> list[tuple[float, float, str]]:
    """(start, end, call id) per call a phone got: from the initial INVITE received to the
    first BYE (either way) or CANCEL of that call; a call never ended counts to +inf."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for m in messages:
        if m.is_request and m.method == "INVITE" and m.direction == "received":
            if m.is_initial_invite():
                starts.setdefault(m.call_id, m.timestamp)
        elif m.is_request and m.method in ("BYE", "CANCEL"):
            ends.setdefault(m.call_id, m.timestamp)
    return sorted((t, ends.get(cid, float("inf")), cid) for cid, t in starts.items())


def overlaps(intervals: list[tuple[float, float, str]]) -> list[tuple[str, str]]:
    return [(a[2], b[2]) for a, b in itertools.pairwise(intervals) if b[0] < a[1]]


async def _panel(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.get(f"{url}/api/presence", timeout=aiohttp.ClientTimeout(5)) as resp:
        resp.raise_for_status()
        body = await resp.json()
    return {a["agent"]: a["presence"] for a in body["agents"]}


async def _run_calls(
    cluster: Cluster, workdir: Path, count: int, on_started: Any = None
) -> list[tuple[float, CallResult]]:
    """`count` callers through Kamailio, IN_FLIGHT at once, each waiting for the agent to
    hang up; returns (start time, result) per call."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    results: list[tuple[float, CallResult]] = []

    async def one(i: int) -> None:
        async with slots:
            started = time.monotonic()
            if on_started is not None:
                await on_started(i)
            result = await sipp.call(
                "500",
                local_addr=CALLER_ADDRESS,
                pbx_addr=cluster.kamailio.sip_address,
                workdir=workdir,
                caller_id=f"0301{i:04d}",
                audio=False,
                bye_timeout=30,  # a call lost with node1 waits this long
                answer_timeout=20,
                name=f"caller-{workdir.name}-{i}",
            )
            results.append((started, result))

    await asyncio.gather(*(one(i) for i in range(count)))
    return results


async def _no_agent_busy(sessions: Sessions) -> bool:
    async with sessions() as session:
        rows = (
            await session.execute(select(AgentState.device_busy, AgentState.reserved_call_id))
        ).all()
    return all(not busy and reserved is None for busy, reserved in rows)


async def test_cluster_spreads_calls_and_survives_a_dead_node(
    database_url: str, sessions: Sessions, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    async with Cluster(tmp_path / "cluster", n_agents=AGENTS, database_url=database_url) as cl:
        async with sessions() as session, session.begin():
            # No wrap-up: the agents take the next call at once (shorter test). Position
            # announcements every 3 s: agents answer while they play (when one was a single
            # ARI playback of a media list, 12 and 10 of 100 callers were dropped: its stop
            # was ignored while a number spoke; tests/e2e/test_announcements.py).
            await session.execute(update(Hotline).values(wrapup_s=0, announce_frequency_s=3))
        phones = [
            SippPhone.for_phone(p, tmp_path, ring=0.2, hangup_after=TALK_S, audio=False)
            for p in cl.phones[:AGENTS]
        ]
        try:
            for phone in phones:
                await phone.start()
            async with aiohttp.ClientSession() as http:
                # --- phase 1: calls spread over both nodes -----------------------------
                disagreements = 0
                samples = 0
                stop_sampling = asyncio.Event()

                async def sample() -> None:
                    nonlocal disagreements, samples
                    while not stop_sampling.is_set():
                        a, b = await asyncio.gather(*(_panel(http, x.panel_url) for x in cl.apps))
                        samples += 1
                        if a != b:  # read at two instants: may differ for a moment
                            disagreements += 1
                        await asyncio.sleep(0.5)

                sampler = asyncio.create_task(sample())
                p1 = time.monotonic()
                phase1 = await _run_calls(cl, tmp_path / "p1", CALLS)
                p1_s = time.monotonic() - p1
                stop_sampling.set()
                await sampler
                failed = [r.describe() for _, r in phase1 if not (r.ok and r.got_bye())]
                assert not failed, failed
                # The callers are gone; their rows are finished by the app a moment later.
                rows = await wait_until(
                    lambda: _ended_calls(sessions, CALLS), 15, "every call row ended"
                )
                unserved = [
                    (c.node, c.status, c.outcome, c.agent_id, c.answered_at)
                    for c in rows
                    if c.agent_id is None or c.answered_at is None
                ]
                assert not unserved, f"callers who never reached an agent: {unserved}"
                by_node = {n: sum(c.node == n for c in rows) for n in ("node1", "node2")}
                assert min(by_node.values()) > 0, f"calls not spread: {by_node}"
                answered_by_phones = 0
                for phone in phones:
                    intervals = busy_intervals(phone.received() + phone.sent())
                    answered_by_phones += len(phone.sent(200))
                    assert not overlaps(intervals), f"{phone.user} had two calls at once"
                # Both panels agree (read at one settled moment), and everyone is free.
                idle = {f"1{i:02d}": "available" for i in range(1, AGENTS + 1)}
                await wait_until(
                    lambda: _panels_are(http, cl, idle), 15, "both panels show all available"
                )
                print(
                    f"\ncluster phase 1: {CALLS} calls in {p1_s:.1f}s, by node {by_node},"
                    f" panel samples {samples} (differing at the sampling instant:"
                    f" {disagreements})"
                )

                # --- phase 2: node1's Asterisk dies during traffic ----------------------
                killed_at: list[float] = []
                dead = cl.pbxs[0]

                detected: list[float] = []
                watcher: list[asyncio.Task[None]] = []
                # Kamailio logs the moment it takes the node out (event_route dst-down).
                node1 = f"sip:{dead.sip_address[0]}:{dead.sip_address[1]}"

                def taken_out() -> bool:
                    return any(
                        "node down" in line and node1 in line
                        for line in cl.kamailio.output().splitlines()
                    )

                async def watch_down() -> None:
                    await wait_until(taken_out, 30, "node1 taken out")
                    detected.append(time.monotonic())

                async def maybe_kill(i: int) -> None:
                    if i == IN_FLIGHT and not killed_at and dead.pid is not None:
                        os.kill(dead.pid, signal.SIGKILL)
                        killed_at.append(time.monotonic())
                        watcher.append(asyncio.create_task(watch_down()))

                phase2 = await _run_calls(cl, tmp_path / "p2", KILL_CALLS, maybe_kill)
                assert killed_at, "node1 was not killed"
                kill = killed_at[0]
                await watcher[0]
                detected_s = detected[0] - kill
                assert detected_s <= DETECTION_S, f"node1 taken out after {detected_s:.1f}s"
                after = [r for t, r in phase2 if t >= kill + detected_s]
                before = [r for t, r in phase2 if t < kill + detected_s]
                lost = [r for r in before if not (r.ok and r.got_bye())]
                failed_after = [r.describe() for r in after if not (r.ok and r.got_bye())]
                assert after, "no call started after detection: raise HOTLINE_CLUSTER_KILL_CALLS"
                assert not failed_after, failed_after
                # No agent stays busy: the dead node's view goes stale, reservations free;
                # and no call stays open: node1's app closed the calls its Asterisk held.
                traffic_end = time.monotonic()
                await wait_until(lambda: _no_agent_busy(sessions), 60, "no agent busy")
                freed_s = time.monotonic() - traffic_end
                await wait_until(lambda: _no_call_open(sessions), 30, "every call row ended")
                await wait_until(
                    lambda: _panel_is(http, cl.apps[1].panel_url, idle), 15, "node2 panel idle"
                )
                print(
                    f"cluster phase 2: {KILL_CALLS} calls, node1 killed at call {IN_FLIGHT};"
                    f" {len(after)} started after detection all reached an agent;"
                    f" lost before detection: {len(lost)} of {len(before)};"
                    f" Kamailio took node1 out {detected_s:.1f}s after the kill;"
                    f" no agent busy {freed_s:.1f}s after the last call"
                )
        finally:
            for phone in phones:
                await phone.stop()
    print(f"cluster e2e took {time.monotonic() - t0:.1f}s")


async def _no_call_open(sessions: Sessions) -> bool:
    async with sessions() as session:
        open_calls = await session.scalar(
            select(func.count()).select_from(Call).where(Call.outcome.is_(None))
        )
    return open_calls == 0


async def _panel_is(http: aiohttp.ClientSession, url: str, expected: dict[str, str]) -> bool:
    return await _panel(http, url) == expected


async def _panels_are(http: aiohttp.ClientSession, cl: Cluster, expected: dict[str, str]) -> bool:
    panels = await asyncio.gather(*(_panel(http, a.panel_url) for a in cl.apps))
    return all(p == expected for p in panels)


async def _ended_calls(sessions: Sessions, count: int) -> list[Call] | None:
    async with sessions() as session:
        rows = list(await session.scalars(select(Call)))
    return rows if len(rows) == count and all(c.outcome is not None for c in rows) else None
