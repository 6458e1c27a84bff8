"""The ARI link lost, and what the app makes of it.

- Silently blackholed: a TCP proxy the test controls sits between `hotline serve` and
  Asterisk's HTTP port and stops forwarding (sockets stay open, bytes vanish), as a stateful
  firewall or a NAT that lost its entry would. The app must notice within 10 s (WebSocket
  heartbeat), reconnect once the path works again, reconcile what it missed (a caller who
  hung up meanwhile) and then handle the next call.
- Asterisk restarted mid-call: every call of the old Asterisk is closed in the records and
  every agent is free again (no one left "ringing" or "on a call"), then calls go on."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from ari_app.db.models import AgentActivity, AgentState, Outcome
from devenv.asterisk import SIP_ADDRESS, PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .conftest import PbxFactory
from .hotline_world import Sessions, calls_in_db, ended_calls, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

DETECT_WITHIN_S = 10.0
RECONNECT_WITHIN_S = 4.0  # after the path works again: backoff (0.5-1 s) + handshake


class _Pair:
    """One proxied connection: client (the app) <-> upstream (Asterisk)."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.dead = False  # partitioned: bytes are read and dropped, sockets stay open
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.close()
        for task in self.tasks:
            task.cancel()


class BlackholeProxy:
    """A TCP proxy to Asterisk's HTTP/ARI port. `partition()` silently drops every byte of
    the current connections (and of new ones) without closing anything; `heal()` lets new
    connections through again (the partitioned ones stay dead, as after a real outage)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.partitioned = False
        self.pairs: list[_Pair] = []
        self.dropped_bytes = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{SIP_ADDRESS}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, SIP_ADDRESS, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(SIP_ADDRESS, self.upstream_port)
        except OSError:
            writer.close()
            return
        pair = _Pair(writer, up_writer)
        pair.dead = self.partitioned
        self.pairs.append(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(pair, reader, up_writer)),
            asyncio.create_task(self._pump(pair, up_reader, writer)),
        ]

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if pair.dead:
                    self.dropped_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
            # EOF: a live pair passes the close on; a dead one keeps the other side open
            # (nothing crosses a partition, not even a FIN).
            if not pair.dead:
                writer.close()

    def partition(self) -> None:
        self.partitioned = True
        for pair in self.pairs:
            pair.dead = True

    def heal(self) -> None:
        self.partitioned = False

    def close_dead(self) -> None:
        """The far side finally notices: drop the partitioned connections for good."""
        for pair in [p for p in self.pairs if p.dead]:
            pair.close()
            self.pairs.remove(pair)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self.pairs:
            pair.close()
        self.pairs.clear()
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture
async def proxy(pbx: PrivateAsterisk) -> Callable[[], Awaitable[BlackholeProxy]]:
    started: list[BlackholeProxy] = []

    async def factory() -> BlackholeProxy:
        instance = BlackholeProxy(pbx.http_port)
        await instance.start()
        started.append(instance)
        return instance

    try:
        yield factory  # type: ignore[misc]
    finally:
        for instance in started:
            await instance.stop()


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


async def _app_registered(pbx: PrivateAsterisk) -> bool:
    """Asterisk lists our Stasis application (asked directly, not through the proxy)."""
    async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
        url = f"{pbx.ari_url}/ari/applications/{pbx.app_name}"
        async with http.get(url, timeout=aiohttp.ClientTimeout(2)) as resp:
            return resp.status == 200


async def _hang_up_directly(pbx: PrivateAsterisk, channel_id: str) -> None:
    async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
        url = f"{pbx.ari_url}/ari/channels/{channel_id}"
        async with http.delete(url, timeout=aiohttp.ClientTimeout(5)) as resp:
            assert resp.status in (204, 404), resp.status


async def test_blackholed_link_is_detected_reconnected_and_reconciled(
    pbx: PrivateAsterisk,
    proxy: Callable[[], Awaitable[BlackholeProxy]],
    serve_factory: Callable[..., Awaitable[ServeProcess]],
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    link = await proxy()
    seeded = await seed_hotline(sessions, devices=("1001",), ring_timeout_s=60, max_wait_s=120)
    serve = await serve_factory(pbx, HOTLINE_ARI_URL=link.url)
    # Asterisk lists the app (what serve_factory waits for) as soon as the WebSocket is up,
    # a moment before the app logs its connect (seen on a loaded machine with Asterisk 22).
    await wait_until(
        lambda: _count(r"connected to ARI as app", serve.log()) == 1, 5, "the connect logged"
    )

    # A caller is ringing agent 1001 when the link goes dark.
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, mode="never") as agent:
        async with await trunk_call(pbx, sipp_dir, bye_timeout=60, name="gone") as caller:
            await agent.wait_for_invite(timeout=10)
            (row,) = await calls_in_db(sessions)
            link.partition()
            cut = time.monotonic()

            # Meanwhile the caller hangs up: the app cannot hear of it.
            await _hang_up_directly(pbx, row.channel_id)
            await caller.wait()

            await wait_until(
                lambda: "ARI events: disconnected" in serve.log(),
                DETECT_WITHIN_S + 2,
                "the dead link noticed",
            )
            detected = time.monotonic() - cut
            assert detected <= DETECT_WITHIN_S, f"dead link noticed only after {detected:.1f}s"
            assert link.dropped_bytes > 0, "the heartbeat's ping went into the void"

            # Back within the first retries: keep-alive connections from before the cut are
            # as dead as the WebSocket and must not be reused.
            link.heal()
            await wait_until(
                lambda: _count(r"connected to ARI as app", serve.log()) == 2,
                RECONNECT_WITHIN_S,
                "reconnected",
            )
            assert "reconciliation failed" not in serve.log()
            assert "reconnects=1" in serve.log()
            assert await _app_registered(pbx)

            # Reconciled: the vanished caller's record is closed, the agent's ringing leg is
            # cancelled and the agent is free again.
            (ended,) = await ended_calls(sessions, 1, timeout=10)
            assert ended.outcome is Outcome.ABANDONED and ended.answered_at is None
            await agent.wait_for_message(method="CANCEL", timeout=10)

    async def agent_free() -> bool:
        async with sessions() as session:
            state = await session.scalar(
                select(AgentState).where(AgentState.agent_id == seeded[0].id)
            )
        return state is not None and state.reserved_call_id is None

    await wait_until(agent_free, 10, "agent released")

    # The next caller is served by the reconnected app.
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3, hangup_after=1):
        result = await (await trunk_call(pbx, sipp_dir, bye_timeout=20, name="next")).wait()
    assert result.final_status == 200 and result.got_bye(), result.describe()
    rows = await ended_calls(sessions, 2)
    assert rows[1].outcome is Outcome.ANSWERED and rows[1].agent_id == seeded[0].id

    # Asterisk finally drops the stale connection: the app must still own its Stasis app.
    link.close_dead()
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3, hangup_after=1):
        result = await (await trunk_call(pbx, sipp_dir, bye_timeout=20, name="after")).wait()
    assert result.final_status == 200 and result.got_bye(), result.describe()
    rows = await ended_calls(sessions, 3)
    assert rows[2].outcome is Outcome.ANSWERED

    assert pbx.ari_password not in serve.log()
    assert await serve.stop() == 0


async def test_asterisk_restart_mid_call_closes_the_calls_and_frees_the_agents(
    pbx_factory: PbxFactory,
    serve_factory: Callable[..., Awaitable[ServeProcess]],
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    pbx = await pbx_factory()
    seeded = await seed_hotline(
        sessions, devices=("1001", "1002"), strategy="linear", ring_timeout_s=60
    )
    serve = await serve_factory(pbx)
    talking = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3)
    ringing = SippPhone.for_phone(pbx.phone("1002"), sipp_dir, mode="never")
    async with talking, ringing:
        first = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="bridged")
        async with first:
            await talking.wait_for_invite()

            async def bridged() -> bool:
                return any(r.answered_at is not None for r in await calls_in_db(sessions))

            await wait_until(bridged, 10, "first call bridged")
            second = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="ringing")
            async with second:
                await ringing.wait_for_invite()
                await pbx.restart()
        # Both calls died with the old Asterisk; the app reconnects to the new one.
        await wait_until(lambda: "reconnects=1" in serve.log(), 20, "reconnected")
        rows = await ended_calls(sessions, 2, timeout=10)
        assert sorted(r.outcome for r in rows) == sorted([Outcome.ANSWERED, Outcome.ABANDONED])

        async def agents_free() -> bool:
            async with sessions() as session:
                states = list(await session.scalars(select(AgentState)))
            return all(
                s.reserved_call_id is None
                and s.activity not in (AgentActivity.RINGING, AgentActivity.ON_CALL)
                for s in states
            )

        await wait_until(agents_free, 10, "agents neither ringing nor on a call")

        # The next caller is served by agent 1001 as usual.
        result = await (
            await trunk_call(pbx, sipp_dir, hangup_after=1, bye_timeout=20, name="next")
        ).wait()
    assert result.final_status == 200 and result.sent_bye(), result.describe()
    rows = await ended_calls(sessions, 3)
    assert rows[-1].outcome is Outcome.ANSWERED and rows[-1].agent_id == seeded[0].id
    assert pbx.ari_password not in serve.log()
