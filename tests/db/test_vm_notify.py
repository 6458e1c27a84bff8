"""Voicemail notification by e-mail (issue 16): the outbox written with the voicemail, and
the mailer delivering it to a real local SMTP server (aiosmtpd), retrying while it is down.
The recording comes from the in-process fake ARI; the e2e test uses a real Asterisk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli, FakeAri
from smtp_support import SmtpSink
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.ari.client import AriClient
from ari_app.config import SmtpSettings
from ari_app.db.models import Hotline, MailOutbox
from ari_app.mailer import Mailer
from ari_app.services import admin, notifications, voicemail

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt fake-audio"
T0 = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _hotline(sessions: Sessions, **settings: object) -> Hotline:
    async with sessions() as session, session.begin():
        return await admin.create_hotline(
            session, "500", "Bürgerbüro", vm_notify="team@example.org, lead@example.org", **settings
        )


async def _store(sessions: Sessions, hotline: Hotline, name: str = "hotline-vm-1") -> int:
    async with sessions() as session, session.begin():
        vm = await voicemail.store_voicemail(
            session,
            hotline,
            call_id=None,
            caller_number="+4930111222",
            duration_s=42,
            recording_name=name,
            now=T0,
            node="node-a",
            link_url="https://intranet.example.org/vm/{id}",
        )
        return vm.id


async def _outbox(sessions: Sessions) -> list[MailOutbox]:
    async with sessions() as session:
        return list(await session.scalars(select(MailOutbox).order_by(MailOutbox.id)))


async def test_notice_is_queued_with_the_voicemail_caller_hidden_by_default(
    sessions: Sessions,
) -> None:
    hotline = await _hotline(sessions)
    vm_id = await _store(sessions, hotline)
    (row,) = await _outbox(sessions)
    assert row.voicemail_id == vm_id and row.node == "node-a" and row.attach
    assert row.recipients == ["team@example.org", "lead@example.org"]
    assert "+4930111222" not in row.body and "not shown" in row.body
    assert "Bürgerbüro" in row.subject and "0:42" in row.subject
    assert "10:30:00 (Europe/Berlin)" in row.body  # the hotline's time zone
    assert row.sent_at is None and row.attempts == 0


async def test_caller_shown_and_link_when_the_hotline_says_so(sessions: Sessions) -> None:
    hotline = await _hotline(sessions, vm_notify_caller=True, vm_notify_attach=False)
    vm_id = await _store(sessions, hotline)
    (row,) = await _outbox(sessions)
    assert "+4930111222" in row.body and not row.attach
    assert f"https://intranet.example.org/vm/{vm_id}" in row.body


async def test_no_recipients_no_notice(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "510", "Bauamt")
    await _store(sessions, hotline)
    assert await _outbox(sessions) == []


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as fake:
        yield fake


@pytest.fixture
async def ari(fake: FakeAri) -> AsyncIterator[AriClient]:
    client = AriClient(fake.base_url, fake.user, fake.password, fake.app)
    yield client
    await client.close()


def _mailer(sessions: Sessions, ari: AriClient, sink: SmtpSink, clock: Clock) -> Mailer:
    smtp = SmtpSettings(sink.host, sink.port, sender="hotline@example.org", starttls=False)
    return Mailer(sessions, ari, smtp, "node-a", clock=clock)


async def test_mailer_attaches_the_recording_and_retries_while_the_server_is_down(
    sessions: Sessions, fake: FakeAri, ari: AriClient
) -> None:
    fake.stored_recordings["hotline-vm-1"] = {"name": "hotline-vm-1", "format": "wav"}
    fake.recording_files["hotline-vm-1"] = WAV
    hotline = await _hotline(sessions)
    vm_id = await _store(sessions, hotline)
    sink = SmtpSink()  # not started: the mail server is down
    clock = Clock(T0)
    mailer = _mailer(sessions, ari, sink, clock)

    assert await mailer.send_due() == 1
    (row,) = await _outbox(sessions)
    assert row.sent_at is None and row.attempts == 1 and row.last_error
    assert row.next_attempt_at == T0 + timedelta(seconds=notifications.backoff_s(1))
    assert await mailer.send_due() == 0, "not due again before the backoff"

    with sink:
        clock.now = row.next_attempt_at
        assert await mailer.send_due() == 1
        (message,) = await sink.wait_for(1)
    (row,) = await _outbox(sessions)
    assert row.sent_at == clock.now and row.attempts == 2
    assert sorted(sink.messages[0][0]) == ["lead@example.org", "team@example.org"]
    assert message["From"] == "hotline@example.org"
    assert "Bürgerbüro" in str(message["Subject"])
    (part,) = list(message.iter_attachments())
    assert part.get_content_type() == "audio/wav"
    assert part.get_filename() == f"voicemail-500-{vm_id}.wav"
    assert part.get_content() == WAV
    clock.now += timedelta(hours=1)
    assert await mailer.send_due() == 0, "sent once only"


async def test_a_recording_gone_from_asterisk_still_gives_the_notice(
    sessions: Sessions, ari: AriClient
) -> None:
    await _store(sessions, await _hotline(sessions))
    with SmtpSink() as sink:
        assert await _mailer(sessions, ari, sink, Clock(T0)).send_due() == 1
        (message,) = await sink.wait_for(1)
    assert list(message.iter_attachments()) == []
    assert "no longer on the phone system" in message.get_body().get_content()  # type: ignore[union-attr]


async def test_other_nodes_notices_and_concurrent_claims(sessions: Sessions) -> None:
    hotline = await _hotline(sessions)
    for i in range(6):
        await _store(sessions, hotline, f"hotline-vm-{i}")

    async def claim(node: str) -> list[int]:
        async with sessions() as session, session.begin():
            claimed = await notifications.claim_due(session, node, T0, limit=4)
            await asyncio.sleep(0.2)  # hold the row locks while the other one claims
            return [n.id for n in claimed]

    assert await claim("node-b") == []
    first, second = await asyncio.gather(claim("node-a"), claim("node-a"))
    assert len(first) + len(second) == 6 and not set(first) & set(second)


async def test_cli_sets_the_recipients(sessions: Sessions, database_url: str) -> None:
    cli = Cli(database_url)
    assert (await cli("line", "create", "500", "--name", "Bürgerbüro")).exit_code == 0
    result = await cli(
        "line", "update", "500", "--vm-notify", "a@example.org, b@example.org",
        "--vm-notify-link", "--vm-notify-caller",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    shown = json.loads((await cli("line", "show", "500", "--json")).stdout)
    assert shown["vm_notify"] == ["a@example.org", "b@example.org"]
    assert shown["vm_notify_attach"] is False and shown["vm_notify_caller"] is True
    bad = await cli("line", "update", "500", "--vm-notify", "a@example.org,<x>@y")
    assert bad.exit_code == 1 and "e-mail address" in bad.stderr
    assert (await cli("line", "update", "500", "--vm-notify", "")).exit_code == 0
    assert json.loads((await cli("line", "show", "500", "--json")).stdout)["vm_notify"] == []
