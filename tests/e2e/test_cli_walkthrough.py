"""An admin's walkthrough, only through the `hotline` CLI and SIP phones: create a hotline
and two agents, log one in, a citizen is answered by that agent, the report counts it;
a citizen who reaches voicemail leaves a message that `voicemail export` writes as WAV."""

from __future__ import annotations

import asyncio
import json
import os
import wave
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from devenv.asterisk import PrivateAsterisk
from devenv.sipp import SippPhone

from .app_harness import HOTLINE, ServeProcess
from .hotline_world import trunk_call, wait_until

pytestmark = pytest.mark.e2e


class Cli:
    def __init__(self, pbx: PrivateAsterisk, database_url: str) -> None:
        self.env = {**os.environ, **pbx.env(), "HOTLINE_DATABASE_URL": database_url}

    async def __call__(self, *args: str, stdin: str = "", expect: int = 0) -> str:
        proc = await asyncio.create_subprocess_exec(
            *HOTLINE,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
        assert proc.returncode == expect, (args, proc.returncode, err.decode())
        assert b"Traceback" not in err
        return out.decode()


async def _report(cli: Cli) -> dict[str, Any]:
    today = date.today()
    text = await cli(
        "report",
        "--from",
        str(today - timedelta(days=1)),
        "--to",
        str(today + timedelta(days=1)),
        "--format",
        "json",
    )
    data = json.loads(text)
    rows = data["rows"] if isinstance(data, dict) else data
    totals: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
            elif key not in totals:
                totals[key] = value
    return totals


async def test_admin_walkthrough(
    pbx: PrivateAsterisk,
    serve: ServeProcess,
    database_url: str,
    sipp_dir: Path,
    tmp_path: Path,
) -> None:
    cli = Cli(pbx, database_url)
    await cli(
        "line",
        "create",
        "500",
        "--name",
        "Buergerbuero",
        "--ring-timeout",
        "5s",
        "--wrapup",
        "0s",
        "--announce-every",
        "0s",
        "--no-agent-action",
        "voicemail",
        "--vm-greeting",
        "silence/1",
    )
    await cli(
        "agent",
        "create",
        "201",
        "--name",
        "Anna",
        "--device",
        "PJSIP/1001",
        "--pin-stdin",
        stdin="480159\n",
    )
    await cli("agent", "create", "202", "--name", "Ben", "--device", "PJSIP/1002")
    await cli("member", "add", "500", "201")
    await cli("member", "add", "500", "202")
    await cli("login", "201", "500")

    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=1.0, hangup_after=2) as anna:
        result = await (await trunk_call(pbx, sipp_dir, bye_timeout=20)).wait()
        assert anna.invites() and anna.sent(200), "Anna's phone took the call"
    assert result.final_status == 200 and result.got_bye(), result.describe()

    async def answered() -> dict[str, Any] | None:
        totals = await _report(cli)
        return totals if totals.get("answered") == 1 else None

    totals = await wait_until(answered, 10, "the report counts the answered call")
    assert totals["offered"] == 1
    assert totals["avg_wait_s"] > 0.5, totals  # Anna's phone rang a second before answering

    # Nobody logged in: the next citizen leaves a voicemail.
    await cli("logout", "201")
    call = await trunk_call(
        pbx,
        sipp_dir,
        audio=True,
        audio_delay=1.5,
        dtmf="#",
        dtmf_delay=4,
        bye_timeout=20,
        name="vm-caller",
    )
    async with call:
        vm_result = await call.wait()
    assert vm_result.final_status == 200, vm_result.describe()

    async def listed() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = json.loads(await cli("voicemail", "list", "500", "--json"))
        return rows or None

    (message,) = await wait_until(listed, 10, "the voicemail is listed")
    target = tmp_path / "message.wav"
    await cli("voicemail", "export", str(message["id"]), "-o", str(target))
    data = target.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(str(target)) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0
