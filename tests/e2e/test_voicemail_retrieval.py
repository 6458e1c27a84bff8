"""Voicemail retrieval by phone end to end: a citizen leaves a message (nobody logged in),
then the agent dials *98<hotline> from the bound desk phone, types the PIN and hears the
message (caller number, time, recording) and marks it done with 9."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ari_app.db.models import Voicemail
from devenv.asterisk import PrivateAsterisk

from .agent_phone import PIN_ADA, audit, dial_code, heard, played_media, seed_agents
from .app_harness import AriObserver, ServeProcess
from .hotline_world import HOTLINE, Sessions, trunk_call, wait_until

pytestmark = pytest.mark.e2e

CITIZEN = "0301"  # short, so reading it out is quick


async def _deposit(pbx: PrivateAsterisk, sessions: Sessions, sipp_dir: Path) -> Voicemail:
    """Greeting (1 s of silence) and beep, then 5 s of speech, then the caller hangs up."""
    call = await trunk_call(
        pbx, sipp_dir, caller_id=CITIZEN, audio=True, audio_delay=2, hangup_after=5
    )
    async with call:
        result = await call.wait()
    assert result.final_status == 200, result.describe()

    async def stored() -> Voicemail | None:
        async with sessions() as session:
            return await session.scalar(select(Voicemail))

    vm: Voicemail = await wait_until(stored, 10, "the voicemail row")
    return vm


async def test_agent_hears_the_message_and_marks_it_done(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions, voicemail_greeting="silence/1")
    vm = await _deposit(pbx, sessions, sipp_dir)
    assert vm.caller_number == CITIZEN and vm.done_at is None

    since = len(observer.events)
    # PIN at once; 9 (mark done) about 22 s later, while the key menu plays: the count and
    # the header take about 14 s, the recording 5 s, the menu 12 s (then 8 s of timeout).
    result = await dial_code(
        pbx,
        "1001",
        f"*98{HOTLINE}",
        sipp_dir,
        keys=f"{PIN_ADA}#" + "," * 21 + "9",
        bye_timeout=50,
    )
    assert result.final_status == 200 and result.got_bye(), result.describe()
    await heard(observer, "sound:agent-pass", since=since)
    await heard(observer, f"recording:{vm.recording_name}", since=since)
    await heard(observer, "sound:vm-msgsaved", since=since)
    media = played_media(observer, since)
    assert media.index("sound:vm-from-phonenumber") < media.index(f"recording:{vm.recording_name}")
    assert f"digits:{CITIZEN}" in media and "sound:digits/today" in media

    async with sessions() as session:
        done = await session.get(Voicemail, vm.id)
    assert done is not None and done.done_at is not None
    assert done.heard_by_agent_id == ids["ada"] and done.heard_at is not None
    rows = [(r.action, r.path, r.detail.get("voicemail_id")) for r in await audit(sessions)]
    assert rows == [("voicemail_heard", "device", vm.id), ("voicemail_done", "device", vm.id)]
