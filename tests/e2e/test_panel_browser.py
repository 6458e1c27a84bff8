"""The team panel in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a downloaded browser; scripts/install-system-deps.sh installs
both). Presence changes go through the services and Postgres; the page must follow within
the issue's bounds and survive a server restart. Screenshots land in artifacts/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import connect_call, finish_call, seed_team, set_paused, waiting_call

from ari_app.db.models import Call, CallEvent, CallStatus, Hotline, Outcome
from ari_app.services import calls, reports
from ari_app.web.server import PanelServer

from .browser_support import agent_css, browser, screenshot, text_of, wait_css

__all__ = ["browser"]  # the fixture, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.db]

Sessions = async_sessionmaker[AsyncSession]
BERLIN = ZoneInfo("Europe/Berlin")  # the seeded hotline's time zone


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


def _hours() -> tuple[int, int, int]:
    """Three local hours of today that have begun (the line stops at the current hour):
    two and one hours ago and now; 0, 1, 2 just after midnight (then "now" is hour 0)."""
    now = datetime.now(BERLIN).hour
    return (now - 2, now - 1, now) if now >= 2 else (0, 1, 2)


async def _todays_calls(sessions: Sessions, hotline: Hotline) -> None:
    """Calls of today (Berlin) in three hours: answered (in time or late), abandoned,
    voicemail; each entered the queue (offered)."""
    today = datetime.now(BERLIN).date()
    a, b, c = _hours()
    plan = [  # local hour, outcome, answered after (s)
        (a, Outcome.ANSWERED, 5),
        (a, Outcome.ANSWERED, 10),
        (a, Outcome.ANSWERED, 40),
        (a, Outcome.ABANDONED, None),
        (b, Outcome.VOICEMAIL, None),
        (b, Outcome.ANSWERED, 3),
        (b, Outcome.ANSWERED, 8),
        (c, Outcome.ABANDONED, None),
    ]
    async with sessions() as session, session.begin():
        for i, (hour, outcome, after) in enumerate(plan):
            entered = datetime.combine(today, time(hour, i), BERLIN)
            call = Call(
                hotline_id=hotline.id,
                dialled_number="500",
                channel_id=f"chart-{i}",
                node="t",
                status=CallStatus.ENDED,
                entered_at=entered,
                answered_at=entered + timedelta(seconds=after) if after is not None else None,
                ended_at=entered + timedelta(seconds=60),
                outcome=outcome,
            )
            session.add(call)
            await session.flush()
            session.add(CallEvent(call_id=call.id, event="ENTERQUEUE", at=entered, data={}))


async def test_charts_show_the_reports_numbers(
    sessions: Sessions, browser: webdriver.Chrome, panel: list[PanelServer]
) -> None:
    """Calls per hour and the service level through the day, drawn by the page as inline
    SVG, against `hotline report --by hour` (services.reports.hotline_report)."""
    team = await seed_team(sessions, logged_in=("1001",))
    await _todays_calls(sessions, team.hotline)
    await asyncio.to_thread(browser.get, panel[0].url + "/")
    a, b, c = _hours()
    await wait_css(browser, f'#chart-calls g.hour[data-hour="{a}"][data-answered="3"]', timeout=5)
    await wait_css(browser, "#chart-level circle.level-point", timeout=2)
    bars = await asyncio.to_thread(
        browser.execute_script,
        """return [...document.querySelectorAll('#chart-calls g.hour')].map(g => ({
             hour: +g.dataset.hour, answered: +g.dataset.answered,
             abandoned: +g.dataset.abandoned, voicemail: +g.dataset.voicemail,
             heights: [...g.querySelectorAll('rect')].map(r => [r.getAttribute('class'),
                                                              +r.getAttribute('height')])}))""",
    )
    points = await asyncio.to_thread(
        browser.execute_script,
        """return [...document.querySelectorAll('#chart-level circle.level-point')].map(c =>
             [+c.dataset.hour, +c.dataset.level])""",
    )
    day = datetime.now(BERLIN).date()
    async with sessions() as session:
        rows = await reports.hotline_report(session, day, day, by="hour")
    report = {r.hour: r for r in rows}
    assert sorted(report) == [a, b, c]
    assert len(bars) == 24
    for bar in bars:
        r = report.get(bar["hour"])
        expected = (
            (r.outcomes["answered"], r.outcomes["abandoned"], r.outcomes["voicemail"])
            if r
            else (0, 0, 0)
        )
        assert (bar["answered"], bar["abandoned"], bar["voicemail"]) == expected, bar
    # Bar heights are to scale: 3 answered are three times 1 abandoned.
    heights = dict(next(bar for bar in bars if bar["hour"] == a)["heights"])
    assert abs(heights["answered"] - 3 * heights["abandoned"]) < 0.01
    # Service level through the day: cumulative over the report's hours, up to now.
    offered = in_time = 0
    expected_points = []
    for hour in range(datetime.now(BERLIN).hour + 1):
        if hour in report:
            offered += report[hour].offered
            in_time += report[hour].answered_in_time
        if offered:
            expected_points.append([hour, round(100 * in_time / offered, 1)])
    assert points == expected_points
    if datetime.now(BERLIN).hour >= 2:  # (just after midnight only hour 0 has begun)
        assert points == [[a, 50.0], [b, 57.1], [c, 50.0]]  # 2/4, 4/7, 4/8 in time
    await screenshot(browser, "panel-charts.png")


LABELS = {
    "de": ("verfügbar", "im Gespräch", "nicht verfügbar", "Längste Wartezeit"),
    "en": ("available", "on a call", "not available", "Longest wait"),
}


@pytest.mark.parametrize("browser", ["de", "en"], indirect=True)
async def test_panel_in_the_browsers_language(
    request: pytest.FixtureRequest,
    sessions: Sessions,
    browser: webdriver.Chrome,
    panel: list[PanelServer],
) -> None:
    """The browser's Accept-Language picks German or English labels (umlauts intact), and
    the clock is a 24-hour one in both."""
    lang = request.node.callspec.params["browser"]
    available, on_call, unavailable, longest = LABELS[lang]
    team = await seed_team(sessions, logged_in=("1001", "1003"))
    await asyncio.to_thread(browser.get, panel[0].url + "/")
    await wait_css(browser, f'html[lang="{lang}"]', timeout=2)
    await wait_css(browser, agent_css("1001", "available"), timeout=2)
    call = await waiting_call(sessions, team.hotline)
    agent_id = await connect_call(sessions, team.hotline, call)
    busy = next(n for n, i in team.agent_ids.items() if i == agent_id)
    free = "1003" if busy == "1001" else "1001"
    panel[0].hub.notify()
    await wait_css(browser, agent_css(busy, "on_call"), timeout=2)
    assert await text_of(browser, f'[data-agent="{busy}"] .state') == on_call
    assert await text_of(browser, '[data-agent="1002"] .state') == unavailable
    await wait_css(browser, agent_css(free, "available"), timeout=1)
    assert await text_of(browser, f'[data-agent="{free}"] .state') == available
    assert longest in await text_of(browser, '[data-hotline="500"]')

    clock = await text_of(browser, "#clock")
    # The machine's clock in 24-hour form (HH:MM, 00-23, no AM/PM); either side of a minute.
    before = datetime.now() - timedelta(minutes=1)
    expected = {t.strftime("%H:%M") for t in (before, datetime.now())}
    assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", clock), clock
    assert clock in expected, (clock, expected)
    await screenshot(browser, f"panel-{lang}.png")
