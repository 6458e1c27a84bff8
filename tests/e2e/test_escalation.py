"""Escalation end to end (issue 4, item 5): the last agent of a hotline with a staffing
minimum of 1 does not answer and is auto-paused; the app calls the escalation number
through the trunk, where a sipp phone answers and confirms with 1 (RFC 2833); every step
is audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ari_app.db.models import AgentState, AuditEntry
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import AriObserver, ServeProcess
from .hotline_world import Sessions, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

ESCALATION_NUMBER = "0301234"


async def _audit(sessions: Sessions, prefix: str) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [r for r in rows if r.action.startswith(prefix)]


async def test_auto_pause_of_the_last_agent_calls_the_escalation_number(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    (agent,) = await seed_hotline(
        sessions,
        devices=("1001",),
        min_agents=1,
        escalation_numbers=[ESCALATION_NUMBER],
        no_answer_limit=1,
        ring_timeout_s=3,
    )
    far_end = SippPhone(
        pbx.trunk_far_address,
        pbx.trunk_far_port,
        sipp_dir,
        user="duty",
        dtmf="1",
        dtmf_delay=4,
        ring=0.5,
    )
    async with (
        SippPhone.for_phone(pbx.phone("1001"), sipp_dir, mode="never") as desk,
        far_end,
    ):
        async with await trunk_call(pbx, sipp_dir, hangup_after=11) as caller:
            await desk.wait_for_invite(timeout=5)
            invite = await far_end.wait_for_invite(timeout=15)
            assert ESCALATION_NUMBER in (invite.request_uri or "")
            confirmed = await wait_until(
                lambda: _audit(sessions, "escalation_confirmed"), 15, "confirmation"
            )
            result = await caller.wait()
        assert result.final_status == 200, result.describe()
        assert [m for m in far_end.sent(200) if m.cseq_method == "INVITE"]
    async with sessions() as session:
        state = await session.get(AgentState, agent.id)
    assert state is not None and state.paused  # auto-paused, still logged in
    assert confirmed[0].detail["number"] == ESCALATION_NUMBER
    (started,) = await _audit(sessions, "escalation_started")
    # "check" only if the periodic check won the race with the auto-pause's own check.
    assert started.detail["trigger"] in ("auto_pause", "check")
    assert started.hotline_id == confirmed[0].hotline_id and started.path == "system"
    calls = await _audit(sessions, "escalation_call")
    assert [(c.detail["number"], c.detail["outcome"]) for c in calls] == [
        (ESCALATION_NUMBER, "confirmed")
    ]
    assert [a.action for a in await _audit(sessions, "auto_pause")] == ["auto_pause"]
    # The one who confirmed heard which hotline it is about.
    played = [
        e["playback"]["media_uri"]
        for kind in ("PlaybackStarted", "PlaybackContinuing")
        for e in observer.of_type(kind)
    ]
    assert "digits:500" in played and "sound:auth-thankyou" in played
