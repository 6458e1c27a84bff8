"""Stopping the child processes the dev/test harness starts (Kamailio, hotline serve)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


async def terminate(proc: asyncio.subprocess.Process | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` s; a process already gone is fine."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
