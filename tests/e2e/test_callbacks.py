"""Callbacks that keep the caller's place, end to end (issue 15, done-when 1 and 2).

Hotline 500 with one agent (phone 1001, not available at first) offers a callback after
2 s in the queue. Callers wait; the second presses 1 (RFC 2833), hears the confirmation
and is hung up. When the agent becomes available the queue is served in entry order: the
callback in its place, the agent rung first, then the citizen's phone (the trunk's far
end) rings showing the hotline's number and is bridged to the agent. Nobody is dialled
twice. The second test SIGKILLs the app while the callback is pending.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from ari_app.db.models import Call, Callback, CallStatus, Outcome
from ari_app.services import admin, agents
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import AriObserver, ServeProcess
from .hotline_world import (
    HOTLINE,
    SeededAgent,
    Sessions,
    calls_in_db,
    seed_hotline,
    trunk_call,
    wait_until,
)

pytestmark = pytest.mark.e2e

CALLBACK = {
    "callback_after_s": 2,
    "callback_attempts": 2,
    "callback_interval_s": 5,
    "max_wait_s": 120,
    "ring_timeout_s": 5,
}
# Each conversation lasts 6.5 s from the agent's answer: the callback's agent hears
# "callback for 500" (about 4 s) before the citizen is dialled and bridged.
AGENT = {"ring": 0.2, "hangup_after": 6.5}


def _number(i: int) -> str:
    return f"03010{i}"


async def _set_paused(sessions: Sessions, agent_number: str, paused: bool) -> None:
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, agent_number)
        await agents.set_paused(
            session, agent, paused, path="cli", actor="test", enforce_staffing=False
        )


async def _hotline_with_a_busy_agent(
    pbx: PrivateAsterisk, sessions: Sessions, sipp_dir: Path
) -> tuple[SeededAgent, SippPhone]:
    """Hotline 500 offering callbacks, its one agent logged in but not available yet; and
    the citizen's phone behind the trunk (answers after 0.5 s, waits for the hang-up)."""
    (seeded,) = await seed_hotline(sessions, devices=("1001",), **CALLBACK)
    await _set_paused(sessions, seeded.number, True)
    citizen = SippPhone(pbx.trunk_far_address, pbx.trunk_far_port, sipp_dir, user="citizen")
    return seeded, citizen


async def _queued(sessions: Sessions, count: int) -> list[Call]:
    async def check() -> list[Call] | None:
        rows = await calls_in_db(sessions)
        return rows if len(rows) == count and rows[-1].status is CallStatus.WAITING else None

    found: list[Call] = await wait_until(check, 15, f"{count} call(s), the last waiting")
    return found


async def _callback_requested(sessions: Sessions, caller: sipp.SippCall) -> Callback:
    async def check() -> Callback | None:
        async with sessions() as session:
            return await session.scalar(select(Callback))

    row: Callback = await wait_until(check, 15, "a callback requested")
    result = await caller.wait()  # confirmed, then hung up by the hotline
    assert result.final_status == 200 and result.got_bye(), result.describe()
    return row


async def _three_wait_and_the_second_asks(
    pbx: PrivateAsterisk, sessions: Sessions, sipp_dir: Path, callers: list[sipp.SippCall]
) -> list[Call]:
    """Callers 1 to 3 wait in turn; the second presses 1 once offered, and is hung up after
    the confirmation. Their calls, in entry order."""
    for i in (1, 2, 3):
        press = {"dtmf": "1", "dtmf_delay": 4, "bye_timeout": 30} if i == 2 else {}
        callers.append(
            await trunk_call(pbx, sipp_dir, caller_id=_number(i), **{"bye_timeout": 90, **press})
        )
        rows = await _queued(sessions, i)
    await _callback_requested(sessions, callers[1])
    return rows


def _from_user(message: sipp.SipMessage) -> str:
    return (message.header("From") or "").split("sip:", 1)[1].split("@", 1)[0]


async def _wait_callers(callers: list[sipp.SippCall]) -> None:
    results = await asyncio.wait_for(asyncio.gather(*(c.wait() for c in callers)), 90)
    for result in results:
        assert result.final_status == 200 and result.got_bye(), result.describe()


