"""`hotline serve` against a real Asterisk: a caller is answered and hears a prompt; the app
survives an Asterisk restart and handles the next call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ari_app.db.models import Call, Outcome
from devenv import sipp
from devenv.asterisk import PrivateAsterisk

from .app_harness import AriObserver, ServeProcess
from .conftest import PbxFactory

pytestmark = pytest.mark.e2e


async def _call_unknown_number(pbx: PrivateAsterisk, sipp_dir: Path) -> sipp.CallResult:
    return await sipp.call(
        "4930999",
        local_addr=pbx.trunk_in_address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id="030111222",
        audio=False,
        bye_timeout=15,
    )


async def test_app_answers_and_plays_a_prompt(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sipp_dir: Path,
    sessions: Any,
) -> None:
    result = await _call_unknown_number(pbx, sipp_dir)
    assert result.final_status == 200, result.describe()
    assert result.got_bye() and not result.sent_bye(), "the app hangs up after the prompt"
    started = await observer.wait_for(
        "PlaybackStarted", lambda e: e["playback"]["media_uri"] == "sound:ss-noservice"
    )
    channel_target = started["playback"]["target_uri"]
    await observer.wait_for(
        "PlaybackFinished", lambda e: e["playback"]["target_uri"] == channel_target
    )
    async with sessions() as session:
        call = await session.scalar(select(Call))
    assert call is not None and call.outcome is Outcome.REJECTED_UNKNOWN_NUMBER
    assert call.caller_number == "030111222" and call.dialled_number == "4930999"


async def test_reconnects_after_asterisk_restart(
    pbx_factory: PbxFactory,
    serve_factory: Callable[..., Awaitable[ServeProcess]],
    sipp_dir: Path,
    sessions: Any,
) -> None:
    pbx = await pbx_factory()
    serve = await serve_factory(pbx)
    await pbx.restart()
    await serve.wait_registered(timeout=20)
    result = await _call_unknown_number(pbx, sipp_dir)
    assert result.final_status == 200 and result.got_bye(), result.describe()
    assert "reconnects=1" in serve.log()
