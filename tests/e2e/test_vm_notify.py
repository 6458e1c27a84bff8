"""Voicemail notification end to end (issue 16): a citizen leaves a voicemail over the
trunk on the real Asterisk, `hotline serve` mails it to a real local SMTP server
(aiosmtpd) with the WAV attached; with the mail server down the call is unaffected and
the message arrives once the server is back, also across a restart of the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from smtp_support import SmtpSink
from sqlalchemy import select

from ari_app.db.models import MailOutbox, Outcome, Voicemail
from devenv.asterisk import PrivateAsterisk

from .app_harness import ServeProcess
from .hotline_world import CALLER, Sessions, ended_calls, leave_voicemail, wait_until

pytestmark = pytest.mark.e2e

ServeFactory = Callable[..., Awaitable[ServeProcess]]


async def _leave_voicemail(pbx: PrivateAsterisk, sessions: Sessions, sipp_dir: Path) -> Voicemail:
    """The existing voicemail scenario, on a hotline that mails its voicemails."""
    result = await leave_voicemail(pbx, sessions, sipp_dir, vm_notify="team@example.org")
    # What the caller gets does not depend on the mail server.
    assert result.final_status == 200 and result.got_bye(), result.describe()
    (row,) = await ended_calls(sessions)
    assert row.outcome is Outcome.VOICEMAIL
    async with sessions() as session:
        vm = await session.scalar(select(Voicemail))
    assert vm is not None and vm.duration_s > 0 and vm.caller_number == CALLER
    return vm


def _check_message(sink: SmtpSink, vm: Voicemail) -> None:
    ((rcpt, message),) = sink.messages
    assert rcpt == ["team@example.org"]
    assert CALLER not in message.get_body().get_content()  # type: ignore[union-attr]
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == f"voicemail-500-{vm.id}.wav"
    audio = part.get_content()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 1000


async def test_voicemail_is_mailed_with_the_recording(
    pbx: PrivateAsterisk, serve_factory: ServeFactory, sessions: Sessions, sipp_dir: Path
) -> None:
    with SmtpSink() as sink:
        await serve_factory(pbx, **sink.env())
        vm = await _leave_voicemail(pbx, sessions, sipp_dir)
        await sink.wait_for(1, timeout=10)
    _check_message(sink, vm)
    took = sink.arrived[0] - vm.recorded_at.timestamp()
    assert took < 10, f"voicemail stored -> mail received: {took:.2f} s"
    print(f"voicemail stored -> mail received: {took:.2f} s")


async def _pending(sessions: Sessions) -> MailOutbox | None:
    async with sessions() as session:
        row: MailOutbox | None = await session.scalar(select(MailOutbox))
        return row


async def test_mail_server_down_the_call_goes_on_and_the_mail_follows(
    pbx: PrivateAsterisk, serve_factory: ServeFactory, sessions: Sessions, sipp_dir: Path
) -> None:
    sink = SmtpSink()  # its port is known, nothing listens yet
    first = await serve_factory(pbx, **sink.env())
    vm = await _leave_voicemail(pbx, sessions, sipp_dir)

    async def failed_once() -> bool:
        row = await _pending(sessions)
        return row is not None and row.attempts >= 1 and row.last_error is not None

    await wait_until(failed_once, 10, "a failed delivery while the mail server is down")
    assert "not sent" in first.log()
    # The app restarts while the server is still down: the notice waits in Postgres.
    await first.stop()
    await serve_factory(pbx, **sink.env())
    with sink:
        # first retry after the backoff (5 s after the failed try, 10 s after the next)
        await sink.wait_for(1, timeout=25)

        async def sent() -> bool:
            row = await _pending(sessions)
            return row is not None and row.sent_at is not None

        await wait_until(sent, 5, "the notice marked sent")
    _check_message(sink, vm)