def _assert_served_in_entry_order(
    agent: SippPhone, citizen: SippPhone, order: list[str], callback_number: str
) -> None:
    invites = agent.invites()
    assert [_from_user(m) for m in invites] == order, [m.header("From") for m in invites]
    # Nobody dialled twice: the citizen's phone rang once, after the agent's, showing the
    # hotline's number.
    (citizen_invite,) = citizen.invites()
    assert callback_number in (citizen_invite.request_uri or "")
    assert _from_user(citizen_invite) == HOTLINE, citizen_invite.header("From")
    agent_invite = invites[order.index(callback_number)]
    assert agent_invite.timestamp <= citizen_invite.timestamp
    assert [m for m in citizen.sent(200) if m.cseq_method == "INVITE"]


async def _assert_records(sessions: Sessions, callback_call: Call, callers: int) -> Callback:
    async def done() -> list[Call] | None:
        rows = await calls_in_db(sessions)
        return rows if all(r.outcome is not None for r in rows) else None

    rows = await wait_until(done, 15, "every call with an outcome")
    assert len(rows) == callers
    assert [r.outcome for r in rows] == [Outcome.ANSWERED] * callers
    served = sorted(rows, key=lambda r: r.answered_at or r.entered_at)
    assert [r.id for r in served] == [r.id for r in rows], "served in entry order"
    async with sessions() as session:
        row = await session.scalar(select(Callback))
    assert row is not None and row.call_id == callback_call.id
    assert (row.state, row.attempts, row.number) == ("completed", 1, callback_call.caller_number)
    return row


async def test_callback_keeps_the_place_between_live_callers(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    seeded, citizen = await _hotline_with_a_busy_agent(pbx, sessions, sipp_dir)
    callers: list[sipp.SippCall] = []
    try:
        async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, **AGENT) as agent, citizen:
            await _three_wait_and_the_second_asks(pbx, sessions, sipp_dir, callers)
            callers.append(await trunk_call(pbx, sipp_dir, caller_id=_number(4), bye_timeout=90))
            rows = await _queued(sessions, 4)
            assert rows[1].status is CallStatus.CALLBACK
            await _set_paused(sessions, seeded.number, False)
            await _wait_callers([callers[0], callers[2], callers[3]])
            await citizen.wait_for_message(method="BYE", timeout=15)
    finally:
        for caller in callers:
            await caller.stop()

    _assert_served_in_entry_order(agent, citizen, [_number(i) for i in (1, 2, 3, 4)], _number(2))
    row = await _assert_records(sessions, rows[1], 4)
    # The citizen's callback leg was bridged to the agent's.
    async with sessions() as session:
        call = await session.get(Call, rows[1].id)
    assert call is not None and call.bridge_id is not None and call.agent_id == seeded.id
    entered = {
        e["channel"]["id"]
        for e in observer.events
        if e.get("type") == "ChannelEnteredBridge" and e["bridge"]["id"] == call.bridge_id
    }
    assert entered == {f"{call.id}-cb1-a{seeded.id}", f"{call.id}-cb1-c"}, entered
    assert row.agent_id == seeded.id


async def test_pending_callback_survives_sigkill_in_its_place(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    seeded, citizen = await _hotline_with_a_busy_agent(pbx, sessions, sipp_dir)
    callers: list[sipp.SippCall] = []
    try:
        async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, **AGENT) as agent, citizen:
            rows = await _three_wait_and_the_second_asks(pbx, sessions, sipp_dir, callers)
            await serve.stop(signal.SIGKILL)
            await serve.start()
            await _set_paused(sessions, seeded.number, False)
            await _wait_callers([callers[0], callers[2]])
            await citizen.wait_for_message(method="BYE", timeout=15)
    finally:
        for caller in callers:
            await caller.stop()

    _assert_served_in_entry_order(agent, citizen, [_number(i) for i in (1, 2, 3)], _number(2))
    await _assert_records(sessions, rows[1], 3)
    assert "reconciled: 2 waiting and 0 bridged call(s) adopted" in serve.log()
