"""The team panel with the real system: a sipp phone dials *21, the agent appears as
available within 2 s; a citizen reaches that agent, the page shows "on a call"; after the
BYE it shows available again. The screenshot is kept in artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from selenium import webdriver

from devenv import sipp
from devenv.asterisk import PrivateAsterisk
from devenv.ports import free_port
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .browser_support import agent_css, browser, screenshot, text_of, wait_css
from .hotline_world import Sessions, seed_hotline, trunk_call

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, used by name


async def test_panel_follows_a_real_agent(
    pbx: PrivateAsterisk,
    serve_factory: Callable[..., Awaitable[ServeProcess]],
    sessions: Sessions,
    browser: webdriver.Chrome,
    sipp_dir: Path,
) -> None:
    (agent,) = await seed_hotline(sessions, devices=("1001",), logged_in=False)
    port = free_port("127.0.0.1", "tcp")
    await serve_factory(pbx, HOTLINE_PANEL_LISTEN=f"127.0.0.1:{port}")
    await asyncio.to_thread(browser.get, f"http://127.0.0.1:{port}/")
    await wait_css(browser, agent_css(agent.number, "unavailable"), timeout=5)

    login = await sipp.start_call(
        "*21",
        local_addr=pbx.phone("1001").address,
        pbx_addr=pbx.sip_address,
        workdir=sipp_dir,
        caller_id="1001",
        audio=False,
        bye_timeout=20,
        name="login",
    )
    async with login:
        assert (await login.wait()).final_status == 200
    # While dialling *21 the phone itself is in a call (shown as on a call); once the
    # confirmation ended, the agent is available within 2 s.
    await wait_css(browser, agent_css(agent.number, "available"), timeout=2)

    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.3, hangup_after=4):
        async with await trunk_call(pbx, sipp_dir, bye_timeout=30) as call:
            await wait_css(browser, agent_css(agent.number, "on_call"), timeout=5)
            assert await text_of(browser, f'[data-agent="{agent.number}"] .state') == "on a call"
            await screenshot(browser, "panel-live-on-call.png")
            assert (await call.wait()).got_bye()
    await wait_css(browser, agent_css(agent.number, "available"), timeout=3)
    await screenshot(browser, "panel-live-available.png")
