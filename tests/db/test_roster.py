"""Duty roster (issue 16) against the real Postgres with a fake clock: three shift changes
keep the staffing minimum, are audited with path `roster`, a handover by phone stands
until the next change, and an incoming agent who cannot be logged in keeps the outgoing
one on duty and calls the escalation numbers (the real scheduler and escalation flow on
a fake ARI). Plus slot validation, the week view and the iCalendar round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_support import Cli
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher
from handover_support import RESULTS, Requester, ask, finished, result
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentLogin, AgentState, AuditEntry, Lockout, TargetKind
from ari_app.dispatch import Dispatcher
from ari_app.domain.errors import InvalidValue, Refused
from ari_app.flows.handover import HandoverOutcome
from ari_app.flows.inbound import InboundFlow
from ari_app.roster_scheduler import RosterScheduler
from ari_app.services import admin, agents, roster
from ari_app.services.hotline_stats import hotline_stats

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = date(2026, 12, 7)
MOBILE_102 = "+4917100002"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Local time on day `day` of the week of MONDAY (0 = Monday), as UTC."""
    local = datetime(2026, 12, 7 + day, hour, minute, tzinfo=BERLIN)
    return local.astimezone(UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    RESULTS.clear()
    ari, dispatcher = fake_dispatcher(
        sessions, {"inbound": InboundFlow, "requester": Requester}, HOTLINE_NODE="node-a"
    )
    yield ari, dispatcher
    await dispatcher.ctx.escalations.stop(1.0)
    await dispatcher.shutdown(0.5)
    await dispatcher.ctx.handovers.wait(1.0)


async def _caretakers(sessions: Sessions) -> None:
    """Hotline 520 (minimum 1) with caretakers 101, 102 (also a mobile), 103 (first in the
    membership order, so a handover asks 103 first); the roster: 101 mo 07-19, 102 mo 19 -
    tu 07 on the mobile, 101 tu 07-19, 103 tu 19 - we 07."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session, "520", "Hausmeister", min_agents=1, escalation_numbers=["+4915100009"]
        )
        for i in (1, 2, 3):
            agent = await admin.create_agent(
                session,
                f"10{i}",
                f"Caretaker {i}",
                device=f"PJSIP/100{i}",
                external_numbers=[MOBILE_102] if i == 2 else [],
            )
            await admin.add_member(session, hotline, agent, 3 - i)
        for agent, start, end, target in [
            ("101", "mo 07:00", "mo 19:00", None),
            ("102", "mo 19:00", "tu 07:00", MOBILE_102),
            ("101", "tu 07:00", "tu 19:00", "device"),
            ("103", "tu 19:00", "we 07:00", None),
        ]:
            await roster.add_slot(session, hotline, agent, start, end, target)


async def _logged_in(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(admin.Agent.number)
            .join(AgentLogin, AgentLogin.agent_id == admin.Agent.id)
            .join(AgentState, AgentState.agent_id == admin.Agent.id)
            .where(AgentState.paused.is_(False))
            .order_by(admin.Agent.number)
        )
        return list(rows.scalars())


async def _audit(sessions: Sessions, after: int = 0) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
        )
        return list(rows)


async def _handover_by_phone(ari: FakeAriClient, dispatcher: Dispatcher) -> None:
    """102 (on duty on the mobile) hands the duty over through the real handover flow
    (flows/handover.py, as option 6 of the service line does); 103 accepts with 1."""
    ask(dispatcher, agent_id=2, number=MOBILE_102)
    call = await ari.wait_command("originate")
    assert call.args[0] == "PJSIP/1003"
    leg = call.kwargs["channel_id"]
    dispatcher.on_event(event("StasisStart", channel=channel(leg), args=["handoverleg"]))
    await ari.wait_command("play")
    dispatcher.on_event(event("ChannelDtmfReceived", channel=channel(leg), digit="1"))
    assert (await result(ari)).outcome is HandoverOutcome.DONE
    confirm = await ari.wait_command("play", 2)
    dispatcher.on_event(finished(leg, confirm.kwargs["playback_id"]))
    await ari.wait_for(lambda: any(c.args[0] == leg for c in ari.called("hangup")))
    dispatcher.on_event(event("ChannelDestroyed", channel=channel(leg), cause=16))
    await dispatcher.ctx.handovers.wait(2)


async def test_three_shift_changes_keep_the_minimum_and_a_phone_handover_stands(
    sessions: Sessions, world: tuple[FakeAriClient, Dispatcher]
) -> None:
    ari, dispatcher = world
    await _caretakers(sessions)
    clock = Clock(at(0, 6, 59))
    scheduler = RosterScheduler(dispatcher.ctx, clock=clock)

    assert await scheduler.tick() == []  # nobody on duty yet, nothing to do
    clock.now = at(0, 7, 0)
    (first,) = await scheduler.tick()
    assert first.logged_in == ["101"] and first.logged_out == []
    assert await _logged_in(sessions) == ["101"]
    assert await scheduler.tick() == [], "applied once per shift"

    # Change 1 (mo 19:00): 102 on the mobile in first, then 101 out.
    mark = (await _audit(sessions))[-1].id
    clock.now = at(0, 19, 0)
    (change,) = await scheduler.tick()
    assert (change.logged_in, change.logged_out, change.failed) == (["102"], ["101"], [])
    assert await _logged_in(sessions) == ["102"]
    rows = [(r.action, r.path, r.agent_id) for r in await _audit(sessions, mark)]
    assert rows[:2] == [("login", "roster", 2), ("logout", "roster", 1)], rows
    async with sessions() as session:
        state = await session.get(AgentState, 2)
    assert state is not None
    assert (state.target, state.target_kind) == (MOBILE_102, TargetKind.EXTERNAL)

    # 102 hands over to 103 by phone at night: the roster does not undo it.
    await _handover_by_phone(ari, dispatcher)
    clock.now = at(0, 23, 30)
    assert await scheduler.tick() == []
    assert await _logged_in(sessions) == ["103"]

    # Change 2 (tu 07:00): 101 in; 103 (took over by phone) out; 102 gone already: nothing.
    mark = (await _audit(sessions))[-1].id
    clock.now = at(1, 7, 0)
    (change,) = await scheduler.tick()
    assert (change.logged_in, change.logged_out) == (["101"], ["103"])
    assert await _logged_in(sessions) == ["101"]
    rows = [(r.action, r.path, r.agent_id) for r in await _audit(sessions, mark)]
    assert rows[:2] == [("login", "roster", 1), ("logout", "roster", 3)], rows
    assert ("logout", "roster", 2) not in rows, "the outgoing who is gone hears nothing"

    # Change 3 (tu 19:00): 103 is locked (wrong PINs): 101 stays, escalation numbers called.
    async with sessions() as session, session.begin():
        session.add(Lockout(subject="agent:103", failures=3, locked_until=at(1, 20)))
    clock.now = at(1, 19, 0)
    (change,) = await scheduler.tick()
    assert change.failed == [("103", "locked")] and change.kept == ["101"]
    assert await _logged_in(sessions) == ["101"]
    originate = await ari.wait_command("originate", 2)  # the first was the handover's
    assert originate.args[0] == "PJSIP/+4915100009@trunk"
    assert dispatcher.ctx.escalations.flows(), "the escalation runs although the hotline is staffed"

    shifts = [r for r in await _audit(sessions) if r.action == "roster_shift"]
    assert len(shifts) == 4 and all(r.path == "roster" for r in shifts)
    # The next change releases the agent the roster kept.
    async with sessions() as session, session.begin():
        await session.delete(await session.get(Lockout, "agent:103"))
    clock.now = at(2, 7, 0)  # we 07:00: nobody rostered -> 101 may not leave alone (minimum)
    (change,) = await scheduler.tick()
    assert change.logged_out == [] and change.kept == ["101"]
    assert await _logged_in(sessions) == ["101"]


async def test_always_at_least_the_minimum_between_changes(
    sessions: Sessions, world: tuple[FakeAriClient, Dispatcher]
) -> None:
    """Every quarter hour of a day: the hotline is never below its minimum once a shift
    has started."""
    _, dispatcher = world
    await _caretakers(sessions)
    clock = Clock(at(0, 7, 0))
    scheduler = RosterScheduler(dispatcher.ctx, clock=clock)
    while clock.now < at(1, 18, 45):
        await scheduler.tick()
        async with sessions() as session:
            hotline = await admin.get_hotline(session, "520")
            assert await agents.available_agents(session, hotline.id) >= 1, clock.now
        clock.now += timedelta(minutes=15)


async def test_slot_rules(sessions: Sessions) -> None:
    await _caretakers(sessions)
    async with sessions() as session, session.begin():
        hotline = await admin.get_hotline(session, "520")
        with pytest.raises(Refused, match="not an external number"):
            await roster.add_slot(session, hotline, "101", "we 07:00", "we 19:00", "+4930999")
        with pytest.raises(InvalidValue, match="both ends"):
            await roster.add_slot(session, hotline, "101", "we 07:00", "2026-12-24 19:00")
        with pytest.raises(InvalidValue, match="mo 07:00"):
            await roster.add_slot(session, hotline, "101", "wed 7", "we 19:00")
        # a one-off exception overrides the week where it lasts
        await roster.add_slot(session, hotline, "103", "2026-12-08 12:00", "2026-12-08 14:00")
        week = await roster.week(session, hotline, MONDAY + timedelta(days=3))
    plan = [(f"{s.start:%a %H:%M}", f"{s.end:%a %H:%M}", s.agent) for s in week]
    assert plan == [
        ("Mon 07:00", "Mon 19:00", "101"),
        ("Mon 19:00", "Tue 07:00", "102"),
        ("Tue 07:00", "Tue 19:00", "101"),
        ("Tue 12:00", "Tue 14:00", "103"),
        ("Tue 19:00", "Wed 07:00", "103"),
    ]


async def test_icalendar_round_trip(sessions: Sessions) -> None:
    await _caretakers(sessions)
    async with sessions() as session, session.begin():
        hotline = await admin.get_hotline(session, "520")
        await roster.add_slot(session, hotline, "103", "2026-12-24 07:00", "2026-12-25 07:00")
        before = [s.as_dict() for s in await roster.list_slots(session, hotline)]
        data = await roster.export_ics(session, hotline, MONDAY)
        empty = await admin.create_hotline(session, "521", "Hausmeister 2")
        for number in ("101", "102", "103"):
            await admin.add_member(session, empty, await admin.get_agent(session, number))
        await roster.import_ics(session, empty, data)
        after = [s.as_dict() for s in await roster.list_slots(session, empty)]
    assert b"RRULE:FREQ=WEEKLY" in data and b"X-HOTLINE-AGENT:102" in data
    strip = [{k: v for k, v in s.items() if k != "id"} for s in before]
    assert [{k: v for k, v in s.items() if k != "id"} for s in after] == strip
    assert len(after) == 5


async def test_cli_round_trip_through_an_ics_file(
    sessions: Sessions, database_url: str, tmp_path: Path
) -> None:
    """`roster add/list/show/export/import/remove` as ops type them; export, import into an
    empty hotline, the same slots."""
    await _caretakers(sessions)
    cli = Cli(database_url)
    await cli.ok(
        "roster", "add", "520", "--agent", "103", "--from", "2026-12-24 07:00",
        "--to", "2026-12-27 07:00",
    )  # fmt: skip
    before = await cli.json("roster", "list", "520")
    assert [s["kind"] for s in before] == ["weekly"] * 4 + ["once"]
    assert before[1]["target"] == MOBILE_102 and before[0]["target"] == "device"
    week = (await cli.ok("roster", "show", "520", "--week", "--date", "2026-12-24")).stdout
    assert "Thu 2026-12-24 07:00" in week and "Sun 2026-12-27 07:00" in week
    ics = tmp_path / "roster-520.ics"
    ics.write_text((await cli.ok("roster", "export", "520")).stdout)
    await cli.ok("line", "create", "521", "--name", "Hausmeister 2")
    for agent in ("101", "102", "103"):
        await cli.ok("member", "add", "521", agent)
    assert "imported 5" in (await cli.ok("roster", "import", "521", str(ics))).stdout
    after = await cli.json("roster", "list", "521")
    assert [{k: v for k, v in s.items() if k != "id"} for s in after] == [
        {k: v for k, v in s.items() if k != "id"} for s in before
    ]
    await cli.ok("roster", "remove", "521", str(after[0]["id"]))
    assert len(await cli.json("roster", "list", "521")) == 4
    bad = await cli("roster", "add", "520", "--agent", "101", "--from", "xx", "--to", "mo 08:00")
    assert bad.exit_code == 1 and "roster time" in bad.stderr


async def test_panel_shows_only_on_duty_yes_or_no(
    sessions: Sessions, world: tuple[FakeAriClient, Dispatcher]
) -> None:
    _, dispatcher = world
    await _caretakers(sessions)
    async with sessions() as session, session.begin():
        await admin.create_hotline(session, "500", "Bürgerbüro")  # no roster
    clock = Clock(at(0, 6, 0))

    async def on_duty() -> dict[str, bool | None]:
        async with sessions() as session:
            return {s.number: s.on_duty for s in await hotline_stats(session, clock.now)}

    assert await on_duty() == {"500": None, "520": False}
    clock.now = at(0, 8, 0)
    await RosterScheduler(dispatcher.ctx, clock=clock).tick()
    assert await on_duty() == {"500": None, "520": True}
    async with sessions() as session:
        (line,) = [
            s.as_dict() for s in await hotline_stats(session, clock.now) if s.number == "520"
        ]
    assert "101" not in str(line), "who is on duty is not shown"
