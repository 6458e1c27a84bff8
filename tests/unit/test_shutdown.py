"""`hotline serve` ends after SIGTERM even when one part hangs, and says which part."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from ari_app.app import stop_step, stop_tasks


async def _stuck() -> None:
    await asyncio.sleep(3600)


async def _stubborn(release: asyncio.Event) -> None:
    # The bug this guards against: a task that swallows its cancellation.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await release.wait()


async def test_a_hanging_step_is_named_with_where_it_waits_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ari_app.app")
    async with asyncio.timeout(2):
        await stop_step("panel", _stuck(), 0.1)
    assert "stopping: panel still busy after 0.1 s" in caplog.text
    assert "_stuck" in caplog.text and "sleep" in caplog.text


async def test_a_failing_step_is_logged_and_the_next_step_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("pool gone")

    await stop_step("database pool", broken(), 1)
    assert "stopping: database pool failed: RuntimeError('pool gone')" in caplog.text


async def test_a_task_ignoring_cancellation_is_named_and_does_not_block_the_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    stubborn = asyncio.create_task(_stubborn(release), name="roster")
    polite = asyncio.create_task(_stuck(), name="sweep")
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(2):
            assert await stop_tasks([stubborn, polite], 0.1) == 1
        assert polite.cancelled()
        assert "task roster ignores cancellation at test_shutdown.py" in caplog.text
        assert "sweep" not in caplog.text
    finally:
        release.set()
        await stubborn
