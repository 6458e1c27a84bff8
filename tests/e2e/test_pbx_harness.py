"""The test harness itself: private Asterisk boots, ARI answers, dialplan is loaded, sipp
phones call each other through it with RTP, and RFC 2833 DTMF from a pcap arrives."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devenv import sipp
from devenv.asterisk import PrivateAsterisk, RtpStats

from .app_harness import observe
from .conftest import AriHttp

pytestmark = pytest.mark.e2e


async def test_asterisk_boots_and_ari_answers(pbx: PrivateAsterisk, ari: AriHttp) -> None:
    info = await ari.get("/asterisk/info")
    assert int(info["system"]["version"].split(".")[0]) >= 16
    assert pbx.pid is not None
    assert pbx.ari_url.startswith("http://127.0.0.1:")
    assert await ari.get("/channels") == []
    env = pbx.env()
    assert env["HOTLINE_ARI_URL"] == pbx.ari_url
    assert env["HOTLINE_ARI_APP"] == "hotline"
    assert env["HOTLINE_EXTERNAL_DIAL"] == "PJSIP/{number}@trunk"


async def test_the_chosen_asterisk_version_runs(pbx: PrivateAsterisk, ari: AriHttp) -> None:
    """The Asterisk behind ARI is the chosen one (printed in pytest's header), and the
    version `make ... ASTERISK=N` asked for (HOTLINE_EXPECT_ASTERISK=N)."""
    running = (await ari.get("/asterisk/info"))["system"]["version"]
    assert running == pbx.install.version()
    expected = os.environ.get("HOTLINE_EXPECT_ASTERISK")
    if expected:
        assert running.split(".")[0] == expected, f"asked for Asterisk {expected}, runs {running}"


async def test_wrong_ari_password_is_refused(pbx: PrivateAsterisk) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode(b"hotline:wrong").decode()}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{pbx.ari_url}/ari/asterisk/info") as resp,
    ):
        assert resp.status == 401


async def test_dialplan_contexts_are_loaded(pbx: PrivateAsterisk) -> None:
    inbound = await pbx.rx("dialplan show hotline-inbound")
    assert "Gosub(hotline-stasis,s,1(inbound,${EXTEN}))" in inbound
    stasis = await pbx.rx("dialplan show hotline-stasis")
    assert "Stasis(${HOTLINE_STASIS_APP},${ARG1},${ARG2})" in stasis
    assert "'_X.'" in inbound and "'_+X.'" in inbound
    features = await pbx.rx("dialplan show hotline-features")
    for pattern in ("'_*2[1-4]'", "'_*2[1-4]X.'", "'_*98X.'"):
        assert pattern in features
    service = await pbx.rx("dialplan show hotline-service")
    assert "Gosub(hotline-stasis,s,1(service,${EXTEN}))" in service
    fallback = await pbx.rx("dialplan show hotline-fallback")
    assert "Playback(" in fallback and "Dial(${GLOBAL(HOTLINE_FALLBACK_DIAL)}" in fallback
    # the demo contexts route as documented
    assert "hotline-features" in await pbx.rx("dialplan show *21@hotline-phones")
    assert "Dial(PJSIP/1002" in await pbx.rx("dialplan show 1002@hotline-phones")
    service_line = await pbx.rx(f"dialplan show {pbx.service_number}@hotline-pstn-in")
    assert "Goto(hotline-service" in service_line
    # loaded cleanly: no errors or warnings from the dialplan parser
    problems = [
        line
        for line in pbx.log_text().splitlines()
        if ("ERROR[" in line or "WARNING[" in line)
        and ("pbx_config" in line or "extensions" in line or "config.c" in line)
    ]
    assert problems == []


async def _wait_for_rtp(
    pbx: PrivateAsterisk, channels: int, timeout: float = 10.0, packets: int = 25
) -> list[RtpStats]:
    """Poll channelstats until ``channels`` channels each received and sent RTP."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await pbx.rtp_stats()
        flowing = [s for s in stats if s.rx_count >= packets and s.tx_count >= packets]
        if len(flowing) >= channels:
            return flowing
        if time.monotonic() >= deadline:
            raise AssertionError(f"RTP not flowing on {channels} channels: {stats}")
        await asyncio.sleep(0.2)


async def test_phone_calls_phone_with_rtp(pbx: PrivateAsterisk, sipp_dir: Path) -> None:
    caller, callee = pbx.phone("1001"), pbx.phone("1002")
    async with sipp.SippPhone.for_phone(callee, sipp_dir, ring=0.3) as phone:
        call = await sipp.start_call(
            callee.ext,
            local_addr=caller.address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id=caller.ext,
            hangup_after=3.0,
        )
        async with call:
            # both legs send and receive audio through Asterisk (direct_media=no)
            stats = await _wait_for_rtp(pbx, channels=2)
            assert {s.channel.split("-")[0] for s in stats} == {"PJSIP/1001", "PJSIP/1002"}
            assert len({s.bridge for s in stats}) == 1  # the same bridge
            result = await call.wait()
        assert result.ok, result.describe()
        assert result.answered
        assert result.responses(180)
        assert result.sent_bye() and result.received(200)[-1].cseq_method == "BYE"

        bye = await phone.wait_for_message(method="BYE")
        invite = phone.invites()[0]
        assert invite.request_uri == callee.contact
        assert "1001" in (invite.header("P-Asserted-Identity") or "")
        assert "1001" in (invite.header("Remote-Party-ID") or "")
        assert '"Phone 1001"' in (invite.header("From") or "")
        sent = [m.first_line for m in phone.sent()]
        assert "SIP/2.0 180 Ringing" in sent and "SIP/2.0 200 OK" in sent
        assert bye.call_id == invite.call_id


async def test_rejecting_phone_gives_caller_busy(pbx: PrivateAsterisk, sipp_dir: Path) -> None:
    caller, callee = pbx.phone("1003"), pbx.phone("1004")
    async with sipp.SippPhone.for_phone(callee, sipp_dir, mode="reject", ring=0.1):
        result = await sipp.call(
            callee.ext,
            local_addr=caller.address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id=caller.ext,
            answer_timeout=10,
        )
    assert result.ok, result.describe()
    assert result.final_status == 486
    assert not result.answered


async def test_the_observer_hears_everything_but_device_states(
    pbx: PrivateAsterisk, ari: AriHttp
) -> None:
    """A test's observing app follows every channel, bridge and endpoint, as subscribeAll
    would, but no device state: closing an app that follows all device states can wedge
    Asterisk 22's ARI (app_harness.OBSERVED_SOURCES says how)."""
    ws = await observe(ari.session, pbx, "watch")
    try:
        app = await ari.get("/applications/watch")
    finally:
        await ws.close()
    assert app["channel_ids"] == ["__AST_CHANNEL_ALL_TOPIC"]
    assert app["bridge_ids"] == ["__AST_BRIDGE_ALL_TOPIC"]
    assert app["endpoint_ids"] == ["__AST_ENDPOINT_ALL_TOPIC"]
    assert app["device_names"] == []


async def test_dtmf_from_pcap_reaches_ari(
    pbx: PrivateAsterisk, ari: AriHttp, sipp_dir: Path
) -> None:
    """RFC 2833 digits from sipp arrive as ChannelDtmfReceived (caller in the fallback)."""
    caller = pbx.phone("1005")
    digits: list[str] = []
    ws = await observe(ari.session, pbx, "harness")
    try:
        call = await sipp.start_call(
            "4930199",
            local_addr=caller.address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id=caller.ext,
            audio=False,
            dtmf="12#",
            bye_timeout=15,
        )
        async with call:
            deadline = time.monotonic() + 10
            while len(digits) < 3 and time.monotonic() < deadline:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                event: dict[str, Any] = json.loads(msg.data)
                if event["type"] == "ChannelDtmfReceived":
                    assert event["channel"]["name"].startswith("PJSIP/1005-")
                    digits.append(event["digit"])
            result = await call.wait()
    finally:
        await ws.close()
    assert digits == ["1", "2", "#"]
    assert result.ok, result.describe()
    assert result.got_bye()
