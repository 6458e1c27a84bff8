"""Duty roster end to end (issue 16): `hotline serve` changes the shift by itself, and the
next citizen's call rings the incoming caretaker's mobile (over the trunk's far end),
not the outgoing caretaker's desk phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ari_app.db.models import AgentLogin, AuditEntry, Outcome, RosterSlot
from ari_app.domain.roster import minute_of_week
from ari_app.services import admin
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .hotline_world import HOTLINE, Sessions, ended_calls, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

MOBILE = "01701234599"


async def _on_duty(sessions: Sessions) -> set[int]:
    async with sessions() as session:
        return set(await session.scalars(select(AgentLogin.agent_id)))


async def test_at_a_shift_change_the_next_call_rings_the_incoming_mobile(
    pbx: PrivateAsterisk, serve: ServeProcess, sessions: Sessions, sipp_dir: Path
) -> None:
    desk_agent, mobile_agent = await seed_hotline(
        sessions, devices=("1001", "1002"), externals={1: MOBILE}, logged_in=False, min_agents=1
    )
    now = datetime.now(UTC)
    week_now = minute_of_week(now, "Europe/Berlin")
    change_at = now + timedelta(seconds=8)
    async with sessions() as session, session.begin():
        hotline_id = (await admin.get_hotline(session, HOTLINE)).id
        # 201 on the weekly shift that covers now; from `change_at` a one-off exception
        # puts 202 on duty on the mobile (it replaces the weekly shift while it lasts).
        session.add(
            RosterSlot(
                hotline_id=hotline_id,
                agent_id=desk_agent.id,
                week_start=(week_now - 60) % 10080,
                week_end=(week_now + 60) % 10080,
            )
        )
        session.add(
            RosterSlot(
                hotline_id=hotline_id,
                agent_id=mobile_agent.id,
                starts_at=change_at,
                ends_at=change_at + timedelta(hours=1),
                target=MOBILE,
            )
        )

    await wait_until(lambda: _is(sessions, {desk_agent.id}), 10, "the first shift")
    await wait_until(lambda: _is(sessions, {mobile_agent.id}), 20, "the shift change")
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.in_(("login", "logout")))
                .order_by(AuditEntry.id)
            )
        )
    assert [(r.action, r.agent_id, r.path) for r in rows] == [
        ("login", desk_agent.id, "roster"),
        ("login", mobile_agent.id, "roster"),  # the incoming first
        ("logout", desk_agent.id, "roster"),
    ]

    far = SippPhone(
        pbx.trunk_far_address,
        pbx.trunk_far_port,
        sipp_dir,
        user="mobile",
        ring=0.3,
        dtmf="1",
        dtmf_delay=1.0,
    )
    desk = SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3)
    async with far, desk:
        async with await trunk_call(pbx, sipp_dir, hangup_after=6) as call:
            invite = await far.wait_for_invite(timeout=15)
            await call.wait()
    assert invite.request_uri is not None and MOBILE in invite.request_uri
    assert not desk.received("INVITE"), "the outgoing caretaker's desk phone stays quiet"
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ANSWERED and row.agent_id == mobile_agent.id


async def _is(sessions: Sessions, expected: set[int]) -> bool:
    return await _on_duty(sessions) == expected
