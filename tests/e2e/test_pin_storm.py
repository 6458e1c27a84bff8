"""Issue 13, finding 6 end to end (small): ten phones outside the PBX guess PINs on the
service line at once while two citizens call the hotline; both calls still ring an agent's
phone within a bound. The full-size check (30 service calls, 90 hashes) is the DB-level
tests/db/test_pin_concurrency.py; thirty sipp calls are too heavy for the 2-core CI box."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .agent_phone import heard, service_call
from .app_harness import AriObserver, ServeProcess
from .hotline_world import Sessions, seed_hotline, trunk_call

pytestmark = pytest.mark.e2e

GUESSERS = 10
RING_BOUND_S = 8.0  # from the INVITE of the citizen to the INVITE at the agent's phone


async def test_service_line_guessing_does_not_hold_up_hotline_calls(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await seed_hotline(sessions, devices=("1001",))
    guessers = [
        asyncio.create_task(
            service_call(
                pbx,
                sipp_dir,
                caller_id=f"+49305550{i:03d}",
                keys="".join(f"3{i:02d}#9{i:02d}{t}11#" for t in range(3)),
                key_delay=0.5,
                name=f"guesser{i}",
            )
        )
        for i in range(GUESSERS)
    ]
    try:
        await heard(observer, "sound:agent-pass", timeout=20)  # the guessing is under way
        async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, mode="never") as phone:
            delays = []
            for name in ("citizen1", "citizen2"):
                seen = len(phone.messages())
                start = time.monotonic()
                async with await trunk_call(pbx, sipp_dir, hangup_after=2, name=name) as call:
                    await phone.wait_for_invite(after=seen, timeout=RING_BOUND_S + 5)
                    delays.append(time.monotonic() - start)
                    await call.wait()
        results = await asyncio.wait_for(asyncio.gather(*guessers), 120)
    finally:
        for task in guessers:
            task.cancel()
        await asyncio.gather(*guessers, return_exceptions=True)
    print(f"ring delays {[round(d, 2) for d in delays]}")
    assert max(delays) < RING_BOUND_S, delays
    assert all(r.got_bye() for r in results), "every guesser was sent away"
