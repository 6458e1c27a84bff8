"""Hotline calls end to end: a citizen on the trunk, agents on sipp phones, the real app.

Each test asserts what the caller and the agents actually receive (SIP messages, RTP in
the bridge) and what the app recorded in Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select, update
from web_support import set_paused

from ari_app.db.models import AgentState, CallStatus, Outcome, Voicemail
from ari_app.flows.inbound.queue import POLL_S
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .hotline_world import (
    CALLER,
    HOTLINE,
    Sessions,
    calls_in_db,
    ended_calls,
    leave_voicemail,
    seed_hotline,
    trunk_call,
    wait_until,
)

pytestmark = pytest.mark.e2e


async def _rtp_in_one_bridge(pbx: PrivateAsterisk, prefixes: tuple[str, str]) -> None:
    """Both channels send and receive RTP and sit in the same bridge."""

    async def check() -> bool:
        rows = {r.channel.split("-")[0]: r for r in await pbx.rtp_stats()}
        legs = [rows.get(p) for p in prefixes]
        return all(r and r.rx_count >= 25 and r.tx_count >= 25 and r.bridge for r in legs) and (
            legs[0].bridge == legs[1].bridge  # type: ignore[union-attr]
        )

    await wait_until(check, 10, "RTP both ways through one bridge")


async def _caller_heard_through_bridge(pbx: PrivateAsterisk) -> None:
    """Caller and mobile (both on the trunk) in one bridge, the caller's voice reaching the
    mobile. (The mobile is silent after its DTMF, and the caller hears no music on hold
    while an agent is rung at once: only this direction carries audio.)"""

    async def check() -> bool:
        rows = [r for r in await pbx.rtp_stats() if r.channel.startswith("PJSIP/trunk")]
        bridged = [r for r in rows if r.bridge]
        return (
            len(bridged) == 2
            and bridged[0].bridge == bridged[1].bridge
            and any(r.rx_count >= 25 for r in bridged)
            and any(r.tx_count >= 25 for r in bridged)
        )

    await wait_until(check, 10, "the caller's RTP through one bridge to the mobile")


async def test_ring_all_first_answer_wins(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    seeded = await seed_hotline(sessions, strategy="ring_all")
    async with (
        SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=1.0) as first,
        SippPhone.for_phone(pbx.phone("1002"), sipp_dir, mode="never") as second,
    ):
        async with await trunk_call(pbx, sipp_dir, hangup_after=4, audio=True) as call:
            await first.wait_for_invite()
            await second.wait_for_invite()
            await _rtp_in_one_bridge(pbx, ("PJSIP/trunk", "PJSIP/1001"))
            await second.wait_for_message(method="CANCEL", timeout=5)
            result = await call.wait()
        await first.wait_for_message(method="BYE", timeout=5)
    assert result.final_status == 200 and result.sent_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ANSWERED and row.agent_id == seeded[0].id
    assert row.answered_at is not None and row.answered_at > row.entered_at
    assert row.first_ring_at is not None and row.caller_number == CALLER


async def test_agent_hangs_up_and_call_ends(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    await seed_hotline(sessions, devices=("1001",))
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, hangup_after=2) as agent:
        result = await (await trunk_call(pbx, sipp_dir, bye_timeout=20)).wait()
        await agent.wait_for_message(method="BYE", direction="sent", timeout=5)
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ANSWERED


async def test_linear_rings_in_member_order_with_retry_delay(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    await seed_hotline(
        sessions,
        devices=("1003", "1001", "1002"),
        strategy="linear",
        ring_timeout_s=2,
        retry_delay_s=1,
    )
    phones = [
        SippPhone.for_phone(pbx.phone(x), sipp_dir, mode="never") for x in ("1001", "1002", "1003")
    ]
    for phone in phones:
        await phone.start()
    try:
        async with await trunk_call(pbx, sipp_dir, hangup_after=12) as call:
            await phones[1].wait_for_invite(timeout=15)
            await call.wait()
    finally:
        for phone in phones:
            await phone.stop()
    p1001, p1002, p1003 = phones
    first = {p: p.invites()[0].timestamp for p in phones}
    assert first[p1003] < first[p1001] < first[p1002], "member order 1003, 1001, 1002"
    cancel_1003 = p1003.received("CANCEL")[0].timestamp
    assert first[p1001] - cancel_1003 >= 0.9, "retry delay between two agents"
    assert first[p1001] - first[p1003] >= 2.0, "ring timeout before the next agent"


async def _sequential_calls(
    pbx: PrivateAsterisk, sipp_dir: Path, sessions: Sessions, devices: tuple[str, ...], n: int
) -> list[str]:
    """n calls one after the other, each answered; returns which phone took each call."""
    phones = {d: SippPhone.for_phone(pbx.phone(d), sipp_dir, hangup_after=0.5) for d in devices}
    order: list[str] = []
    for phone in phones.values():
        await phone.start()
    try:
        for i in range(n):
            before = {d: len(p.invites()) for d, p in phones.items()}
            result = await (await trunk_call(pbx, sipp_dir, name=f"caller{i}")).wait()
            assert result.final_status == 200, result.describe()
            rung = [d for d, p in phones.items() if len(p.invites()) > before[d]]
            assert len(rung) == 1, f"one agent per call, got {rung}"
            order.append(rung[0])
            await ended_calls(sessions, i + 1)
    finally:
        for phone in phones.values():
            await phone.stop()
    return order


async def test_round_robin_rotates(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    devices = ("1001", "1002", "1003")
    await seed_hotline(sessions, devices=devices, strategy="round_robin")
    assert await _sequential_calls(pbx, sipp_dir, sessions, devices, 4) == [
        "1001",
        "1002",
        "1003",
        "1001",
    ]


async def test_longest_idle_first(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    devices = ("1001", "1002", "1003")
    seeded = await seed_hotline(sessions, devices=devices, strategy="longest_idle")
    now = datetime.now(UTC)
    idle_since = {seeded[0].id: 100, seeded[1].id: 300, seeded[2].id: 200}  # seconds
    async with sessions() as session, session.begin():
        for agent_id, seconds in idle_since.items():
            await session.execute(
                update(AgentState)
                .where(AgentState.agent_id == agent_id)
                .values(last_call_end=now - timedelta(seconds=seconds))
            )
    assert await _sequential_calls(pbx, sipp_dir, sessions, devices, 3) == ["1002", "1003", "1001"]


async def test_max_wait_leads_to_voicemail_with_message(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    result = await leave_voicemail(pbx, sessions, sipp_dir)
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.VOICEMAIL
    async with sessions() as session:
        vm = await session.scalar(select(Voicemail))
    assert vm is not None and vm.duration_s > 0 and vm.caller_number == CALLER
    async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
        url = f"{pbx.ari_url}/ari/recordings/stored/{vm.recording_name}"
        async with http.get(url) as resp:
            assert resp.status == 200, "the recording is stored in Asterisk"


async def test_closed_hours_take_the_closed_action(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%a").lower()[:2]
    await seed_hotline(
        sessions, opening_hours=f"{tomorrow} 08:00-09:00", closed_action="announce:tt-allbusy"
    )
    result = await (await trunk_call(pbx, sipp_dir, bye_timeout=15)).wait()
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.CLOSED


async def test_nobody_logged_in_takes_the_no_agent_action(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    await seed_hotline(sessions, logged_in=False, no_agent_action="announce:tt-allbusy")
    result = await (await trunk_call(pbx, sipp_dir, bye_timeout=15)).wait()
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.NO_AGENTS


async def test_caller_hangs_up_while_waiting(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    await seed_hotline(sessions, ring_timeout_s=20)
    async with (
        SippPhone.for_phone(pbx.phone("1001"), sipp_dir, mode="never") as first,
        SippPhone.for_phone(pbx.phone("1002"), sipp_dir, mode="never") as second,
    ):
        async with await trunk_call(pbx, sipp_dir, hangup_after=2) as call:
            await first.wait_for_invite()
            await second.wait_for_invite()
            await call.wait()
        await first.wait_for_message(method="CANCEL", timeout=5)
        await second.wait_for_message(method="CANCEL", timeout=5)
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ABANDONED and row.answered_at is None


async def test_external_agent_must_confirm_with_1(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    """The mobile is dialled through the trunk with the configured caller ID; a leg answered
    without pressing 1 (a mobile voicemail) is dropped and the next agent rings."""
    mobile = "01701234567"
    await seed_hotline(
        sessions,
        devices=("1001", "1002"),
        externals={0: mobile},
        strategy="linear",
        caller_id_to_agent="hotline",
    )
    far = SippPhone(
        pbx.trunk_far_address, pbx.trunk_far_port, sipp_dir, user="mobile", ring=0.3
    )  # answers, never presses 1
    desk = SippPhone.for_phone(pbx.phone("1002"), sipp_dir, ring=0.3, hangup_after=1)
    async with far, desk:
        async with await trunk_call(pbx, sipp_dir, bye_timeout=40) as call:
            invite = await far.wait_for_invite()
            await desk.wait_for_invite(timeout=20)
            await call.wait()
    assert invite.request_uri is not None and mobile in invite.request_uri
    assert f"<sip:{HOTLINE}@" in (invite.header("From") or ""), invite.header("From")
    assert far.received("BYE"), "the unconfirmed mobile leg was hung up"
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ANSWERED and row.agent_id == 2

    # the same agent confirming with 1 is bridged
    async with sessions() as session, session.begin():
        await session.execute(update(AgentState).values(activity="idle", wrapup_until=None))
    far_ok = SippPhone(
        pbx.trunk_far_address,
        pbx.trunk_far_port,
        sipp_dir,
        user="mobile",
        ring=0.3,
        dtmf="1",
        dtmf_delay=1.0,
        name="mobile-ok",
    )
    async with far_ok, SippPhone.for_phone(pbx.phone("1002"), sipp_dir, mode="never"):
        async with await trunk_call(pbx, sipp_dir, hangup_after=8, audio=True) as call:
            await far_ok.wait_for_invite()
            await _caller_heard_through_bridge(pbx)
            await call.wait()
    rows = await ended_calls(sessions, 2)
    assert rows[1].outcome is Outcome.ANSWERED and rows[1].agent_id == 1


async def test_caller_never_sees_the_agent(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    mobile = "01709876543"
    await seed_hotline(sessions, devices=("1001", "1002"), externals={1: mobile}, strategy="linear")
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3):
        result = await (await trunk_call(pbx, sipp_dir, hangup_after=3)).wait()
    far = SippPhone(
        pbx.trunk_far_address,
        pbx.trunk_far_port,
        sipp_dir,
        user="mobile",
        ring=0.3,
        dtmf="1",
        dtmf_delay=1.0,
    )
    async with sessions() as session, session.begin():
        await session.execute(
            update(AgentState).where(AgentState.agent_id == 1).values(paused=True)
        )
    async with far:
        second = await (await trunk_call(pbx, sipp_dir, hangup_after=6, name="c2")).wait()
        assert far.invites(), "the external agent took the second call"
    for res in (result, second):
        assert res.final_status == 200, res.describe()
        for message in res.received():
            for forbidden in ("1001", "1002", mobile, "Agent 1", "Agent 2"):
                assert not message.reveals(forbidden), (forbidden, message.raw)
        updates = [m for m in res.received() if m.method in ("UPDATE", "INVITE")]
        shown = [m.header("P-Asserted-Identity") or "" for m in updates]
        for pai in shown:
            assert f"sip:{HOTLINE}@" in pai or not pai, pai
        # Bridged, the caller is shown the hotline (DESIGN.md: its connected line).
        assert any(f"sip:{HOTLINE}@" in pai for pai in shown), [m.raw for m in updates]


async def test_agent_on_another_call_is_not_rung(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    seeded = await seed_hotline(sessions, devices=("1001", "1002"), strategy="linear")
    async with (
        SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.2) as busy_agent,
        SippPhone.for_phone(pbx.phone("1002"), sipp_dir, ring=0.2) as free_agent,
        SippPhone.for_phone(pbx.phone("1004"), sipp_dir, ring=0.2),
    ):
        # The agent's own device talks to 1004: a private call, not a hotline call.
        own = await sipp.start_call(
            "1004",
            local_addr=pbx.phone("1001").address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id="1001",
            hangup_after=8,
            name="own",
        )
        async with own:

            async def device_busy() -> bool:
                async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
                    url = f"{pbx.ari_url}/ari/deviceStates/PJSIP%2F1001"
                    async with http.get(url) as resp:
                        return bool((await resp.json())["state"] == "INUSE")

            await wait_until(device_busy, 10, "1001 in use")
            result = await (await trunk_call(pbx, sipp_dir, hangup_after=2)).wait()
            await own.wait()
    assert result.final_status == 200, result.describe()
    assert not busy_agent.invites(), "the busy agent was not rung for the hotline call"
    assert free_agent.invites()
    (row,) = [c for c in await calls_in_db(sessions) if c.outcome is not None]
    assert row.agent_id == seeded[1].id


async def test_two_callers_one_agent(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    seeded = await seed_hotline(sessions, devices=("1001",), wrapup_s=2)
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.5, hangup_after=2) as agent:
        first = await trunk_call(pbx, sipp_dir, bye_timeout=30, name="first")
        second = await trunk_call(pbx, sipp_dir, bye_timeout=30, name="second")
        async with first, second:
            await agent.wait_for_invite()
            await asyncio.sleep(0)  # let both INVITEs reach the app
            results = await asyncio.gather(first.wait(), second.wait())
        invites = agent.invites()
    assert all(r.final_status == 200 and r.got_bye() for r in results)
    assert len(invites) == 2, "the agent rang once per caller, one after the other"
    rows = await ended_calls(sessions, 2)
    assert [r.outcome for r in rows] == [Outcome.ANSWERED, Outcome.ANSWERED]
    assert all(r.agent_id == seeded[0].id for r in rows)
    first_row, second_row = rows
    assert first_row.ended_at is not None and second_row.answered_at is not None
    assert (second_row.answered_at - first_row.ended_at).total_seconds() >= 1.5, "wrap-up"


async def test_an_agent_freed_by_another_process_is_found_by_the_poll(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    """Ops unpause the only agent from another process (the CLI, here this test; nothing
    tells `hotline serve`) while a caller waits: the app's poll of its waiting callers
    (HotlineApp.sweep, every POLL_S; no caller has a poll timer of its own) finds the
    agent, who is rung within the poll's period."""
    seeded = await seed_hotline(sessions, devices=("1001",))
    await set_paused(sessions, seeded[0].number, True)
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.2, hangup_after=1) as phone:
        async with await trunk_call(pbx, sipp_dir, bye_timeout=30) as call:

            async def waiting() -> bool:
                return any(c.status is CallStatus.WAITING for c in await calls_in_db(sessions))

            await wait_until(waiting, 10, "the caller waiting")
            await set_paused(sessions, seeded[0].number, False)
            await phone.wait_for_invite(timeout=POLL_S + 5)
            result = await call.wait()
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions, 1)
    assert row.outcome is Outcome.ANSWERED and row.agent_id == seeded[0].id
