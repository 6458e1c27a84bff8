"""Presence from device states end to end (issue 4, item 6): a phone-to-phone call that
the app never sees (1003 calls 1004 through the dialplan) shows both agents as on a call,
the logged-in one and the logged-out one alike, and both go back afterwards: the logged-in
one through "not available" for the hotline's wrap-up time, as after a hotline call
(issue 13, finding 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ari_app.services import admin, agents, presence
from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .conftest import AriHttp
from .hotline_world import Sessions, wait_until

pytestmark = pytest.mark.e2e
WRAPUP_S = 3


async def _seed(sessions: Sessions) -> None:
    """Agent 301 on phone 1003, logged in to hotline 500; agent 302 on phone 1004, logged out."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Buergerbuero", wrapup_s=WRAPUP_S)
        caller = await admin.create_agent(session, "301", "Carla", device="PJSIP/1003")
        callee = await admin.create_agent(session, "302", "Dirk", device="PJSIP/1004")
        for agent in (caller, callee):
            await admin.add_member(session, hotline, agent)
        await agents.login(session, caller, target=None, path="cli", actor="test")


async def _presence(sessions: Sessions) -> dict[str, str]:
    async with sessions() as session:
        records = await presence.read_presence(session)
    for record in records:
        assert set(record) == {"agent", "name", "presence"}
    return {r["agent"]: r["presence"] for r in records}


async def _following(ari: AriHttp, devices: set[str]) -> bool:
    """The app subscribed to these devices' states (Asterisk lists them for the app)."""
    app = await ari.get(f"/applications/{ari.pbx.app_name}")
    return devices <= set(app.get("device_names", []))


async def test_non_hotline_call_shows_on_call(
    pbx: PrivateAsterisk, serve: ServeProcess, ari: AriHttp, sessions: Sessions, sipp_dir: Path
) -> None:
    await _seed(sessions)
    # Devices added while the app runs are picked up by its resync; from then on the
    # changes come as DeviceStateChanged events.
    await wait_until(lambda: _following(ari, {"PJSIP/1003", "PJSIP/1004"}), 5, "subscribed")
    assert await _presence(sessions) == {"301": "available", "302": "unavailable"}
    async with SippPhone.for_phone(pbx.phone("1004"), sipp_dir, ring=0.3, audio=False) as phone:
        call = await sipp.start_call(
            "1004",
            local_addr=pbx.phone("1003").address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id="1003",
            audio=False,
            hangup_after=3,
            name="private",
        )
        async with call:
            await phone.wait_for_invite(timeout=5)
            on_call = {"301": "on_call", "302": "on_call"}
            await wait_until(lambda: _presence_is(sessions, on_call), 5, "both agents on a call")
            result = await call.wait()
        assert result.final_status == 200, result.describe()
    # Right after the private call 301 is "not available" as after a hotline call's
    # wrap-up, then available again.
    seen: list[str] = []

    async def back() -> bool:
        now = await _presence(sessions)
        if not seen or seen[-1] != now["301"]:
            seen.append(now["301"])
        return now == {"301": "available", "302": "unavailable"}

    await wait_until(back, WRAPUP_S + 5, "both agents back")
    assert seen[-2:] == ["unavailable", "available"], seen


async def _presence_is(sessions: Sessions, expected: dict[str, str]) -> bool:
    return await _presence(sessions) == expected
