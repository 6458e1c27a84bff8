"""Feature codes end to end: sipp phones dial `*21`.. from their own address (the PBX
identifies them as PJSIP/10xx), the real app answers, confirms by voice (ARI playback events
seen by an observer app) and writes state and audit rows; hotline calls from the trunk then
ring, or no longer ring, the phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ari_app.db.models import TargetKind
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .agent_phone import (
    PIN_BOB,
    agent_state,
    audit,
    dial_code,
    heard,
    logins,
    played_media,
    seed_agents,
)
from .app_harness import AriObserver, ServeProcess
from .hotline_world import HOTLINE, Sessions, trunk_call

pytestmark = pytest.mark.e2e


async def test_codes_from_the_bound_device(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions, no_agent_action="announce:beep")
    ada, hotline = ids["ada"], ids["hotline"]
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, hangup_after=0.5) as phone:
        # *21: logged in, confirmed; a hotline call rings the device
        result = await dial_code(pbx, "1001", "*21", sipp_dir)
        assert result.final_status == 200 and result.got_bye(), result.describe()
        await heard(observer, "sound:agent-loginok")
        assert await logins(sessions) == {(ada, hotline)}
        state = await agent_state(sessions, ada)
        assert (state.target, state.target_kind) == ("PJSIP/1001", TargetKind.DEVICE)
        async with await trunk_call(pbx, sipp_dir, hangup_after=1.5) as call:
            await phone.wait_for_invite()
            await call.wait()

        # *23 twice: not available, then available again (no reason asked or stored)
        for word, paused in (("sound:activated", True), ("sound:de-activated", False)):
            since = len(observer.events)
            result = await dial_code(pbx, "1001", "*23", sipp_dir)
            assert result.got_bye(), result.describe()
            await heard(observer, "sound:do-not-disturb", since=since)
            await heard(observer, word, since=since)
            assert (await agent_state(sessions, ada)).paused is paused

        # *24<hotline>: am I logged in, agents logged in, callers waiting
        since = len(observer.events)
        result = await dial_code(pbx, "1001", f"*24{HOTLINE}", sipp_dir)
        assert result.got_bye(), result.describe()
        await heard(observer, "sound:queue-callswaiting", since=since)
        assert played_media(observer, since)[:3] == [
            "sound:agent-loginok",
            "sound:queue-thereare",
            "number:1",
        ]

        # *22: logged out; the next hotline call does not ring the phone
        since = len(observer.events)
        result = await dial_code(pbx, "1001", "*22", sipp_dir)
        assert result.got_bye(), result.describe()
        await heard(observer, "sound:agent-loggedoff", since=since)
        assert await logins(sessions) == set()
        invites = len(phone.invites())
        result = await (await trunk_call(pbx, sipp_dir, bye_timeout=15)).wait()
        assert result.got_bye(), result.describe()  # the no-agent announcement, then BYE
        assert len(phone.invites()) == invites
    rows = await audit(sessions)
    assert [(r.action, r.path, r.actor) for r in rows] == [
        ("login", "device", "agent:101"),
        ("pause", "device", "agent:101"),
        ("unpause", "device", "agent:101"),
        ("status", "device", "agent:101"),
        ("logout", "device", "agent:101"),
    ]


async def test_hotdesk_login_from_an_unbound_phone(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions)
    bob = ids["bob"]
    async with SippPhone.for_phone(pbx.phone("1003"), sipp_dir, hangup_after=0.5) as phone:
        result = await dial_code(pbx, "1003", "*21", sipp_dir, keys=f"102#{PIN_BOB}#")
        assert result.final_status == 200 and result.got_bye(), serve.log()[-6000:]
        for prompt in ("sound:agent-user", "sound:agent-pass", "sound:agent-loginok"):
            await heard(observer, prompt)
        state = await agent_state(sessions, bob)
        assert (state.target, state.target_kind) == ("PJSIP/1003", TargetKind.DEVICE)
        async with await trunk_call(pbx, sipp_dir, hangup_after=1.5) as call:
            invite = await phone.wait_for_invite()
            await call.wait()
    assert invite.request_uri is not None and "1003@" in invite.request_uri
    rows = await audit(sessions)
    assert [(r.action, r.path, r.agent_id) for r in rows] == [("login", "hotdesk", bob)]
