"""A real local SMTP server (aiosmtpd, in a thread of its own) that keeps what it receives,
for the voicemail notification tests; it can be stopped and started again on its port
to play a mail server that is down for a while."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devenv.ports import free_port


class _Keep:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.sink.received(list(envelope.rcpt_tos), message)
        return "250 OK"


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.arrived: list[float] = []  # time.time() of each message
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def env(self, sender: str = "hotline@example.org") -> dict[str, str]:
        return {
            "HOTLINE_SMTP_HOST": self.host,
            "HOTLINE_SMTP_PORT": str(self.port),
            "HOTLINE_SMTP_FROM": sender,
            "HOTLINE_SMTP_STARTTLS": "no",
        }

    def received(self, rcpt: list[str], message: EmailMessage) -> None:
        with self._lock:
            self.messages.append((rcpt, message))
            self.arrived.append(time.time())

    def start(self) -> SmtpSink:
        self._controller = Controller(_Keep(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Until `count` messages arrived (bounded); returns them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [m for _, m in self.messages]
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(got)} of {count} message(s) within {timeout}s")
            await asyncio.sleep(0.05)
