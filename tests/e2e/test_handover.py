"""Handing over an on-call duty end to end (issue 4, item 4): the real `hotline serve`, the
requester dials *22 on phone 1001, the colleague's phone 1002 is a sipp phone that answers
and presses 1 (RFC 2833), rejects, or never answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ari_app.db.models import AgentLogin, AuditEntry
from ari_app.services import admin, agents
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import AriObserver, ServeProcess
from .hotline_world import Sessions, wait_until

pytestmark = pytest.mark.e2e

DUTY = "500"


async def _seed_duty(sessions: Sessions, *, colleague: bool = True) -> None:
    """Hotline 500 with a staffing minimum of 1: agent 101 (phone 1001) on duty, agent 102
    (phone 1002) its colleague. One transaction, so the app never sees it short."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, DUTY, "Hausmeister", min_agents=1, ring_timeout_s=4
        )
        requester = await admin.create_agent(session, "101", "Anna", device="PJSIP/1001")
        await admin.add_member(session, hotline, requester)
        await agents.login(session, requester, target=None, path="cli", actor="test")
        if colleague:
            other = await admin.create_agent(session, "102", "Bert", device="PJSIP/1002")
            await admin.add_member(session, hotline, other)


async def _logged_in(sessions: Sessions) -> set[int]:
    async with sessions() as session:
        return set(await session.scalars(select(AgentLogin.agent_id)))


async def _dial_logout(pbx: PrivateAsterisk, sipp_dir: Path) -> sipp.CallResult:
    """Phone 1001 dials *22 and stays until the app hangs up after its answer."""
    return await sipp.call(
        "*22",
        local_addr=pbx.phone("1001").address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id="1001",
        audio=False,
        bye_timeout=40,
        name="requester",
    )


def _played(observer: AriObserver, sound: str) -> bool:
    return any(e["playback"]["media_uri"] == sound for e in observer.of_type("PlaybackStarted"))


async def test_colleague_presses_1_takes_over_then_requester_is_logged_out(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await _seed_duty(sessions)
    async with SippPhone.for_phone(pbx.phone("1002"), sipp_dir, dtmf="1", ring=0.5) as phone:
        result = await _dial_logout(pbx, sipp_dir)
        assert result.final_status == 200 and result.got_bye(), result.describe()
        invite = await phone.wait_for_invite(timeout=5)
        assert "1002" in (invite.request_uri or "")
        assert [m for m in phone.sent(200) if m.cseq_method == "INVITE"], "answered"
    assert await _logged_in(sessions) == {2}
    async with sessions() as session:
        audit = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    steps = [(a.action, a.agent_id) for a in audit if a.actor != "test" and a.agent_id]
    # The colleague is logged in first, and only then is the requester logged out.
    assert steps == [("login", 2), ("handover", 1), ("logout", 1)], steps
    # Both are told: the colleague "agent logged in", the requester who took over.
    assert _played(observer, "sound:agent-loginok")
    assert _played(observer, "digits:102") and _played(observer, "sound:agent-loggedoff")


@pytest.mark.parametrize("mode", ["reject", "never"])
async def test_requester_stays_when_the_colleague_rejects_or_does_not_answer(
    mode: Any,
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await _seed_duty(sessions)
    async with SippPhone.for_phone(pbx.phone("1002"), sipp_dir, mode=mode, ring=0.5) as phone:
        result = await _dial_logout(pbx, sipp_dir)
        assert result.final_status == 200 and result.got_bye(), result.describe()
        await phone.wait_for_invite(timeout=5)
        assert not [m for m in phone.sent(200) if m.cseq_method == "INVITE"]
    assert await _logged_in(sessions) == {1}
    # The refusal is explained: nobody took over, the logout is cancelled.
    assert _played(observer, "sound:number-not-answering")
    assert _played(observer, "sound:cancelled")
    async with sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert "logout" not in actions and "handover" not in actions


async def test_logout_refused_with_an_explanation_when_nobody_can_take_over(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await _seed_duty(sessions, colleague=False)
    result = await _dial_logout(pbx, sipp_dir)
    assert result.final_status == 200 and result.got_bye(), result.describe()
    await wait_until(lambda: _played(observer, "sound:feature-not-avail-line"), 5, "explanation")
    assert await _logged_in(sessions) == {1}
