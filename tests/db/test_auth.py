"""services/auth.py on the real Postgres: agent by device, PIN check with the lockout of the
agent and of the calling number, audit rows for failures and lockouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
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
    caller: str = "number:+4915112345",
    now: datetime = T0,
) -> auth.PinCheck:
    async with sessions() as session, session.begin():
        return await auth.check_pin(
            session,
            agent_number=agent,
            pin=pin,
            caller=caller,
            path="service",
            policy=POLICY,
            now=now,
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
