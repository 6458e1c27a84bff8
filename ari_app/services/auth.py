"""Who is calling: the agent bound to the calling device, or an agent number + PIN checked
against the lockout of the agent AND of the calling number/device (DESIGN.md, "Agents,
devices, security"). Failed attempts and lockouts are audited; the PIN never is.

While a subject is locked even the right PIN is refused, and the PIN is not even checked,
so the lock cannot be used to confirm a guess. Locks of a streak grow (domain/pin.py);
many failures on all agents together raise an alert; ops see and lift locks
(`locks_of`, `unlock`: `hotline agent show/unlock`).

The slow hash never runs inside a transaction: one short transaction reads the hash and
counts the attempt, the hash runs in a small pool of its own (so PIN checks can neither
hold pooled connections and row locks nor use up the threads the rest of the app needs),
and a second short transaction records the outcome.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Agent, AgentTarget, AuditEntry, Lockout
from ari_app.domain import values
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import InvalidValue
from ari_app.domain.pin import LockoutPolicy, LockoutState, hash_pin, needs_rehash, verify_pin
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
    alert: bool = False  # this attempt raised the alert on failures across all agents


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


def number_subject(number: str | None) -> str | None:
    """A calling number's subject; None for a withheld (or unusable) number.

    Withheld callers get no subject of their own: one shared subject would let any one of
    them lock all the others out (the service line for every agent calling with a
    withheld number), and a caller can withhold at will, so a per-caller subject does not
    exist. Their failures still count against the agent number they try and towards the
    alert, which is what bounds guessing.
    """
    return f"number:{number}"[:SUBJECT_MAX] if number else None


REDACTED = "<redacted>"


def loggable(subject: str | None) -> str:
    """A subject as INFO/WARNING log lines may show it: a calling number is personal data
    and appears only at DEBUG (SECURITY.md, retention); agent numbers and devices are not."""
    if subject is None:
        return "number:withheld"
    return f"number:{REDACTED}" if subject.startswith("number:") else subject


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


# Slow hashes run here, never on the event loop nor in the default pool: at most this many
# at once (about half the cores, so calls keep a core), the rest wait their turn without
# holding a connection or a row lock.
HASH_THREADS = max(1, (os.cpu_count() or 2) // 2)
_hash_pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="pin-hash")
_T = TypeVar("_T")

# Attempts that count towards the alert, and its audit action.
FAILED_ACTIONS = ("pin_failed", "pin_refused_locked")
ALERT_ACTION = "pin_failure_alert"
_ALERT_LOCK = 0x484F544C  # pg advisory lock: one alert per window, whichever node sees it


async def _off_loop(fn: Callable[..., _T], *args: str | None) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_hash_pool, fn, *args)


def _state(row: Lockout) -> LockoutState:
    return LockoutState(
        row.failures, row.locked_until, False, row.lockouts or 0, row.last_failure_at
    )


def _store(row: Lockout, state: LockoutState) -> None:
    row.failures, row.locked_until = state.failures, state.locked_until
    row.lockouts, row.last_failure_at = state.lockouts, state.last_failure_at


async def is_locked(session: AsyncSession, subject: str, now: datetime) -> bool:
    row = await session.get(Lockout, subject)
    return row is not None and LockoutPolicy.is_locked(row.locked_until, now)


async def _lock_rows(session: AsyncSession, subjects: list[str]) -> list[Lockout]:
    """The subjects' rows, created if missing and locked FOR UPDATE (in subject order, so
    two concurrent attempts cannot deadlock): attempts on one subject are serialised."""
    if not subjects:
        return []
    await session.execute(
        insert(Lockout)
        .values([{"subject": s, "failures": 0, "lockouts": 0} for s in subjects])
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


async def failure_alert(
    session: AsyncSession, policy: LockoutPolicy, now: datetime, path: Path
) -> bool:
    """Raise the alert (audit row + log warning) when failed attempts on all agents within
    `policy.alert_window` reach `policy.alert_failures`, at most once per window."""
    since = now - policy.alert_window
    failed = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.at > since, AuditEntry.action.in_(FAILED_ACTIONS))
    )
    if int(failed or 0) < policy.alert_failures:
        return False
    await session.execute(select(func.pg_advisory_xact_lock(_ALERT_LOCK)))
    raised = await session.scalar(
        select(AuditEntry.id)
        .where(AuditEntry.at > since, AuditEntry.action == ALERT_ACTION)
        .limit(1)
    )
    if raised is not None:
        return False
    window_s = int(policy.alert_window.total_seconds())
    await audit.record(
        session,
        actor="system",
        action=ALERT_ACTION,
        path=path,
        at=now,
        failures=int(failed or 0),
        window_s=window_s,
    )
    log.warning(
        "PIN guessing alert: %d failed PIN attempts on all agents in the last %d s"
        " (threshold %d); see `hotline audit` and `hotline agent show`",
        int(failed or 0),
        window_s,
        policy.alert_failures,
    )
    return True


async def _failed_attempt(
    session: AsyncSession,
    action: str,
    caller: str | None,
    agent_id: int | None,
    agent_number: str,
    path: Path,
    policy: LockoutPolicy,
    now: datetime,
) -> bool:
    """The audit row of a failed attempt (wrong, or refused while locked), then the alert
    check it may trip; True when this attempt raised the alert."""
    await audit.record(
        session,
        actor=caller or ANONYMOUS,
        action=action,
        path=path,
        agent_id=agent_id,
        at=now,
        agent_number=agent_number or None,
    )
    return await failure_alert(session, policy, now, path)


async def check_pin(
    sessions: async_sessionmaker[AsyncSession],
    *,
    agent_number: str,
    pin: str,
    caller: str | None,
    path: Path,
    policy: LockoutPolicy,
    now: datetime,
    device_identified: bool = False,
) -> PinCheck:
    """One login attempt: agent number + PIN from `caller` (a `number:`/`device:` subject,
    None for a withheld number).

    Every failure counts against the calling subject and, when the agent number is well
    formed (existing or not, so that locking tells nothing about which numbers exist),
    against `agent:<number>`; reaching `policy.max_failures` locks them, each lock of a
    streak twice as long as the one before. With `device_identified` (the agent's own
    bound device, authenticated by Asterisk, asks for the PIN) only the device counts: a
    guesser who locked the agent number elsewhere does not lock the agent out of their
    own desk phone (SECURITY.md, lockout versus denial of service).

    The attempt is counted as a failure *before* the hash is checked (first transaction),
    so parallel calls cannot get more guesses in than the policy allows; a right PIN then
    clears the counters (second transaction).
    """
    try:
        agent_number = values.agent_number(agent_number)
    except InvalidValue:
        agent_number = ""
    subjects = {caller} if caller else set()
    if agent_number and not device_identified:
        subjects.add(agent_subject(agent_number))
    ordered = sorted(subjects)

    # 1: is anything locked? count the attempt; read the hash. No hashing in here.
    counted: dict[str, LockoutState] = {}
    async with sessions() as session, session.begin():
        rows = await _lock_rows(session, ordered)
        agent = (
            await session.scalar(select(Agent).where(Agent.number == agent_number))
            if agent_number
            else None
        )
        agent_id = agent.id if agent else None
        states = {row.subject: policy.settle(_state(row), now) for row in rows}
        if any(state.locked for state in states.values()):
            alert = await _failed_attempt(
                session, "pin_refused_locked", caller, agent_id, agent_number, path, policy, now
            )
            return PinCheck(Verdict.LOCKED, alert=alert)
        for row in rows:
            counted[row.subject] = policy.fail(states[row.subject], now)
            _store(row, counted[row.subject])
        stored = agent.pin_hash if agent else None

    # The slow part, with no connection and no row lock held.
    ok = await _off_loop(verify_pin, pin, stored)
    rehashed = (
        await _off_loop(hash_pin, pin)
        if ok and stored is not None and needs_rehash(stored)
        else None
    )

    # 2: record the outcome.
    async with sessions() as session, session.begin():
        if ok and agent_id is not None:
            current = await session.get(Agent, agent_id, with_for_update=True)
            if current is not None and current.pin_hash == stored:  # not changed meanwhile
                if ordered:  # a success ends the streak; no row is kept for it
                    await session.execute(delete(Lockout).where(Lockout.subject.in_(ordered)))
                if rehashed is not None:
                    current.pin_hash = rehashed
                return PinCheck(Verdict.OK, current)
        locked_now = False
        for subject, state in counted.items():
            if not state.locked:
                continue
            locked_now = True
            await audit.record(
                session,
                actor=caller or ANONYMOUS,
                action="lockout",
                path=path,
                agent_id=agent_id,
                at=now,
                subject=subject,
                failures=state.failures,
                lockouts=state.lockouts,
                locked_until=state.locked_until.isoformat() if state.locked_until else None,
            )
            log.debug("PIN lockout of %s", subject)
            log.warning(
                "PIN lockout of %s after %d failures (lock %d of the streak, until %s)",
                loggable(subject),
                state.failures,
                state.lockouts,
                state.locked_until.isoformat() if state.locked_until else "?",
            )
        alert = await _failed_attempt(
            session, "pin_failed", caller, agent_id, agent_number, path, policy, now
        )
    return PinCheck(Verdict.WRONG, locked_now=locked_now, alert=alert)


# -- what ops see and do (`hotline agent show` / `hotline agent unlock`) -------------------


@dataclass(frozen=True)
class LockInfo:
    subject: str
    failures: int
    locked_until: datetime | None
    lockouts: int

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "failures": self.failures,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "lockouts": self.lockouts,
        }


async def agent_subjects(session: AsyncSession, agent: Agent) -> list[str]:
    """The lockout subjects that are the agent's: the agent number, the bound device and
    the configured external numbers (the agent's own phones, locked by their typos too)."""
    targets = await session.execute(
        select(AgentTarget.kind, AgentTarget.address).where(AgentTarget.agent_id == agent.id)
    )
    subjects = [agent_subject(agent.number)]
    for kind, address in targets:
        subject = device_subject(address) if kind is TargetKind.DEVICE else number_subject(address)
        if subject is not None:
            subjects.append(subject)
    return subjects


async def locks_of(
    session: AsyncSession, agent: Agent, policy: LockoutPolicy, now: datetime
) -> list[LockInfo]:
    """The agent's subjects that count failures or are locked, as they stand at `now`."""
    subjects = await agent_subjects(session, agent)
    rows = await session.scalars(
        select(Lockout).where(Lockout.subject.in_(subjects)).order_by(Lockout.subject)
    )
    out = []
    for row in rows:
        state = policy.settle(_state(row), now)
        if state.failures or state.locked or state.lockouts:
            out.append(
                LockInfo(
                    row.subject,
                    state.failures,
                    state.locked_until if state.locked else None,
                    state.lockouts,
                )
            )
    return out


async def unlock(session: AsyncSession, agent: Agent, *, actor: str, path: Path) -> list[str]:
    """Lift every lock and forget every streak of the agent's subjects (audited); returns
    the subjects that had a row."""
    subjects = await agent_subjects(session, agent)
    removed = list(
        await session.scalars(
            delete(Lockout).where(Lockout.subject.in_(subjects)).returning(Lockout.subject)
        )
    )
    await audit.record(
        session,
        actor=actor,
        action="unlock",
        path=path,
        agent_id=agent.id,
        subjects=sorted(removed),
    )
    log.info(
        "PIN locks of agent %s lifted by %s: %s",
        agent.number,
        actor,
        [loggable(subject) for subject in sorted(removed)],
    )
    return sorted(removed)
