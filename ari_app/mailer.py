"""Delivers the voicemail notices of the outbox (services/notifications.py) over SMTP.

Runs as a task of `hotline serve`. It never touches a call: a mail server that is down
only delays the notices, which wait in Postgres (across restarts) and are retried with
backoff. Each node sends the notices of its own voicemails, whose recordings its Asterisk
holds. Delivery is at least once: a process killed between the SMTP answer and the
database update sends that notice again after the lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError, AriNotFound
from ari_app.config import SmtpSettings
from ari_app.services import notifications
from ari_app.services.notifications import Notice

log = logging.getLogger(__name__)

POLL_S = 1.0  # a new notice goes out within about a second
SMTP_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 60.0  # a few MB of WAV


def _now() -> datetime:
    return datetime.now(UTC)


class Mailer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ari: AriClient,
        smtp: SmtpSettings,
        node: str,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.sessions = sessions
        self.ari = ari
        self.smtp = smtp
        self.node = node
        self.clock = clock
        self.sent = 0

    async def run(self) -> None:
        log.info(
            "voicemail notification: sending through %s:%d as %s",
            self.smtp.host,
            self.smtp.port,
            self.smtp.sender,
        )
        while True:
            try:
                while await self.send_due():
                    pass
            except Exception as exc:  # the database may be away: try again later
                log.warning("voicemail notification: outbox unavailable: %s", exc)
            await asyncio.sleep(POLL_S)

    async def send_due(self) -> int:
        """Claim and try the due notices once; returns how many were claimed."""
        async with self.sessions() as session, session.begin():
            due = await notifications.claim_due(session, self.node, self.clock())
        for notice in due:
            await self._deliver(notice)
        return len(due)

    async def _deliver(self, notice: Notice) -> None:
        try:
            message = await self._message(notice)
            await aiosmtplib.send(
                message,
                hostname=self.smtp.host,
                port=self.smtp.port,
                username=self.smtp.user or None,
                password=self.smtp.password or None,
                start_tls=self.smtp.starttls,
                use_tls=False,
                timeout=SMTP_TIMEOUT_S,
            )
        except (aiosmtplib.SMTPException, OSError, AriError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            async with self.sessions() as session, session.begin():
                retry_at = await notifications.mark_failed(
                    session, notice.id, notice.attempts, self.clock(), error
                )
            log.warning(
                "voicemail notification %d (voicemail %d) not sent, try %d, next at %s: %s",
                notice.id,
                notice.voicemail_id,
                notice.attempts,
                retry_at.isoformat(timespec="seconds"),
                error,
            )
            return
        async with self.sessions() as session, session.begin():
            await notifications.mark_sent(session, notice.id, self.clock())
        self.sent += 1
        log.info(
            "voicemail notification %d (voicemail %d) sent to %d recipient(s)",
            notice.id,
            notice.voicemail_id,
            len(notice.recipients),
        )

    async def _message(self, notice: Notice) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(notice.recipients)
        message["Subject"] = notice.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.smtp.sender.rpartition("@")[2])
        body = notice.body
        audio = None
        if notice.attach:
            try:
                audio = await self.ari.get_stored_recording_file(
                    notice.recording_name, timeout=FETCH_TIMEOUT_S
                )
            except AriNotFound:  # deleted meanwhile: the notice still says it came
                body += "\n(The recording is no longer on the phone system.)\n"
        message.set_content(body)
        if audio is not None:
            message.add_attachment(
                audio,
                maintype="audio",
                subtype="wav",
                filename=f"voicemail-{notice.hotline_number}-{notice.voicemail_id}.wav",
            )
        return message
