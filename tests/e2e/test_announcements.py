"""Position announcements never cost a caller the agent (the product's "no dropped caller").

A waiting caller hears its position and estimated wait as a prompt of several items
("there are | 1 | calls waiting | the estimated hold time is | 61 | minutes"). An agent who
answers while it plays must be bridged. On Asterisk 16.28 the stop of ONE playback of a
media list, sent while a `number:` item speaks, was ignored: the list played on, the
bridge request waited behind it on the caller's control queue, and the call failed after
the ARI timeout (5 s): 10-12 of 100 callers in the cluster test (tests/e2e/test_cluster.py)
with announcements every 3 s.

Here every round makes that moment on purpose: two callers wait (both agents in a long
wrap-up); when the second caller's position number starts speaking (the observer's
PlaybackStarted of a `number:` item), both agents are freed and the app is woken as a
phone going idle wakes it (NOTIFY). Agents answer at once; every caller must be bridged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from ari_app.db.models import AgentActivity, AgentState, Call, CallStatus, Hotline, Outcome
from ari_app.services.device_states import AGENTS_CHANNEL
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import AriObserver, ServeProcess
from .hotline_world import Sessions, ended_calls, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

ROUNDS = 3
TALK_S = 2.0  # agents hang up this long after answering
WRAPUP_S = 3600  # agents stay busy after each call until the test frees them


async def _seed_history(sessions: Sessions) -> None:
    """Five answered calls of the last hour: enough for an estimated wait (MIN_SAMPLES),
    so the announcement goes on for seconds after the position's number."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        hotline_id = await session.scalar(select(Hotline.id))
        for i in range(5):
            session.add(
                Call(
                    hotline_id=hotline_id,
                    dialled_number="500",
                    channel_id=f"history-{i}",
                    node="history",
                    status=CallStatus.ENDED,
                    answered_at=now - timedelta(minutes=50),
                    ended_at=now - timedelta(minutes=49),
                    outcome=Outcome.ANSWERED,
                )
            )


async def _agents_busy(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(AgentState).values(
                activity=AgentActivity.WRAPUP,
                wrapup_until=datetime.now(UTC) + timedelta(seconds=WRAPUP_S),
            )
        )


async def _agents_free(sessions: Sessions) -> None:
    """Wrap-up over for everyone, announced as a phone gone idle announces it."""
    async with sessions() as session, session.begin():
        await session.execute(update(AgentState).values(wrapup_until=func.now()))
        notify = text("SELECT pg_notify(:channel, 'test')")
        await session.execute(notify, {"channel": AGENTS_CHANNEL})


async def _waiting_channel(sessions: Sessions, caller: str) -> str:
    async def check() -> str | None:
        async with sessions() as session:
            return await session.scalar(
                select(Call.channel_id).where(
                    Call.caller_number == caller, Call.status == CallStatus.WAITING
                )
            )

    channel: str = await wait_until(check, 10, f"caller {caller} waiting")
    return channel


def _speaks_number(channel_id: str) -> Any:
    def check(e: dict[str, Any]) -> bool:
        playback = e["playback"]
        return bool(
            playback["target_uri"] == f"channel:{channel_id}"
            and playback["media_uri"].startswith("number:")
        )

    return check


async def test_agent_answering_during_a_position_announcement_gets_the_caller(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    sessions: Sessions,
    sipp_dir: Path,
    observer: AriObserver,
) -> None:
    await seed_hotline(
        sessions,
        strategy="linear",  # one agent per caller
        announce_frequency_s=1,
        wrapup_s=WRAPUP_S,
        ring_timeout_s=10,
        max_wait_s=120,
    )
    await _seed_history(sessions)
    await _agents_busy(sessions)
    agents = [
        SippPhone.for_phone(pbx.phone(p), sipp_dir, ring=0.0, hangup_after=TALK_S, audio=False)
        for p in ("1001", "1002")
    ]
    for phone in agents:
        await phone.start()
    try:
        for n in range(ROUNDS):
            first, second = f"03010{n}001", f"03010{n}002"
            head = await trunk_call(pbx, sipp_dir, caller_id=first, name=f"head{n}")
            async with head:
                await _waiting_channel(sessions, first)  # in the queue before the second
                behind = await trunk_call(pbx, sipp_dir, caller_id=second, name=f"behind{n}")
                async with behind:
                    channel = await _waiting_channel(sessions, second)
                    # "there are | 1 | calls waiting | ...": the 1 is speaking now
                    await observer.wait_for("PlaybackStarted", _speaks_number(channel), 15)
                    await _agents_free(sessions)
                    results = [await head.wait(), await behind.wait()]
            for result in results:
                assert result.final_status == 200 and result.got_bye(), result.describe()
            rows = await ended_calls(sessions, 5 + 2 * (n + 1), timeout=20)
            served = {
                r.caller_number: (r.outcome, r.agent_id is not None)
                for r in rows
                if r.caller_number in (first, second)
            }
            assert served == {
                first: (Outcome.ANSWERED, True),
                second: (Outcome.ANSWERED, True),
            }, f"round {n}: a caller was not bridged: {served}"
            await _agents_busy(sessions)  # (they are in wrap-up already; made sure)
    finally:
        for phone in agents:
            await phone.stop()
    answered = [m for phone in agents for m in phone.sent(200) if m.cseq_method == "INVITE"]
    assert len(answered) == 2 * ROUNDS, "each caller rang one agent, once"
