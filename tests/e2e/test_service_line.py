"""The remote service line end to end: a mobile outside the PBX calls the service number
over the trunk, types agent number + PIN (RFC 2833) and picks from the menu; the next
hotline call is then delivered to that mobile through the trunk. Calls from a number ops
never configured are refused, and three wrong PINs lock the agent and the number."""

from __future__ import annotations

from pathlib import Path

import pytest

from ari_app.db.models import Outcome, TargetKind
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .agent_phone import (
    HOME,
    MOBILE,
    PIN_ADA,
    PIN_BOB,
    agent_state,
    audit,
    heard,
    logins,
    seed_agents,
    service_call,
)
from .app_harness import AriObserver, ServeProcess
from .hotline_world import Sessions, ended_calls, trunk_call

pytestmark = pytest.mark.e2e

REFUSED = "sound:vm-incorrect"  # "login incorrect, please try later, goodbye"


async def test_login_from_the_configured_mobile_gets_the_next_call(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions)
    ada = ids["ada"]
    # agent number, PIN, then "1" (log in) while the menu plays; hang up after the
    # confirmation (the menu would come back)
    result = await service_call(
        pbx, sipp_dir, caller_id=MOBILE, keys=f"101#{PIN_ADA}#,1", hangup_after=7
    )
    assert result.final_status == 200, result.describe()
    for prompt in ("sound:agent-user", "sound:agent-pass", "sound:for"):
        await heard(observer, prompt)
    await heard(observer, "sound:agent-loginok")
    state = await agent_state(sessions, ada)
    assert (state.target, state.target_kind) == (MOBILE, TargetKind.EXTERNAL)
    assert await logins(sessions) == {(ada, ids["hotline"])}

    far_end = (pbx.trunk_far_address, pbx.trunk_far_port)
    # the mobile answers and presses 1 to take the hotline call
    async with SippPhone(*far_end, sipp_dir, user="mobile", dtmf="1") as mobile:
        async with await trunk_call(pbx, sipp_dir, hangup_after=4) as call:
            invite = await mobile.wait_for_invite()
            caller = await call.wait()
        await mobile.wait_for_message(method="BYE", timeout=5)
    assert invite.request_uri is not None and f"{MOBILE}@" in invite.request_uri
    assert caller.final_status == 200, caller.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.ANSWERED and row.agent_id == ada
    rows = await audit(sessions)
    assert [(r.action, r.path, r.detail) for r in rows] == [
        ("login", "service", {"target_kind": "external"})
    ]


async def test_login_from_an_unconfigured_number_is_refused(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions)
    result = await service_call(
        pbx, sipp_dir, caller_id="+4917000000", keys=f"101#{PIN_ADA}#,1", hangup_after=7
    )
    assert result.final_status == 200, result.describe()
    await heard(observer, "sound:feature-not-avail-line")
    assert await logins(sessions) == set()
    assert (await agent_state(sessions, ids["ada"])).target is None
    rows = await audit(sessions)
    assert [(r.action, r.path, r.detail.get("caller")) for r in rows] == [
        ("login_refused", "service", "+4917000000")
    ]


async def test_three_wrong_pins_lock_agent_and_number(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    ids = await seed_agents(sessions)
    result = await service_call(
        pbx, sipp_dir, caller_id=MOBILE, keys="101#111112#101#222223#101#333334#"
    )
    assert result.final_status == 200 and result.got_bye(), result.describe()
    await heard(observer, "sound:agent-incorrect")
    await heard(observer, REFUSED)
    # the right PIN, from Ada's other configured number: the agent is locked
    since = len(observer.events)
    result = await service_call(pbx, sipp_dir, caller_id=HOME, keys=f"101#{PIN_ADA}#")
    assert result.got_bye(), result.describe()
    await heard(observer, REFUSED, since=since)
    # another agent's right PIN from the locked number: the number is locked
    since = len(observer.events)
    result = await service_call(pbx, sipp_dir, caller_id=MOBILE, keys=f"102#{PIN_BOB}#")
    assert result.got_bye(), result.describe()
    await heard(observer, REFUSED, since=since)
    assert await logins(sessions) == set()
    rows = [(r.action, r.agent_id, r.detail.get("subject")) for r in await audit(sessions)]
    assert rows.count(("pin_failed", ids["ada"], None)) == 3
    assert ("lockout", ids["ada"], "agent:101") in rows
    assert ("lockout", ids["ada"], f"number:{MOBILE}") in rows
    assert rows[-2:] == [
        ("pin_refused_locked", ids["ada"], None),
        ("pin_refused_locked", ids["bob"], None),
    ]
