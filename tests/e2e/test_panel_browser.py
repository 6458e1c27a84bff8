"""The team panel in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a downloaded browser; scripts/install-system-deps.sh installs
both). Presence changes go through the services and Postgres; the page must follow within
the issue's bounds and survive a server restart. Screenshots land in artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import connect_call, finish_call, seed_team, set_paused, waiting_call

from ari_app.db.models import CallStatus
from ari_app.services import calls
from ari_app.web.server import PanelServer

pytestmark = [pytest.mark.e2e, pytest.mark.db]

Sessions = async_sessionmaker[AsyncSession]
CHROMIUM = Path(os.environ.get("HOTLINE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("HOTLINE_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,900",
)


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (chromedriver -> chromium and its helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile; chromedriver and every Chromium process are
    stopped by PID afterwards, also when the test fails."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.exists():
            pytest.fail(f"{binary} missing: run scripts/install-system-deps.sh ({package})")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver_pid = service.process.pid
    pids = [driver_pid]
    try:
        driver.set_page_load_timeout(10)
        pids += _children(driver_pid)
        yield driver
    finally:
        pids += [p for p in _children(driver_pid) if p not in pids]
        with contextlib.suppress(WebDriverException):
            driver.quit()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


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


async def wait_css(driver: webdriver.Chrome, css: str, timeout: float) -> float:
    """Seconds until an element matching `css` is on the page (polled, bounded)."""
    start = time.monotonic()
    while True:
        if await asyncio.to_thread(driver.find_elements, By.CSS_SELECTOR, css):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            shot = ARTIFACTS / "panel-timeout.png"
            await asyncio.to_thread(driver.save_screenshot, str(shot))
            raise AssertionError(f"{css} not on the page within {timeout}s (see {shot})")
        await asyncio.sleep(0.05)


def agent_css(number: str, presence: str) -> str:
    return f'[data-agent="{number}"][data-presence="{presence}"]'


async def text_of(driver: webdriver.Chrome, css: str) -> str:
    element = await asyncio.to_thread(driver.find_element, By.CSS_SELECTOR, css)
    return str(await asyncio.to_thread(lambda: element.text))


async def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert await asyncio.to_thread(driver.save_screenshot, str(path)), path
    return path


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
