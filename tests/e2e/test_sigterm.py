"""Graceful shutdown of `hotline serve` (SIGTERM): no new call is taken (the dialplan
fallback answers them), calls in progress go on until their parties hang up, up to the
grace period; then the app ends what is left (a conversation as answered, a waiting caller
to the dialplan fallback, never dropped) and exits 0."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from ari_app.db.models import AgentState, Call, Outcome
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import HOTLINE, ServeProcess
from .hotline_world import HOTLINE as HOTLINE_NUMBER
from .hotline_world import Sessions, calls_in_db, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e


class GracefulServe(ServeProcess):
    """`hotline serve --grace <s>`; the harness's ServeProcess always uses 5 s."""

    def __init__(self, *args: object, grace: float, **env: str) -> None:
        super().__init__(*args, **env)  # type: ignore[arg-type]
        self.grace = grace

    async def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *HOTLINE,
                "serve",
                "--grace",
                str(self.grace),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        await self.wait_registered(timeout)

    def terminate(self) -> None:
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGTERM)

    async def exit_code(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"hotline serve still running after {timeout}s") from None


ServeWithGrace = Callable[[float], Awaitable[GracefulServe]]


@pytest.fixture
async def serve_with_grace(
    pbx: PrivateAsterisk, database_url: str, tmp_path: Path
) -> AsyncIterator[ServeWithGrace]:
    started: list[GracefulServe] = []

    async def factory(grace: float) -> GracefulServe:
        proc = GracefulServe(pbx, database_url, tmp_path / f"serve-{len(started)}.log", grace=grace)
        started.append(proc)
        await proc.start()
        return proc

    try:
        yield factory
    finally:
        for proc in started:
            await proc.stop()  # SIGTERM; killed (by PID) if it does not end


async def _answered(sessions: Sessions, count: int) -> None:
    async def check() -> bool:
        return sum(r.answered_at is not None for r in await calls_in_db(sessions)) >= count

    await wait_until(check, 10, f"{count} call(s) bridged")


def _fallbacks(pbx: PrivateAsterisk, offset: int) -> set[str]:
    """Channels the dialplan fallback took since `offset` (its warning in the Asterisk log)."""
    return set(
        re.findall(
            r"hotline: app \S+ unavailable - fallback on (\S+) flow=inbound"
            rf" number={HOTLINE_NUMBER}\b",
            pbx.log_text(offset),
        )
    )


async def test_sigterm_refuses_new_calls_and_lets_running_ones_finish(
    pbx: PrivateAsterisk,
    serve_with_grace: ServeWithGrace,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    seeded = await seed_hotline(sessions, devices=("1001", "1002"), strategy="linear")
    serve = await serve_with_grace(30)
    # Call 1: the caller hangs up; call 2: the agent hangs up. Both well after the SIGTERM.
    first_agent = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3)
    second_agent = SippPhone.for_phone(pbx.phone("1002"), sipp_dir, ring=0.3, hangup_after=10)
    async with first_agent, second_agent:
        first = await trunk_call(pbx, sipp_dir, hangup_after=12, bye_timeout=40, name="c1")
        async with first:
            await first_agent.wait_for_invite()
            await _answered(sessions, 1)
            second = await trunk_call(pbx, sipp_dir, bye_timeout=40, name="c2")
            async with second:
                await second_agent.wait_for_invite()
                await _answered(sessions, 2)

                serve.terminate()
                await wait_until(
                    lambda: "stopping: 2 call(s) in progress" in serve.log(), 5, "stopping"
                )
                # A new caller during the grace period: refused by the app, taken by the
                # dialplan fallback (answered, announcement, hung up).
                offset = pbx.log_offset()
                late = await (await trunk_call(pbx, sipp_dir, bye_timeout=20, name="late")).wait()
                assert late.final_status == 200 and late.got_bye(), late.describe()
                assert not late.sent_bye(), "the PBX ended the fallback call"
                assert len(_fallbacks(pbx, offset)) == 1, pbx.log_text(offset)[-2000:]
                assert "refused: shutting down" in serve.log()
                assert serve.proc is not None and serve.proc.returncode is None, (
                    "still serving the calls in progress"
                )

                results = await asyncio.gather(first.wait(), second.wait())
    ended = time.monotonic()
    code = await serve.exit_code(10)
    assert code == 0, serve.log()[-3000:]
    assert time.monotonic() - ended < 8, "exits once the calls are over, not at the grace end"

    c1, c2 = results
    assert c1.final_status == 200 and c1.sent_bye(), c1.describe()
    assert c2.final_status == 200 and c2.got_bye(), c2.describe()
    assert len(first_agent.invites()) == 1 and len(second_agent.invites()) == 1
    rows = await calls_in_db(sessions)
    assert len(rows) == 2, "the late caller never became a call of the app"
    assert [r.outcome for r in rows] == [Outcome.ANSWERED, Outcome.ANSWERED]
    assert [r.agent_id for r in rows] == [seeded[0].id, seeded[1].id]
    assert not re.search(r"flow=\w+ cancelled in", serve.log()), "no call was cut off"
    assert "Traceback" not in serve.log()
    assert pbx.ari_password not in serve.log()


async def test_grace_period_over_ends_the_call_and_hands_waiting_callers_to_the_fallback(
    pbx: PrivateAsterisk,
    serve_with_grace: ServeWithGrace,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    grace = 3.0
    seeded = await seed_hotline(sessions, devices=("1001",), max_wait_s=120)
    serve = await serve_with_grace(grace)
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3) as agent:
        talking = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="talking")
        async with talking:
            await agent.wait_for_invite()
            await _answered(sessions, 1)
            waiting = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="waiting")
            async with waiting:
                await wait_until(
                    lambda: serve.log().count("-[StasisStart]-> QUEUED") == 2, 10, "queued"
                )
                offset = pbx.log_offset()
                serve.terminate()
                stopped = time.monotonic()
                code = await serve.exit_code(grace + 10)
                took = time.monotonic() - stopped
                talked, waited = await asyncio.gather(talking.wait(), waiting.wait())
        await agent.wait_for_message(method="BYE", timeout=5)
    assert code == 0, serve.log()[-3000:]
    assert grace - 0.5 <= took <= grace + 6, took

    # The conversation was ended by the app, both sides, and counts as answered.
    assert talked.final_status == 200 and talked.got_bye(), talked.describe()
    # The waiting caller is not dropped: the dialplan fallback answers for the app.
    assert waited.final_status == 200 and waited.got_bye(), waited.describe()
    assert len(_fallbacks(pbx, offset)) == 1, pbx.log_text(offset)[-2000:]

    rows = await calls_in_db(sessions)
    assert [r.outcome for r in rows] == [Outcome.ANSWERED, Outcome.TIMEOUT]
    assert all(r.ended_at is not None for r in rows)
    async with sessions() as session:
        state = await session.scalar(select(AgentState).where(AgentState.agent_id == seeded[0].id))
        open_calls = list(await session.scalars(select(Call).where(Call.ended_at.is_(None))))
    assert state is not None and state.reserved_call_id is None, "agent released"
    assert not open_calls
