"""German end to end (issue 14): a German hotline's caller hears only German sounds, an
agent whose language is German hears German whatever the hotline's language, and the
prompt table is complete on this PBX.

What a person heard is read twice: from ARI (the observer's PlaybackStarted events carry
each media URI and the playback's language) and from the files Asterisk opened (its
verbose log: "<channel> Playing 'digits/1.slin' (language 'de')"; Asterisk takes
`sounds/<language>/<name>` when it exists, so each such sound must exist in sounds/de/).
The app down: tests/e2e/test_fallback.py (the fallback announcement is German).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ari_app.services import admin
from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .agent_phone import MOBILE, PIN_ADA, dial_code, heard, seed_agents, service_call
from .app_harness import AriObserver, ServeProcess
from .hotline_world import HOTLINE, Sessions, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

SOUNDS = Path("/usr/share/asterisk/sounds")
PLAYING = re.compile(
    r"<(?P<channel>[^>]+)> Playing '(?P<file>[^']+)\.\w+' \(language '(?P<lang>\w+)'\)"
)
HOTLINE_CLI = str(Path(sys.executable).with_name("hotline"))


def playbacks(observer: AriObserver, since: int = 0) -> list[dict[str, Any]]:
    """PlaybackStarted payloads: media_uri, language, target_uri (channel:<id>)."""
    return [e["playback"] for e in observer.events[since:] if e.get("type") == "PlaybackStarted"]


def on_channel(observer: AriObserver, channel_id: str) -> list[tuple[str, str]]:
    return [
        (p["media_uri"], p.get("language", ""))
        for p in playbacks(observer)
        if p.get("target_uri") == f"channel:{channel_id}"
    ]


def files_played(pbx: PrivateAsterisk, offset: int, channel_prefix: str) -> list[tuple[str, str]]:
    """(file, language) of every sound Asterisk played on channels named `channel_prefix...`."""
    return [
        (m["file"], m["lang"])
        for m in PLAYING.finditer(pbx.log_text(offset))
        if m["channel"].startswith(channel_prefix)
    ]


def german_file(name: str) -> bool:
    return any((SOUNDS / "de" / name).parent.glob(f"{Path(name).name}.*"))


async def channels(pbx: PrivateAsterisk) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers=pbx.ari_headers()) as http:
        async with http.get(f"{pbx.ari_url}/ari/channels") as resp:
            resp.raise_for_status()
            result: list[dict[str, Any]] = await resp.json()
            return result


async def test_german_hotline_caller_hears_only_german(
    pbx: PrivateAsterisk,
    serve: ServeProcess,  # HOTLINE_LANGUAGE en: the hotline's own language must win
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await seed_hotline(
        sessions,
        devices=("1001",),
        language="de",
        announce_frequency_s=2,
        max_wait_s=7,
        ring_timeout_s=20,
        timeout_action="voicemail",
    )
    offset = pbx.log_offset()
    seen_languages: dict[str, str] = {}

    async def caller_channels() -> list[dict[str, Any]]:
        found = [c for c in await channels(pbx) if c["name"].startswith("PJSIP/trunk-")]
        seen_languages.update({c["id"]: c["language"] for c in found})
        return found if len(found) == 2 else []

    # Two callers wait (the agent never answers): the second hears "there is 1 caller
    # before you" in German, both reach the German voicemail prompt after 7 s.
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, mode="never"):
        first = await trunk_call(pbx, sipp_dir, hangup_after=10, bye_timeout=25)
        async with first:
            await asyncio.sleep(0.5)  # the first caller is first in the queue
            second = await trunk_call(pbx, sipp_dir, hangup_after=10, bye_timeout=25)
            async with second:
                ids = [c["id"] for c in await wait_until(caller_channels, 10, "both callers")]
                await heard(observer, "number:1", timeout=10)
                await heard(observer, "sound:vm-intro", timeout=15)
                await first.wait()
                await second.wait()

    assert set(seen_languages.values()) == {"de"}, seen_languages
    heard_by = {cid: on_channel(observer, cid) for cid in ids}
    everything = [item for items in heard_by.values() for item in items]
    assert everything and {lang for _, lang in everything} == {"de"}, heard_by
    media = {uri for uri, _ in everything}
    assert {"sound:queue-thereare", "number:1", "sound:queue-callswaiting"} <= media, media
    assert "sound:vm-intro" in media, media

    opened = files_played(pbx, offset, "PJSIP/trunk-")
    assert opened, "Asterisk logged no playback on the callers' channels"
    assert {lang for _, lang in opened} == {"de"}, opened
    # the beep before the recording is a tone, the same in every language
    names = {name for name, _ in opened if name != "beep"}
    assert "vm-intro" in names and "queue-thereare" in names, names
    assert any(n.startswith("digits/") for n in names), "the number was spoken from digits/"
    assert all(german_file(n) for n in names), [n for n in names if not german_file(n)]


async def _set_language(sessions: Sessions, agent_number: str, language: str) -> None:
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, agent_number)
        await admin.update_agent(session, agent, language=language)


async def test_german_agent_hears_german_on_an_english_hotline(
    pbx: PrivateAsterisk,
    serve: ServeProcess,  # HOTLINE_LANGUAGE en
    observer: AriObserver,
    sessions: Sessions,
    sipp_dir: Path,
) -> None:
    await seed_agents(sessions, language="en")
    await _set_language(sessions, "101", "de")  # Ada

    # *21 and *22 from Ada's desk phone: German confirmations
    for code, confirmation in (("*21", "sound:agent-loginok"), ("*22", "sound:agent-loggedoff")):
        since, offset = len(observer.events), pbx.log_offset()
        result = await dial_code(pbx, "1001", code, sipp_dir)
        assert result.got_bye(), result.describe()
        await heard(observer, confirmation, since=since)
        assert {p.get("language") for p in playbacks(observer, since)} == {"de"}
        opened = files_played(pbx, offset, "PJSIP/1001-")
        assert opened and {lang for _, lang in opened} == {"de"}, opened
        assert all(german_file(name) for name, _ in opened), opened

    # The service line from her mobile: before the PIN nobody is known (the server's
    # language, English here); the menu and the confirmation are German.
    since = len(observer.events)
    result = await service_call(
        pbx, sipp_dir, caller_id=MOBILE, keys=f"101#{PIN_ADA}#,1", hangup_after=7
    )
    assert result.final_status == 200, result.describe()
    await heard(observer, "sound:agent-loginok", since=since)
    heard_now = [(p["media_uri"], p.get("language")) for p in playbacks(observer, since)]
    assert ("sound:agent-user", "en") in heard_now, heard_now
    after_pin = heard_now[[m for m, _ in heard_now].index("sound:agent-pass") + 1 :]
    assert ("sound:hotline/for", "de") in after_pin, after_pin  # "für": the menu
    assert ("sound:agent-loginok", "de") in after_pin, after_pin
    assert all(lang == "de" for _, lang in after_pin), after_pin

    # A citizen calls the English hotline: the caller's channel is English (the app set
    # it, the dialplan says de), Ada's mobile hears "500, press 1" in German.
    since = len(observer.events)
    far_end = (pbx.trunk_far_address, pbx.trunk_far_port)
    caller_language: list[str] = []

    async def caller_is_english() -> bool:
        # The caller's channel is the one that came through the hotline dialplan (in Stasis
        # it sits in [hotline-stasis], which picks a worker); the app's legs did not.
        found = [
            c
            for c in await channels(pbx)
            if c["dialplan"]["context"] in ("hotline-inbound", "hotline-stasis")
        ]
        caller_language[:] = [c["language"] for c in found]
        return caller_language == ["en"]

    async with SippPhone(*far_end, sipp_dir, user="mobile", dtmf="1", dtmf_delay=2.5) as mobile:
        async with await trunk_call(pbx, sipp_dir, hangup_after=6) as call:
            await mobile.wait_for_invite()
            await wait_until(caller_is_english, 10, f"an English caller ({caller_language})")
            await heard(observer, "sound:hotline/if-correct-press", since=since)
            await call.wait()
        await mobile.wait_for_message(method="BYE", timeout=10)
    leg = [p for p in playbacks(observer, since) if p["media_uri"].endswith("if-correct-press")]
    leg_channel = leg[0]["target_uri"]
    announcement = [
        (p["media_uri"], p.get("language"))
        for p in playbacks(observer, since)
        if p["target_uri"] == leg_channel
    ]
    # "500, zum Bestätigen drücken Sie die 1": the playlist stops where the agent pressed 1
    # (the mobile presses during the prompt), so "digits:1" may not have been played.
    assert announcement[:2] == [
        (f"digits:{HOTLINE}", "de"),
        ("sound:hotline/if-correct-press", "de"),
    ], announcement
    assert announcement[2:] in ([], [("digits:1", "de")]), announcement


async def test_prompts_check_through_ari(pbx: PrivateAsterisk, tmp_path: Path) -> None:
    """`hotline prompts check` asks this Asterisk (ARI GET /sounds) and finds every prompt
    of the table in German and English: what `make setup` installed and produced."""
    env = {**pbx.env(), "HOTLINE_DATABASE_URL": "postgresql://unused@127.0.0.1/unused"}
    proc = await asyncio.create_subprocess_exec(
        HOTLINE_CLI,
        "prompts",
        "check",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out + err).decode()
    assert "prompts present in de, en" in out.decode()
