"""services/auth.py on the real Postgres: agent by device, PIN check with the lockout of the
agent and of the calling number, audit rows for failures and lockouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AuditEntry, Lockout
from ari_app.domain.pin import LockoutPolicy
from ari_app.services import admin, auth
from ari_app.services.auth import Verdict

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]

PIN = "735194"
POLICY = LockoutPolicy(max_failures=3, lock_for=timedelta(minutes=15))
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def _agent(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await admin.create_agent(
            session, "101", "Ada", pin=PIN, device="PJSIP/1001", external_numbers=["+4915112345"]
        )


async def _try(
    sessions: Sessions,
    pin: str,
    *,
    agent: str = "101",
    caller: str | None = "number:+4915112345",
    now: datetime = T0,
    policy: LockoutPolicy = POLICY,
    device_identified: bool = False,
) -> auth.PinCheck:
    return await auth.check_pin(
        sessions,
        agent_number=agent,
        pin=pin,
        caller=caller,
        path="service",
        policy=policy,
        now=now,
        device_identified=device_identified,
    )


async def _audit(sessions: Sessions) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(r.action, r.detail.get("subject")) for r in rows]


@pytest.mark.parametrize(
    ("name", "device"),
    [
        ("PJSIP/1003-0000001a", "PJSIP/1003"),
        ("PJSIP/trunk-00000002", "PJSIP/trunk"),
        ("Local/101@hotline-00000001;1", None),
        ("PJSIP/1003", None),
        ("weird", None),
    ],
)
def test_device_of_channel(name: str, device: str | None) -> None:
    assert auth.device_of_channel(name) == device


@pytest.mark.parametrize(
    ("raw", "number"),
    [("+49 151 12345", "+4915112345"), ("030123", "030123"), ("anonymous", None), ("", None)],
)
def test_caller_number(raw: str, number: str | None) -> None:
    assert auth.caller_number(raw) == number


async def test_agent_by_device_and_external_number(sessions: Sessions) -> None:
    await _agent(sessions)
    async with sessions() as session:
        agent = await auth.agent_by_device(session, "PJSIP/1001")
        assert agent is not None and agent.number == "101"
        assert await auth.agent_by_device(session, "PJSIP/1002") is None
        assert await auth.external_number(session, agent, "+4915112345") == "+4915112345"
        assert await auth.external_number(session, agent, "+4915199999") is None
        assert await auth.external_number(session, agent, None) is None


async def test_right_pin_passes_and_keeps_no_lockout_row(sessions: Sessions) -> None:
    await _agent(sessions)
    assert (await _try(sessions, "111112")).verdict is Verdict.WRONG
    result = await _try(sessions, PIN)
    assert result.verdict is Verdict.OK and result.agent is not None
    assert result.agent.number == "101"
    async with sessions() as session:
        assert list(await session.scalars(select(Lockout))) == []


async def test_three_wrong_pins_lock_agent_and_number_even_for_the_right_pin(
    sessions: Sessions,
) -> None:
    await _agent(sessions)
    results = [await _try(sessions, pin) for pin in ("111112", "222223", "333334")]
    assert [r.verdict for r in results] == [Verdict.WRONG] * 3
    assert [r.locked_now for r in results] == [False, False, True]
    assert (await _try(sessions, PIN, now=T0 + timedelta(minutes=1))).verdict is Verdict.LOCKED
    # the agent from another number, and another agent number from the locked number
    other = await _try(sessions, PIN, caller="number:+4930999", now=T0 + timedelta(minutes=2))
    assert other.verdict is Verdict.LOCKED
    stranger = await _try(sessions, "999998", agent="102", now=T0 + timedelta(minutes=2))
    assert stranger.verdict is Verdict.LOCKED
    audit = await _audit(sessions)
    assert audit.count(("pin_failed", None)) == 3
    assert ("lockout", "agent:101") in audit and ("lockout", "number:+4915112345") in audit
    assert audit.count(("pin_refused_locked", None)) == 3
    # after 15 minutes the right PIN works again
    later = await _try(sessions, PIN, now=T0 + timedelta(minutes=16))
    assert later.verdict is Verdict.OK


async def test_unknown_agent_numbers_count_like_known_ones(sessions: Sessions) -> None:
    await _agent(sessions)
    for _ in range(3):
        result = await _try(sessions, "111112", agent="555", caller="device:PJSIP/1003")
    assert result.locked_now
    async with sessions() as session:
        rows = {r.subject: r.failures for r in await session.scalars(select(Lockout))}
    assert rows == {"agent:555": 3, "device:PJSIP/1003": 3}


async def test_agent_without_pin_never_passes(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await admin.create_agent(session, "103", "No Pin")
    assert (await _try(sessions, "", agent="103")).verdict is Verdict.WRONG
    assert (await _try(sessions, "123", agent="103")).verdict is Verdict.WRONG


# --- issue 13, finding 5: growing locks, withheld callers, the alert, unlock ---------------

WRONG = ("111112", "222223", "333334")


async def _lock(sessions: Sessions, now: datetime, **kwargs: object) -> auth.PinCheck:
    results = [await _try(sessions, pin, now=now, **kwargs) for pin in WRONG]  # type: ignore[arg-type]
    return results[-1]


async def _row(sessions: Sessions, subject: str) -> Lockout | None:
    async with sessions() as session:
        return await session.get(Lockout, subject)


async def test_repeated_lockouts_double_and_a_success_resets(sessions: Sessions) -> None:
    """A fake clock walks a guesser who retries the moment each lock ends."""
    await _agent(sessions)
    now = T0
    lengths = []
    for _ in range(4):
        assert (await _lock(sessions, now)).locked_now
        row = await _row(sessions, "agent:101")
        assert row is not None and row.locked_until is not None
        lengths.append(row.locked_until - now)
        assert (await _try(sessions, PIN, now=row.locked_until - timedelta(seconds=1))).verdict is (
            Verdict.LOCKED
        )
        now = row.locked_until
    assert lengths == [timedelta(minutes=m) for m in (15, 30, 60, 120)]
    row = await _row(sessions, "agent:101")
    assert row is not None and row.lockouts == 4
    audit = await _audit(sessions)
    assert audit.count(("lockout", "agent:101")) == 4
    # the right PIN after the last lock: the streak is forgotten, the next lock is short
    assert (await _try(sessions, PIN, now=now)).verdict is Verdict.OK
    assert await _row(sessions, "agent:101") is None
    await _lock(sessions, now)
    row = await _row(sessions, "agent:101")
    assert row is not None and row.locked_until == now + timedelta(minutes=15)


async def test_a_quiet_day_forgets_the_streak(sessions: Sessions) -> None:
    await _agent(sessions)
    await _lock(sessions, T0)
    second = T0 + timedelta(minutes=15)
    await _lock(sessions, second)  # 30 minutes, until T0 + 45 min
    quiet = second + timedelta(minutes=30) + timedelta(days=1)
    await _lock(sessions, quiet)
    row = await _row(sessions, "agent:101")
    assert row is not None and row.locked_until == quiet + timedelta(minutes=15)
    assert row.lockouts == 1


async def test_withheld_callers_do_not_share_a_lock(sessions: Sessions) -> None:
    """One withheld caller guessing on agent 101 must not lock out other withheld callers:
    withheld numbers have no subject, only the agent number they try counts."""
    await _agent(sessions)
    async with sessions() as session, session.begin():
        await admin.create_agent(session, "102", "Bea", pin="864219")
    assert auth.number_subject(None) is None
    assert (await _lock(sessions, T0, caller=None)).locked_now
    other = await _try(sessions, "864219", agent="102", caller=None, now=T0 + timedelta(minutes=1))
    assert other.verdict is Verdict.OK
    async with sessions() as session:
        subjects = [r.subject for r in await session.scalars(select(Lockout))]
    assert subjects == ["agent:101"]


async def test_the_agents_own_device_is_not_locked_out_by_a_remote_guesser(
    sessions: Sessions,
) -> None:
    """Lockout versus denial of service: remote guessing locks agent:101 (service line,
    hot-desking), the agent's authenticated desk phone still opens voicemail."""
    await _agent(sessions)
    await _lock(sessions, T0, caller="number:+4930666")
    assert (await _try(sessions, PIN, now=T0 + timedelta(minutes=1))).verdict is Verdict.LOCKED
    own = await _try(
        sessions,
        PIN,
        caller="device:PJSIP/1001",
        device_identified=True,
        now=T0 + timedelta(minutes=1),
    )
    assert own.verdict is Verdict.OK
    assert await _row(sessions, "agent:101") is not None, "the remote lock stays"


