"""The dialplan fallback: with the Hotline app not connected to ARI, a caller is answered,
hears an announcement (not silence, not an error tone) and, where configured, is put
through to the fallback number; otherwise the PBX hangs up after the announcement."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from devenv import sipp
from devenv.asterisk import PrivateAsterisk

from .conftest import PbxFactory

pytestmark = pytest.mark.e2e

# The default announcement in the shipped language, German (HOTLINE_LANGUAGE de): "all
# circuits are busy, please try later", synthesised at set-up (2.8 s + 2.9 s; English
# 1.8 s + 2.2 s).
ANNOUNCEMENT = ("hotline/all-circuits-busy-now", "hotline/please-try-call-later")
ANNOUNCEMENT_SECONDS = 4.0
FALLBACK_NUMBER = "0301234"
CALLER_NUMBER = "030111222"


async def _max_tx_packets(pbx: PrivateAsterisk, call: sipp.SippCall, prefix: str) -> int:
    """Highest RTP transmit count Asterisk reports for the caller's channel while it lasts."""
    best = 0
    deadline = time.monotonic() + 15
    while call.running and time.monotonic() < deadline:
        for row in await pbx.rtp_stats():
            if row.channel.startswith(prefix):
                best = max(best, row.tx_count)
        await asyncio.sleep(0.25)
    return best


def _fallback_channel(pbx: PrivateAsterisk, number: str, offset: int) -> str:
    match = re.search(
        rf"hotline: app hotline unavailable - fallback on (\S+) flow=inbound number={number}\b",
        pbx.log_text(offset),
    )
    assert match, "fallback warning for this call not in the Asterisk log"
    return match.group(1)


async def test_caller_hears_announcement_when_app_is_down(
    pbx: PrivateAsterisk, sipp_dir: Path
) -> None:
    number = "4930100"
    offset = pbx.log_offset()
    call = await sipp.start_call(
        number,
        local_addr=pbx.trunk_in_address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id=CALLER_NUMBER,
        audio=False,
        bye_timeout=20,
    )
    async with call:
        tx_packets = await _max_tx_packets(pbx, call, "PJSIP/trunk-")
        result = await call.wait()

    # answered (200 OK, no error response), then the PBX hung up after the announcement
    assert result.ok, result.describe()
    assert result.final_status == 200
    assert result.got_bye() and not result.sent_bye()
    talk = result.talk_time()
    assert talk is not None and talk >= ANNOUNCEMENT_SECONDS - 0.5, talk
    # Asterisk sent audio for most of the call (50 packets/s): not silence, not dead air
    assert tx_packets >= 100, tx_packets

    # the log shows the Stasis failure and the announcement played on this very channel
    await pbx.wait_for_log(r"Spawn extension \(hotline-fallback", offset=offset)
    channel = _fallback_channel(pbx, number, offset)
    log = pbx.log_text(offset)
    # Asterisk 16 logs "not registered", 22 "doesn't exist" for the same refusal.
    assert re.search(r"Stasis app 'hotline' (not registered|doesn't exist)", log)
    for sound in ANNOUNCEMENT:
        assert re.search(rf"<{re.escape(channel)}> Playing '{sound}\.\w+' \(language 'de'\)", log)
    assert "Dial(" not in log  # no fallback number configured on this PBX


async def test_number_with_other_characters_is_refused(
    pbx: PrivateAsterisk, sipp_dir: Path
) -> None:
    """Only digits (and * +) reach the app; anything else gets 404 at once."""
    offset = pbx.log_offset()
    result = await sipp.call(
        "49301x0",
        local_addr=pbx.trunk_in_address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id=CALLER_NUMBER,
        answer_timeout=10,
    )
    assert result.ok, result.describe()
    assert result.final_status == 404
    assert "refusing number with invalid characters" in pbx.log_text(offset)


@pytest.fixture(scope="module")
async def pbx_with_fallback(pbx_factory: PbxFactory) -> PrivateAsterisk:
    return await pbx_factory(fallback_dial=f"PJSIP/{FALLBACK_NUMBER}@trunk")


async def test_fallback_number_is_dialled_after_announcement(
    pbx_with_fallback: PrivateAsterisk, sipp_dir: Path
) -> None:
    pbx = pbx_with_fallback
    far_end = sipp.SippPhone(
        pbx.trunk_far_address,
        pbx.trunk_far_port,
        sipp_dir,
        user=FALLBACK_NUMBER,
        ring=0.2,
        hangup_after=1.0,
        name="pstn-far-end",
    )
    async with far_end:
        call = await sipp.start_call(
            "4930155",
            local_addr=pbx.trunk_in_address,
            pbx_addr=pbx.sip_address,
            workdir=sipp_dir,
            caller_id=CALLER_NUMBER,
            audio=False,
            bye_timeout=20,
        )
        async with call:
            invite = await far_end.wait_for_invite(timeout=15)
            result = await call.wait()
        await far_end.wait_for_message(status=200, direction="received", cseq_method="BYE")

    assert result.ok, result.describe()
    answer = result.answer
    assert answer is not None
    # the configured number is dialled, never what the caller dialled
    assert invite.request_uri is not None
    assert invite.request_uri.startswith(f"sip:{FALLBACK_NUMBER}@{pbx.trunk_far_address}:")
    assert "4930155" not in invite.raw
    # only after the announcement
    assert invite.timestamp - answer.timestamp >= ANNOUNCEMENT_SECONDS - 0.5
    # the caller's number is presented to the far end
    assert CALLER_NUMBER in (invite.header("From") or "")
    assert CALLER_NUMBER in (invite.header("P-Asserted-Identity") or "")
    # the far end hung up after 1 s and the caller was released with it
    assert result.got_bye()


async def test_fallback_speaks_the_dialplans_language(
    pbx_factory: PbxFactory, sipp_dir: Path
) -> None:
    """HOTLINE_LANGUAGE en in the dialplan: the English core sounds, language 'en'."""
    pbx = await pbx_factory(language="en")
    offset = pbx.log_offset()
    result = await sipp.call(
        "4930177",
        local_addr=pbx.trunk_in_address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id=CALLER_NUMBER,
        audio=False,
        bye_timeout=20,
    )
    assert result.ok, result.describe()
    channel = _fallback_channel(pbx, "4930177", offset)
    log = pbx.log_text(offset)
    for sound in ("all-circuits-busy-now", "please-try-call-later"):
        assert re.search(rf"<{re.escape(channel)}> Playing '{sound}\.\w+' \(language 'en'\)", log)
