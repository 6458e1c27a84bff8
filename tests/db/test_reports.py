"""Reports per hotline and day (service and `hotline report`) on hand-made call records."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_support import Cli
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Call, CallEvent, CallStatus, Outcome
from ari_app.services import admin, reports

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
NOV2 = date(2026, 11, 2)
NOV3 = date(2026, 11, 3)


def _utc(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


async def _call(
    session: AsyncSession,
    hotline_id: int,
    entered: datetime,
    outcome: Outcome | None,
    *,
    queued: bool = False,
    answer_after: int | None = None,
    end_after: int | None = 0,
    agent_id: int | None = None,
    missed_by: int | None = None,
) -> None:
    call = Call(
        hotline_id=hotline_id,
        dialled_number="x",
        channel_id=f"c-{entered.isoformat()}-{hotline_id}",
        node="t",
        caller_number="+4930555",
        status=CallStatus.ENDED if outcome is not None else CallStatus.WAITING,
        entered_at=entered,
        answered_at=entered + timedelta(seconds=answer_after) if answer_after is not None else None,
        ended_at=entered + timedelta(seconds=end_after) if end_after is not None else None,
        outcome=outcome,
        agent_id=agent_id,
    )
    session.add(call)
    await session.flush()
    if queued:
        session.add(CallEvent(call_id=call.id, event="ENTERQUEUE", at=entered, data={}))
    if missed_by is not None:
        session.add(CallEvent(call_id=call.id, event="RINGNOANSWER", agent_id=missed_by, data={}))


async def _data(sessions: Sessions) -> None:
    """Hotline 500 (Berlin, UTC+1 in November, goal 20s) and 510 (UTC)."""
    async with sessions() as session, session.begin():
        h500 = await admin.create_hotline(session, "500", "Bürgerbüro", timezone="Europe/Berlin")
        h510 = await admin.create_hotline(session, "510", "Bauamt", timezone="UTC")
        a1 = await admin.create_agent(session, "101", "Anna")
        a2 = await admin.create_agent(session, "102", "Ben")
        answered, abandoned = Outcome.ANSWERED, Outcome.ABANDONED
        h = h500.id
        await _call(session, h, _utc(8), answered, queued=True, answer_after=10, end_after=130,
                    agent_id=a1.id)  # fmt: skip
        await _call(session, h, _utc(8, 5), answered, queued=True, answer_after=40, end_after=100,
                    agent_id=a2.id, missed_by=a1.id)  # fmt: skip
        await _call(session, h, _utc(8, 10), abandoned, queued=True, end_after=25)
        await _call(session, h, _utc(6), Outcome.CLOSED)
        await _call(session, h, _utc(8, 20), Outcome.NO_AGENTS)
        await _call(session, h, _utc(8, 30), Outcome.VOICEMAIL, queued=True, end_after=360)
        await _call(session, h, _utc(7), Outcome.FORWARDED, end_after=60)
        await _call(session, h, _utc(9), None, queued=True, end_after=None)  # still waiting
        # 23:30 UTC on Nov 2 is 00:30 on Nov 3 in Berlin.
        await _call(session, h, _utc(23, 30), Outcome.TIMEOUT)
        await _call(session, h510.id, _utc(23, 30), answered, queued=True, answer_after=5,
                    end_after=65, agent_id=a1.id)  # fmt: skip
        # Outside the period.
        await _call(session, h, _utc(8, day=5), answered, queued=True, answer_after=1)


async def test_hotline_report_per_local_day(sessions: Sessions) -> None:
    await _data(sessions)
    async with sessions() as session:
        rows = await reports.hotline_report(session, NOV2, NOV3)
    assert [(r.hotline, r.day) for r in rows] == [("500", NOV2), ("500", NOV3), ("510", NOV2)]
    nov2 = rows[0].as_dict()
    assert nov2 == {
        "hotline": "500",
        "name": "Bürgerbüro",
        "day": "2026-11-02",
        "calls": 8,
        "offered": 4,
        "answered": 2,
        "abandoned": 1,
        "voicemail": 1,
        "forwarded": 1,
        "closed": 1,
        "no_agents": 1,
        "timeout": 0,
        "avg_wait_s": 108.8,  # (10 + 40 + 25 + 360) / 4
        "max_wait_s": 360,
        "service_level_s": 20,
        "service_level_pct": 25.0,  # only the call answered after 10s was within 20s
        "callbacks_requested": 0,
        "callbacks_completed": 0,
        "callbacks_failed": 0,
        "avg_time_to_callback_s": None,
    }
    nov3 = rows[1].as_dict()
    assert (nov3["calls"], nov3["offered"], nov3["timeout"]) == (1, 0, 1)
    assert nov3["avg_wait_s"] is None and nov3["service_level_pct"] is None
    assert rows[2].as_dict()["calls"] == 1 and rows[2].service_level_pct == 100.0


async def test_hotline_report_filter_and_threshold(sessions: Sessions) -> None:
    await _data(sessions)
    async with sessions() as session:
        rows = await reports.hotline_report(
            session, NOV2, NOV2, hotline_number="500", service_level_s=45
        )
    assert len(rows) == 1
    assert rows[0].service_level_s == 45 and rows[0].service_level_pct == 50.0


async def test_agent_report(sessions: Sessions) -> None:
    await _data(sessions)
    async with sessions() as session:
        rows = await reports.agent_report(session, NOV2, NOV3)
    assert [r.as_dict() for r in rows] == [
        {"hotline": "500", "day": "2026-11-02", "agent": "101", "name": "Anna", "answered": 1,
         "talk_time_s": 120, "avg_talk_s": 120.0, "not_answered": 1},
        {"hotline": "500", "day": "2026-11-02", "agent": "102", "name": "Ben", "answered": 1,
         "talk_time_s": 60, "avg_talk_s": 60.0, "not_answered": 0},
        {"hotline": "510", "day": "2026-11-02", "agent": "101", "name": "Anna", "answered": 1,
         "talk_time_s": 60, "avg_talk_s": 60.0, "not_answered": 0},
    ]  # fmt: skip


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def test_cli_report_formats(cli: Cli, sessions: Sessions) -> None:
    await _data(sessions)
    period = ["--from", "2026-11-02", "--to", "2026-11-03"]
    as_json = await cli.json("report", *period)
    assert [(r["hotline"], r["day"]) for r in as_json] == [
        ("500", "2026-11-02"), ("500", "2026-11-03"), ("510", "2026-11-02"),
    ]  # fmt: skip
    same = (await cli.ok("report", *period, "--format", "json")).stdout
    assert json.loads(same) == as_json
    text = (await cli.ok("report", *period, "--format", "csv", "--hotline", "500")).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "hotline", "name", "day", "calls", "offered", "answered", "abandoned", "voicemail",
        "forwarded", "closed", "no_agents", "timeout", "avg_wait_s", "max_wait_s",
        "service_level_s", "service_level_pct", "callbacks_requested", "callbacks_completed",
        "callbacks_failed", "avg_time_to_callback_s",
    ]  # fmt: skip
    assert [r["day"] for r in rows] == ["2026-11-02", "2026-11-03"]
    assert rows[0]["service_level_pct"] == "25.0" and rows[1]["service_level_pct"] == ""
    table = (await cli.ok("report", *period)).stdout.splitlines()
    assert table[0].split()[:4] == ["HOTLINE", "DAY", "CALLS", "OFFERED"]
    assert "25.0% <=20s" in table[1] and "1m49s" in table[1] and "6m" in table[1]
    assert "Anna" not in text and "101" not in text, "no per-agent figures without --per-agent"


async def test_cli_report_per_agent(cli: Cli, sessions: Sessions) -> None:
    await _data(sessions)
    period = ["--from", "2026-11-02", "--to", "2026-11-02"]
    rows = await cli.json("report", *period, "--per-agent", "--hotline", "500")
    assert [(r["agent"], r["answered"]) for r in rows] == [("101", 1), ("102", 1)]
    text = (await cli.ok("report", *period, "--per-agent", "--format", "csv")).stdout
    assert text.splitlines()[0] == (
        "hotline,day,agent,name,answered,talk_time_s,avg_talk_s,not_answered"
    )
    table = (await cli.ok("report", *period, "--per-agent")).stdout.splitlines()
    assert table[0].split()[:4] == ["HOTLINE", "DAY", "AGENT", "NAME"]


async def test_cli_report_errors(cli: Cli, sessions: Sessions) -> None:
    await _data(sessions)
    assert "is after" in await cli.fails("report", "--from", "2026-11-03", "--to", "2026-11-02")
    assert "--from: date: '2026-13-01' does not exist" in await cli.fails(
        "report", "--from", "2026-13-01"
    )
    assert await cli.fails("report", "--from", "2026-11-01", "--hotline", "999") == (
        "error: no hotline with number 999"
    )
    assert "--service-level: duration" in await cli.fails(
        "report", "--from", "2026-11-01", "--service-level", "fast"
    )
    assert "--from: day: 'someday' is not a day (use 2026-11-01, today, yesterday" in (
        await cli.fails("report", "--from", "someday")
    )
    await cli.fails("report", "--from", "2026-11-01", "--format", "xml", code=2)
    empty = await cli.ok("report", "--from", "2020-01-01", "--to", "2020-01-02")
    assert empty.stdout == "" and "no calls" in empty.stderr


async def test_cli_report_defaults(cli: Cli, sessions: Sessions) -> None:
    """Without --from the report is today's; --from takes 7d, monday, yesterday."""
    today = date.today()
    days = [today, today - timedelta(days=3), today - timedelta(days=10)]
    async with sessions() as session, session.begin():
        line = await admin.create_hotline(session, "510", "Bauamt", timezone="UTC")
        for day in days:
            noon = datetime.combine(day, time(12), UTC)
            await _call(session, line.id, noon, Outcome.ANSWERED, queued=True, answer_after=5)

    async def reported(*args: str) -> list[str]:
        return [r["day"] for r in await cli.json("report", *args)]

    assert await reported() == [today.isoformat()]
    assert await reported("--from", "7d") == [days[1].isoformat(), today.isoformat()]
    assert await reported("--from", "30d", "--to", "4d") == [days[2].isoformat()]
    monday = today - timedelta(days=today.weekday())
    assert await reported("--from", "monday") == sorted(d.isoformat() for d in days if d >= monday)
    assert await reported("--from", "Mon") == await reported("--from", "monday")
    empty = await cli.ok("report", "--from", "yesterday", "--to", "yesterday")
    assert empty.stdout == "" and "no calls" in empty.stderr


