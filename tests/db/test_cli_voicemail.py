"""`hotline voicemail ...` against the real Postgres and the in-process fake ARI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import Cli, FakeAri, ari_env
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AuditEntry, Voicemail
from ari_app.services import admin
from devenv.ports import free_port

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt fake-audio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as fake:
        yield fake


@pytest.fixture
async def cli(sessions: Sessions, database_url: str, fake: FakeAri) -> Cli:
    cli = Cli(database_url)
    cli.env.update(ari_env(fake))
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        h500 = await admin.create_hotline(session, "500", "Bürgerbüro")
        h510 = await admin.create_hotline(session, "510", "Bauamt")
        for i, (hotline, minutes) in enumerate(((h500, 30), (h500, 20), (h510, 10)), start=1):
            name = f"hotline-vm-{i}"
            session.add(
                Voicemail(
                    hotline_id=hotline.id,
                    caller_number=f"+4930{i}",
                    duration_s=10 * i,
                    recording_name=name,
                    recorded_at=now - timedelta(minutes=minutes),
                )
            )
            if i != 2:  # the second one's recording is gone from Asterisk
                fake.stored_recordings[name] = {"name": name, "format": "wav"}
                fake.recording_files[name] = WAV + bytes([i])
    return cli


async def _ids(sessions: Sessions) -> list[int]:
    async with sessions() as session:
        return list(await session.scalars(select(Voicemail.id).order_by(Voicemail.id)))


async def test_list(cli: Cli) -> None:
    rows = await cli.json("voicemail", "list")
    assert [(r["id"], r["hotline"], r["caller"], r["duration_s"]) for r in rows] == [
        (1, "500", "+49301", 10),
        (2, "500", "+49302", 20),
        (3, "510", "+49303", 30),
    ]
    assert [r["id"] for r in await cli.json("voicemail", "list", "510")] == [3]
    table = (await cli.ok("voicemail", "list", "500")).stdout.splitlines()
    assert table[0].split() == ["ID", "HOTLINE", "RECORDED", "CALLER", "LENGTH", "HEARD", "DONE"]
    assert len(table) == 3 and "+49301" in table[1] and "10s" in table[1]
    assert await cli.fails("voicemail", "list", "999") == "error: no hotline with number 999"


async def test_mark_done(cli: Cli, sessions: Sessions) -> None:
    result = await cli.ok("voicemail", "mark-done", "1", "3")
    assert result.stdout.splitlines() == ["voicemail 1 marked done", "voicemail 3 marked done"]
    assert [r["id"] for r in await cli.json("voicemail", "list")] == [2]
    all_rows = await cli.json("voicemail", "list", "--all")
    assert [r["id"] for r in all_rows] == [1, 2, 3] and all_rows[0]["done_at"] is not None
    assert "voicemail 1 was done" in (await cli.ok("voicemail", "mark-done", "1")).stdout
    assert await cli.fails("voicemail", "mark-done", "2", "99") == "error: no voicemail with id 99"
    assert [r["id"] for r in await cli.json("voicemail", "list")] == [2], "one transaction"
    await cli.fails("voicemail", "mark-done", code=2)
    await cli.fails("voicemail", "mark-done", "x", code=2)


async def test_export(cli: Cli, sessions: Sessions, tmp_path: Path) -> None:
    target = tmp_path / "message.wav"
    result = await cli.ok("voicemail", "export", "1", "-o", str(target))
    assert target.read_bytes() == WAV + b"\x01"
    assert result.stdout.strip() == f"voicemail 1 written to {target}"
    assert "exists already" in await cli.fails("voicemail", "export", "3", "-o", str(target))
    await cli.ok("voicemail", "export", "3", "-o", str(target), "--force")
    assert target.read_bytes() == WAV + b"\x03"
    raw = await cli.ok("voicemail", "export", "1", "-o", "-")
    assert raw.stdout_bytes == WAV + b"\x01"
    assert "is gone from Asterisk" in await cli.fails(
        "voicemail", "export", "2", "-o", str(tmp_path / "x.wav")
    )
    assert not (tmp_path / "x.wav").exists()
    assert await cli.fails("voicemail", "export", "99") == "error: no voicemail with id 99"
    assert "cannot write" in await cli.fails(
        "voicemail", "export", "1", "-o", str(tmp_path / "no" / "dir.wav")
    )
    async with sessions() as session:
        exports = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "voicemail_export"))
        )
    assert len(exports) == 3


async def test_export_needs_ari(cli: Cli) -> None:
    line = await cli.fails("voicemail", "export", "1", env={"HOTLINE_ARI_URL": None})
    assert line == "error: HOTLINE_ARI_URL is not set"
    closed = f"http://127.0.0.1:{free_port()}"
    line = await cli.fails("voicemail", "export", "1", env={"HOTLINE_ARI_URL": closed})
    assert line.startswith("error: Asterisk (ARI) unreachable")


async def test_delete(cli: Cli, sessions: Sessions, fake: FakeAri) -> None:
    result = await cli.ok("voicemail", "delete", "1", "2", "--yes")
    assert "the recording of voicemail 2 was already gone" in result.stderr
    assert await _ids(sessions) == [3]
    assert "hotline-vm-1" not in fake.stored_recordings
    assert fake.find_requests("DELETE", "/recordings/stored/hotline-vm-1")
    # Asterisk refusing: the row stays, nothing is lost silently.
    fake.fail("DELETE", "/recordings/stored/.*", 500, "disk on fire")
    assert "Asterisk (ARI) refused" in await cli.fails("voicemail", "delete", "3", "--yes")
    assert await _ids(sessions) == [3]
    fake.clear_injections()
    assert await cli.fails("voicemail", "delete", "3", "99", "--yes") == (
        "error: no voicemail with id 99"
    )
    assert await _ids(sessions) == [3]
    aborted = await cli("voicemail", "delete", "3")  # no --yes and no answer: aborted
    assert aborted.exit_code == 1 and "Aborted" in aborted.stderr
    await cli.ok("voicemail", "delete", "3", input="y\n")
    assert await _ids(sessions) == []
    async with sessions() as session:
        actions = [e.action for e in await session.scalars(select(AuditEntry))]
    assert actions.count("voicemail_delete") == 3