async def test_parallel_guesses_get_no_more_tries_than_the_policy(sessions: Sessions) -> None:
    """Each attempt is counted before its hash runs: 10 calls guessing at once on one agent
    get 3 checked guesses, the others are refused as locked."""
    await _agent(sessions)
    results = await asyncio.gather(
        *(_try(sessions, f"9{i:05d}", caller=f"number:+49301000{i}") for i in range(10))
    )
    verdicts = [r.verdict for r in results]
    assert verdicts.count(Verdict.WRONG) == 3
    assert verdicts.count(Verdict.LOCKED) == 7


async def test_many_failures_on_all_agents_raise_one_alert(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    policy = LockoutPolicy(alert_failures=6, alert_window=timedelta(minutes=10))
    async with sessions() as session, session.begin():
        for number in ("201", "202", "203", "204"):
            await admin.create_agent(session, number, f"Agent {number}", pin="864219")
    caplog.set_level("WARNING", logger="ari_app.services.auth")
    alerts = []
    # two wrong PINs on each of four agents from four numbers: nobody is locked
    for i, number in enumerate(("201", "202", "203", "204")):
        for j in range(2):
            result = await _try(
                sessions,
                "111112",
                agent=number,
                caller=f"number:+4930{i}",
                now=T0 + timedelta(seconds=10 * (2 * i + j)),
                policy=policy,
            )
            assert result.verdict is Verdict.WRONG and not result.locked_now
            alerts.append(result.alert)
    assert alerts == [False] * 5 + [True, False, False], "one alert per window"
    audit = await _audit(sessions)
    assert audit.count(("pin_failure_alert", None)) == 1
    assert any("PIN guessing alert" in r.getMessage() for r in caplog.records)
    # a new window: a new alert once the rate is high again
    later = T0 + timedelta(minutes=30)
    flags = [
        (
            await _try(
                sessions,
                "111112",
                agent="201",
                caller=f"number:+4931{i}",
                now=later + timedelta(seconds=i),
                policy=policy,
            )
        ).alert
        for i in range(6)
    ]
    assert flags.count(True) == 1
    # failures spread thinly stay below the threshold
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "pin_failure_alert")
            )
        )
    assert [r.detail["failures"] for r in rows] == [6, 6]


