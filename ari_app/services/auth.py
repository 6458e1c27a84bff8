"""Who is calling: the agent bound to the calling device, or an agent number + PIN checked
against the lockout of the agent AND of the calling number/device (DESIGN.md, "Agents,
devices, security"). Failed attempts and lockouts are audited; the PIN never is.

While a subject is locked even the right PIN is refused, and the PIN is not even checked,
so the lock cannot be used to confirm a guess.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, AgentTarget, Lockout, TargetKind
from ari_app.domain import values
from ari_app.domain.errors import InvalidValue
from ari_app.domain.pin import LockoutPolicy, hash_pin, needs_rehash, verify_pin
from ari_app.services import audit
from ari_app.services.audit import Path

log = logging.getLogger(__name__)

# `PJSIP/1003-0000001a` -> `PJSIP/1003`: Asterisk appends a sequence number to the device.
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]{8}(?:;[12])?$")
ANONYMOUS = "anonymous"


class Verdict(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"  # wrong agent number or PIN (which one is never told)
    LOCKED = "locked"  # the agent or the calling number is locked: refused without a check


@dataclass(frozen=True)
class PinCheck:
    verdict: Verdict
    agent: Agent | None = None  # only when OK
    locked_now: bool = False  # this attempt locked the agent and/or the caller


def device_of_channel(channel_name: str) -> str | None:
    """The dial string of the device a channel belongs to, from the channel *name* that
    Asterisk set (never from anything the caller typed); None when it has none."""
    device = _CHANNEL_SUFFIX.sub("", channel_name.strip())
    if device == channel_name.strip() or device.startswith("Local/"):
        return None
    try:
        return values.dial_string(device)
    except InvalidValue:
        return None


def caller_number(raw: str | None) -> str | None:
    """The caller ID as a number (digits, optional leading +), or None when withheld or
    not a number. Used to find the configured external number and as a lockout subject."""
    text = "".join((raw or "").split())
    try:
        return values.phone_number(text)
    except InvalidValue:
        return None


SUBJECT_MAX = 100  # lockouts.subject


def agent_subject(agent_number: str) -> str:
    return f"agent:{agent_number}"[:SUBJECT_MAX]


def number_subject(number: str | None) -> str:
    """A calling number; all callers without one share a subject (and so a lock)."""
    return f"number:{number or ANONYMOUS}"[:SUBJECT_MAX]


def device_subject(device: str) -> str:
    return f"device:{device}"[:SUBJECT_MAX]


async def agent_by_device(session: AsyncSession, device: str) -> Agent | None:
    """The agent ops bound this device to (agents have at most one device)."""
    agent: Agent | None = await session.scalar(
        select(Agent)
        .join(AgentTarget, AgentTarget.agent_id == Agent.id)
        .where(AgentTarget.kind == TargetKind.DEVICE, AgentTarget.address == device)
    )
    return agent


async def external_number(session: AsyncSession, agent: Agent, caller: str | None) -> str | None:
    """The agent's configured external number that is the caller ID, else None."""
    if caller is None:
        return None
    number: str | None = await session.scalar(
        select(AgentTarget.address).where(
            AgentTarget.agent_id == agent.id,
            AgentTarget.kind == TargetKind.EXTERNAL,
            AgentTarget.address == caller,
        )
    )
    return number


async def is_locked(session: AsyncSession, subject: str, now: datetime) -> bool:
    row = await session.get(Lockout, subject)
    return row is not None and LockoutPolicy.is_locked(row.locked_until, now)


async def _lock_rows(session: AsyncSession, subjects: list[str]) -> list[Lockout]:
    """The subjects' rows, created if missing and locked FOR UPDATE (in subject order, so
    two concurrent attempts cannot deadlock): attempts on one subject are serialised."""
    await session.execute(
        insert(Lockout)
        .values([{"subject": s, "failures": 0} for s in subjects])
        .on_conflict_do_nothing(index_elements=["subject"])
    )
    rows = await session.scalars(
        select(Lockout)
        .where(Lockout.subject.in_(subjects))
        .order_by(Lockout.subject)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def check_pin(
    session: AsyncSession,
    *,
    agent_number: str,
    pin: str,
    caller: str,
    path: Path,
    policy: LockoutPolicy,
    now: datetime,
) -> PinCheck:
    """One login attempt: agent number + PIN from `caller` (a `number:`/`device:` subject).

    Every failure counts against the calling subject and, when the agent number is well
    formed (existing or not, so that locking tells nothing about which numbers exist),
    against `agent:<number>`. Reaching `policy.max_failures` locks both for
    `policy.lock_for`.
    """
    try:
        agent_number = values.agent_number(agent_number)
    except InvalidValue:
        agent_number = ""
    subjects = sorted({caller} | ({agent_subject(agent_number)} if agent_number else set()))
    rows = await _lock_rows(session, subjects)
    agent = (
        await session.scalar(select(Agent).where(Agent.number == agent_number))
        if agent_number
        else None
    )
    agent_id = agent.id if agent else None
    actor = caller
    if any(policy.is_locked(row.locked_until, now) for row in rows):
        await audit.record(
            session,
            actor=actor,
            action="pin_refused_locked",
            path=path,
            agent_id=agent_id,
            agent_number=agent_number or None,
        )
        return PinCheck(Verdict.LOCKED)
    stored = agent.pin_hash if agent else None
    # scrypt is deliberately slow: keep it off the event loop the other calls share.
    ok = await asyncio.to_thread(verify_pin, pin, stored)
    if ok and agent is not None:
        assert stored is not None
        for row in rows:  # a success ends the streak; no row is kept for it
            await session.delete(row)
        if needs_rehash(stored):
            agent.pin_hash = await asyncio.to_thread(hash_pin, pin)
        await session.flush()
        return PinCheck(Verdict.OK, agent)
    locked_now = False
    for row in rows:
        state = policy.register(row.failures, row.locked_until, now, success=False)
        row.failures, row.locked_until = state.failures, state.locked_until
        if state.locked:
            locked_now = True
            await audit.record(
                session,
                actor=actor,
                action="lockout",
                path=path,
                agent_id=agent_id,
                subject=row.subject,
                failures=state.failures,
                locked_until=state.locked_until.isoformat() if state.locked_until else None,
            )
            log.warning("PIN lockout of %s after %d failures", row.subject, state.failures)
    await audit.record(
        session,
        actor=actor,
        action="pin_failed",
        path=path,
        agent_id=agent_id,
        agent_number=agent_number or None,
    )
    await session.flush()
    return PinCheck(Verdict.WRONG, locked_now=locked_now)
