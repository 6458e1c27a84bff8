"""The team panel in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a downloaded browser; scripts/install-system-deps.sh installs
both). Presence changes go through the services and Postgres; the page must follow within
the issue's bounds and survive a server restart. Screenshots land in artifacts/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from selenium import webdriver
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import connect_call, finish_call, seed_team, set_paused, waiting_call

from ari_app.db.models import CallStatus
from ari_app.services import calls
from ari_app.web.server import PanelServer

from .browser_support import agent_css, browser, screenshot, text_of, wait_css

__all__ = ["browser"]  # the fixture, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.db]

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def panel(sessions: Sessions) -> AsyncIterator[list[PanelServer]]:
    """The running panel server(s); a test may replace it (restart). All are stopped."""
    started = [PanelServer(sessions, port=0, ari_connected=lambda: True)]
    await started[0].start()
    try:
        yield started
    finally:
        for server in started:
            await server.stop()


async def test_panel_follows_presence_and_survives_a_restart(
    sessions: Sessions, browser: webdriver.Chrome, panel: list[PanelServer]
) -> None:
    team = await seed_team(sessions, logged_in=("1001",))
    server = panel[0]
    await asyncio.to_thread(browser.get, server.url + "/")
    await wait_css(browser, agent_css("1001", "available"), timeout=2)
    await wait_css(browser, agent_css("1002", "unavailable"), timeout=1)
    assert await text_of(browser, '[data-agent="1001"] .state') == "available"
    await wait_css(browser, '#connection[data-state="live"]', timeout=1)

    # A caller reaches the agent: "on a call" within a second of the change.
    call = await waiting_call(sessions, team.hotline)
    agent_id = await connect_call(sessions, team.hotline, call)
    assert agent_id == team.agent_ids["1001"]
    server.hub.notify()
    took = await wait_css(browser, agent_css("1001", "on_call"), timeout=1)
    assert took < 1.0
    assert await text_of(browser, '[data-agent="1001"] .state') == "on a call"

    # A second caller waits: the hotline card shows the queue.
    second = await waiting_call(sessions, team.hotline, waited_s=65)
    await wait_css(browser, '[data-hotline="500"][data-waiting="1"]', timeout=1.5)
    longest = await text_of(browser, '[data-hotline="500"] [data-stat="longest_wait"]')
    assert re.fullmatch(r"1:0[5-9]", longest), longest
    await screenshot(browser, "panel-on-call.png")

    # Hang-up (BYE) recorded without telling the hub: the tick brings it within a second.
    await finish_call(sessions, agent_id, call)
    await wait_css(browser, agent_css("1001", "available"), timeout=1.5)

    # Server restart: the page reconnects by itself and keeps following.
    port = server.port
    await server.stop()
    await wait_css(browser, '#connection[data-state="reconnecting"]', timeout=3)
    restarted = PanelServer(sessions, port=port, ari_connected=lambda: True)
    panel.append(restarted)
    await restarted.start()
    await wait_css(browser, '#connection[data-state="live"]', timeout=5)
    await set_paused(sessions, "1001", True)
    await wait_css(browser, agent_css("1001", "unavailable"), timeout=1.5)
    assert await text_of(browser, '[data-agent="1001"] .state') == "not available"
    await set_paused(sessions, "1001", False)
    await wait_css(browser, agent_css("1001", "available"), timeout=1.5)
    async with sessions() as session, session.begin():
        await calls.set_status(session, second, CallStatus.ENDED)  # the caller gave up
    await wait_css(browser, '[data-hotline="500"][data-waiting="0"]', timeout=1.5)
    await screenshot(browser, "panel.png")
