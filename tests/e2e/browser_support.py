"""Headless Chromium for browser tests: Debian's chromium driven by Selenium through
Debian's chromedriver (never a downloaded browser; scripts/install-system-deps.sh installs
both). Every process it starts is stopped by PID, also when a test fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

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
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile; chromedriver and every Chromium process are
    stopped by PID afterwards, also when the test fails. Its language (Accept-Language and
    the page's locale) is English unless the test parametrizes `browser` indirectly, e.g.
    `@pytest.mark.parametrize("browser", ["de"], indirect=True)`."""
    lang = getattr(request, "param", "en")
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.exists():
            pytest.fail(f"{binary} missing: run scripts/install-system-deps.sh ({package})")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
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
