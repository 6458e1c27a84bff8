"""Runs `hotline serve` as a real subprocess against a private Asterisk and Postgres, and
observes ARI events the way a test needs (a second ARI app with subscribeAll)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from devenv.asterisk import PrivateAsterisk

HOTLINE = [str(Path(sys.executable).with_name("hotline"))]


class ServeProcess:
    """`hotline serve` with the HOTLINE_* variables of the contract, stopped by its PID."""

    def __init__(self, pbx: PrivateAsterisk, database_url: str, log_path: Path, **env: str) -> None:
        self.pbx = pbx
        self.log_path = log_path
        self.env = {
            **os.environ,
            **pbx.env(),
            "HOTLINE_DATABASE_URL": database_url,
            "HOTLINE_LOG_LEVEL": "INFO",
            "HOTLINE_PANEL_LISTEN": "127.0.0.1:0",
            # Most e2e tests assert English core sounds; German ones set the language of
            # their hotline and agents (tests/e2e/test_german.py).
            "HOTLINE_LANGUAGE": "en",
            "HOTLINE_WORKERS": "1",  # one process unless a test asks for more
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *HOTLINE,
                "serve",
                "--grace",
                "5",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        await self.wait_registered(timeout)

    async def wait_registered(self, timeout: float = 20.0) -> None:
        """Until Asterisk lists our Stasis app (its WebSocket is connected)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(headers=self.pbx.ari_headers()) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"hotline serve exited:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(
                        f"{self.pbx.ari_url}/ari/applications/{self.pbx.app_name}",
                        timeout=aiohttp.ClientTimeout(2),
                    ) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"hotline serve did not register in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            tail = "\n".join(self.log().splitlines()[-40:])
            raise AssertionError(f"hotline serve did not stop in {timeout}s:\n{tail}") from None
        # A part of the shutdown that hung and was left behind (ari_app/app.py stop_step):
        # shown in pytest's warnings summary, so that CI output names it.
        for line in self.log().splitlines():
            if "still busy after" in line or "ignores cancellation" in line:
                warnings.warn(f"hotline serve: {line}", stacklevel=2)
        return code


# What a test's observing ARI app subscribes to: every channel, bridge and endpoint, but no
# device state. An app subscribed to all device states (`subscribeAll=true` includes them)
# can wedge Asterisk's ARI for good when its WebSocket closes while a device's change is
# being sent to it: the teardown waits for the device-state subscription's end holding the
# session's lock, which that delivery waits for (Asterisk 22; asterisk/asterisk#2170;
# `python -m devenv.ari_wedge` shows it). The shared test Asterisk then refused every
# later test's requests (its HTTP sessions ran out behind the stuck ones).
OBSERVED_SOURCES = ("channel:", "bridge:", "endpoint:")


async def observe(
    session: aiohttp.ClientSession, pbx: PrivateAsterisk, app: str
) -> aiohttp.ClientWebSocketResponse:
    """The event WebSocket of a test's ARI app `app` that hears every channel, bridge and
    endpoint (OBSERVED_SOURCES); `session` carries ARI's credentials. Close it when done."""
    ws_url = pbx.ari_url.replace("http://", "ws://", 1)
    ws = await session.ws_connect(f"{ws_url}/ari/events?app={app}")
    try:
        async with session.post(
            f"{pbx.ari_url}/ari/applications/{app}/subscription",
            params={"eventSource": ",".join(OBSERVED_SOURCES)},
        ) as response:
            response.raise_for_status()
    except BaseException:
        await ws.close()
        raise
    return ws


class AriObserver:
    """A test-only ARI app subscribed to every channel, bridge and endpoint (`observe`): it
    sees the events of the calls the app under test handles (playbacks, bridges, DTMF)
    without touching them."""

    def __init__(self, pbx: PrivateAsterisk, app: str = "observer") -> None:
        self.pbx = pbx
        self.app = app
        self.events: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> AriObserver:
        self._session = aiohttp.ClientSession(headers=self.pbx.ari_headers())
        try:
            ws = await observe(self._session, self.pbx, self.app)
        except BaseException:
            await self._session.close()
            raise
        self._task = asyncio.create_task(self._read(ws))
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self._changed.set()

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session:
            await self._session.close()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]

    async def wait_for(
        self,
        event_type: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.of_type(event_type):
                if predicate(e):
                    return e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = sorted({e.get("type", "?") for e in self.events})
                raise AssertionError(f"no {event_type} within {timeout}s; saw {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
