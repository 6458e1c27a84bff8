"""Security findings of issue 13 that only a real PBX can show: what Asterisk logs, who it
lets in, what a leg the app originates reveals, and what it dials on a redirect."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .agent_phone import MOBILE, PIN_ADA, heard, logins, seed_agents, service_call
from .app_harness import AriObserver, ServeProcess
from .conftest import ari_session
from .hotline_world import (
    CALLER,
    HOTLINE,
    Sessions,
    calls_in_db,
    ended_calls,
    seed_hotline,
    trunk_call,
)

pytestmark = pytest.mark.e2e

FOREIGN = "127.0.0.99"  # an address no endpoint is configured for


async def test_no_pin_digit_in_any_log(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    """Finding 1: a PIN typed on the service line is in neither Asterisk's log (as the
    shipped logger.conf configures it) nor the app's."""
    offset = pbx.log_offset()
    await seed_agents(sessions)
    result = await service_call(
        pbx, sipp_dir, caller_id=MOBILE, keys=f"101#{PIN_ADA}#,1", hangup_after=7
    )
    assert result.final_status == 200, result.describe()
    await heard(observer, "sound:agent-loginok")
    assert await logins(sessions), "the login did not happen: nothing was tested"
    asterisk_log, app_log = pbx.log_text(offset), serve.log()
    assert "agent number: 101" in app_log  # the dialogue was logged, the PIN was not
    for name, text in (("Asterisk", asterisk_log), ("app", app_log)):
        assert PIN_ADA not in text, f"PIN in the {name} log"
        # nor digit by digit (Asterisk's dtmf level logs "DTMF end '7' received ...")
        assert not re.search(r"DTMF", text), f"DTMF logged in the {name} log"


@pytest.mark.parametrize("user", ["trunk", "1001"])
async def test_a_foreign_address_cannot_pose_as_trunk_or_phone(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
    user: str,
) -> None:
    """Finding 2: From: <sip:trunk@...> or <sip:1001@...> from an address that is neither
    the trunk's nor the phone's gets no call into Stasis."""
    await seed_hotline(sessions, devices=("1002",))
    result = await sipp.call(
        HOTLINE,
        local_addr=FOREIGN,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id=user,
        audio=False,
        hangup_after=1,
        answer_timeout=5,
    )
    assert not result.answered, result.describe()
    assert result.final_status in (401, 403), result.describe()
    assert observer.of_type("StasisStart") == []
    assert await calls_in_db(sessions) == []