async def test_ops_see_and_lift_locks(sessions: Sessions, database_url: str) -> None:
    """`hotline agent show` lists the agent's locks, `hotline agent unlock` lifts them."""
    await _agent(sessions)
    now = datetime.now(UTC)
    await _lock(sessions, now, caller="number:+4915112345")
    cli = Cli(database_url)
    shown = await cli.json("agent", "show", "101")
    subjects = {lock["subject"]: lock for lock in shown["pin_locks"]}
    assert set(subjects) == {"agent:101", "number:+4915112345"}
    assert subjects["agent:101"]["locked_until"] is not None
    assert subjects["agent:101"]["lockouts"] == 1
    human = (await cli.ok("agent", "show", "101")).stdout
    assert "locked until" in human
    result = await cli.ok("agent", "unlock", "101")
    assert "agent:101" in result.stdout
    assert (await cli.json("agent", "show", "101"))["pin_locks"] == []
    assert (await _try(sessions, PIN, now=now + timedelta(seconds=1))).verdict is Verdict.OK
    async with sessions() as session:
        rows = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "unlock")))
    assert len(rows) == 1 and rows[0].path == "cli" and rows[0].agent_id is not None
    assert rows[0].detail["subjects"] == ["agent:101", "number:+4915112345"]
    missing = await cli("agent", "unlock", "999")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