async def test_cli_report_today_is_the_hotlines_day_not_the_machines(
    cli: Cli, sessions: Sessions
) -> None:
    """A Berlin hotline's report at 00:30 is of the new day, while the machine (UTC) still
    has yesterday's date. Shown with a zone whose date differs from UTC's right now."""
    now = datetime.now(UTC)
    # UTC-12 is a day behind before 12:00 UTC, UTC+14 a day ahead from 10:00 UTC.
    zone = "Etc/GMT+12" if now.hour < 11 else "Pacific/Kiritimati"
    local_today = now.astimezone(ZoneInfo(zone)).date()
    assert local_today != now.date()
    async with sessions() as session, session.begin():
        line = await admin.create_hotline(session, "520", "Standesamt", timezone=zone)
        await _call(session, line.id, now - timedelta(minutes=1), Outcome.ANSWERED, queued=True)

    rows = await cli.json("report", "--hotline", "520")
    assert [(r["day"], r["calls"]) for r in rows] == [(local_today.isoformat(), 1)]
    yesterday = await cli.json("report", "--hotline", "520", "--from", "yesterday", "--to", "1d")
    assert yesterday == []
    week = await cli.json("report", "--hotline", "520", "--from", "7d")
    assert [r["day"] for r in week] == [local_today.isoformat()]