async def test_a_redirect_from_an_agent_device_is_not_followed(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    """Finding 13: an agent's device answering `302 Moved Temporarily` with a Contact of
    another number (here a premium number at the trunk's far end, and another phone) does
    not make the PBX dial it: the app's originate is the only dial, the caller waits on."""
    await seed_hotline(sessions, devices=("1001",), ring_timeout_s=2, max_wait_s=6)
    far_end = (pbx.trunk_far_address, pbx.trunk_far_port)
    other = pbx.phone("1002")
    for target in (f"sip:09001234567@{far_end[0]}:{far_end[1]}", f"sip:1002@{other.address}"):
        since, offset = len(observer.events), pbx.log_offset()
        async with (
            SippPhone.for_phone(
                pbx.phone("1001"), sipp_dir, mode="reject", reject_code=302, redirect_to=target
            ) as agent,
            SippPhone(*far_end, sipp_dir, user="premium") as premium,
            SippPhone.for_phone(other, sipp_dir) as colleague,
        ):
            async with await trunk_call(pbx, sipp_dir, hangup_after=1) as call:
                await agent.wait_for_invite()
                await agent.wait_for_message(method="ACK", timeout=5)
                result = await call.wait()
            assert premium.invites() == [] and colleague.invites() == []
        # Asterisk did try (a Local channel to the Contact's user in FORWARD_CONTEXT) but
        # ran no dialplan for it: without FORWARD_CONTEXT it ran the phones' context, where
        # a real PBX dials out
        user = target.removeprefix("sip:").partition("@")[0]
        assert f"Executing [{user}@" not in pbx.log_text(offset)
        entered = [
            e["channel"]["name"] for e in observer.events[since:] if e["type"] == "StasisStart"
        ]
        assert not [n for n in entered if n.startswith("Local/")], entered
        assert result.answered, result.describe()


MOBILE_AGENT = "+4917011111"
FORWARD_TO = "+4930999888"


async def _far_end_sees(
    pbx: PrivateAsterisk, sipp_dir: Path, headers: list[str], **phone: object
) -> list[sipp.SipMessage]:
    """One hotline call from CALLER over the trunk; what the trunk's far end received."""
    far_end = (pbx.trunk_far_address, pbx.trunk_far_port)
    async with SippPhone(*far_end, sipp_dir, user="far", **phone) as far:  # type: ignore[arg-type]
        async with await trunk_call(pbx, sipp_dir, hangup_after=4, extra_headers=headers) as call:
            await far.wait_for_invite()
            result = await call.wait()
        await far.wait_for_message(method="BYE", timeout=5)
        assert result.final_status == 200, result.describe()
        return far.received()


@pytest.mark.parametrize("leg", ["agent mobile", "forward"])
async def test_a_withheld_number_is_not_revealed_on_legs_the_app_makes(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    sessions: Sessions,
    sipp_dir: Path,
    leg: str,
) -> None:
    """Finding 4: a citizen calling with `Privacy: id` is shown on neither an agent's
    mobile (reached through the trunk, caller ID to agent = the caller's) nor a forward
    target: nothing the trunk's far end receives carries the number. The same call
    without Privacy does show it there (so the check can see a number)."""
    if leg == "forward":
        await seed_hotline(
            sessions, devices=("1001",), logged_in=False, no_agent_action=f"forward:{FORWARD_TO}"
        )
        phone: dict[str, object] = {}
    else:
        await seed_hotline(
            sessions, devices=("1001",), externals={0: MOBILE_AGENT}, caller_id_to_agent="caller"
        )
        phone = {"dtmf": "1"}  # the agent takes the hotline call
    shown = await _far_end_sees(pbx, sipp_dir, [], **phone)
    assert any(m.reveals(CALLER) for m in shown if m.is_initial_invite())
    withheld = await _far_end_sees(pbx, sipp_dir, ["Privacy: id"], **phone)
    assert withheld, "the far end got nothing"
    assert [m.first_line for m in withheld if m.reveals(CALLER)] == []
    rows = await ended_calls(sessions, count=2)
    assert sorted(r.caller_number or "" for r in rows) == sorted([CALLER, "anonymous"])


async def test_legs_the_app_originates_have_an_absolute_timeout(
    pbx: PrivateAsterisk,
    serve_factory: object,
    sessions: Sessions,
    sipp_dir: Path,
    observer: AriObserver,
) -> None:
    """Finding 7: HOTLINE_MAX_CALL_DURATION is the absolute timeout of the agent's leg
    (read back from the live channel in Asterisk)."""
    await serve_factory(pbx, HOTLINE_MAX_CALL_DURATION="2h")  # type: ignore[operator]
    await seed_hotline(sessions, devices=("1001",))
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir):
        async with await trunk_call(pbx, sipp_dir, hangup_after=4) as call:
            started = await observer.wait_for(
                "ChannelCreated", lambda e: e["channel"]["name"].startswith("PJSIP/1001-")
            )
            async with ari_session(pbx) as http:
                url = f"{pbx.ari_url}/ari/channels/{started['channel']['id']}/variable"
                async with http.get(url, params={"variable": "TIMEOUT(absolute)"}) as resp:
                    assert resp.status == 200
                    left = float((await resp.json())["value"])
            await call.wait()
    assert 7000 < left <= 7200