async def test_hotline_report_by_hour_and_week(sessions: Sessions) -> None:
    await _data(sessions)
    async with sessions() as session:
        hours = await reports.hotline_report(session, NOV2, NOV2, hotline_number="500", by="hour")
        weeks = await reports.hotline_report(session, NOV2, NOV3, by="week")
        series = await reports.day_series(session, NOV2, hotline_number="500")
    # Berlin is UTC+1 in November: the 08:xx UTC calls are in the 09:00 local hour.
    assert [(r.period, r.calls) for r in hours] == [
        ("2026-11-02 07:00", 1),
        ("2026-11-02 08:00", 1),
        ("2026-11-02 09:00", 5),
        ("2026-11-02 10:00", 1),
    ]
    nine = hours[2].as_dict()
    assert (nine["hour"], nine["answered"], nine["abandoned"], nine["voicemail"]) == (9, 2, 1, 1)
    assert [(r.hotline, r.period, r.calls) for r in weeks] == [
        ("500", "2026-W45", 9),
        ("510", "2026-W45", 1),
    ]
    assert len(series) == 24 and series[9].answered == 2 and series[9].voicemail == 1
    assert [p.service_level_pct for p in series[8:11]] == [None, 25.0, 25.0]


async def test_cli_report_by_hour_with_charts(cli: Cli, sessions: Sessions, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from PIL import Image

    await _data(sessions)
    svg, png = tmp_path / "day.svg", tmp_path / "weeks.png"
    rows = await cli.json(
        "report", "--from", "2026-11-02", "--by", "hour", "--hotline", "500", "--chart", str(svg)
    )
    assert [r["period"] for r in rows][:2] == ["2026-11-02 07:00", "2026-11-02 08:00"]
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "Calls per hour" in svg.read_text()
    await cli.ok("report", "--from", "2026-11-02", "--to", "2026-11-03", "--by", "week",
                 "--chart", str(png))  # fmt: skip
    with Image.open(png) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 500
    bad = await cli("report", "--chart", str(tmp_path / "x.pdf"))
    assert bad.exit_code == 1 and ".svg or .png" in bad.stderr
    csv_out = await cli.ok("report", "--from", "2026-11-02", "--by", "hour", "--format", "csv")
    assert csv_out.stdout.splitlines()[0].startswith("period,hotline,name,day,calls")
