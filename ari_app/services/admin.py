"""Hotline and agent administration shared by the CLI, the demo seed and the tests.

Every function takes the caller's AsyncSession, never commits, and raises domain errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import (
    Agent,
    AgentLogin,
    AgentState,
    AgentTarget,
    AuditEntry,
    Call,
    Holiday,
    Hotline,
    Membership,
    Voicemail,
)
from ari_app.domain import agent_state, values
from ari_app.domain.actions import normalise_action
from ari_app.domain.enums import CallStatus, TargetKind
from ari_app.domain.errors import Conflict, InvalidValue, NotFound, Refused
from ari_app.domain.hours import normalise_hours, validate_timezone
from ari_app.domain.pin import PIN_MIN_LENGTH, check_pin_policy, hash_pin
from ari_app.domain.sounds import language as _language
from ari_app.domain.strategies import Strategy, parse_strategy
from ari_app.services import audit

# --- hotline settings: one validation for every edge ------------------------------------

_MOH_CLASS = re.compile(r"[A-Za-z0-9_-]{1,80}")
NAME_MAX = 100  # hotlines.name / agents.name columns


def _name(value: object, what: str) -> str:
    text = " ".join(str(value).split())
    if not text:
        raise InvalidValue(f"{what}: empty")
    if len(text) > NAME_MAX:
        raise InvalidValue(f"{what}: longer than {NAME_MAX} characters")
    return text


def check_agent_name(value: object) -> str:
    """An agent's name as every edge stores it (CLI, config files, imports)."""
    return _name(value, "agent name")


# Upper bounds, so a typo (or a caller) cannot fill the disk: one message at most 10 min,
# at most 10000 messages kept per hotline.
VOICEMAIL_MAX_S = 600
VOICEMAIL_QUOTA_MAX = 10000


def _between(minimum: int, maximum: int, what: str) -> Callable[[object], int]:
    at_least = _at_least(minimum, what)

    def check(value: object) -> int:
        number = at_least(value)
        if number > maximum:
            raise InvalidValue(f"{what}: must be at most {maximum}, got {number}")
        return number

    return check


def _at_least(minimum: int, what: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(f"{what}: {value!r} is not a whole number")
        if value < minimum:
            raise InvalidValue(f"{what}: must be at least {minimum}, got {value}")
        return value

    return check


def _optional_sound(what: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None or not str(value).strip():
            return None
        try:
            return values.sound_name(str(value))
        except InvalidValue as exc:
            raise InvalidValue(f"{what}: {exc.message}") from None

    return check


def _action(what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        try:
            return normalise_action(str(value))
        except InvalidValue as exc:
            raise InvalidValue(f"{what}: {exc.message}") from None

    return check


def _strategy(value: object) -> Strategy:
    return value if isinstance(value, Strategy) else parse_strategy(str(value))


def _moh(value: object) -> str:
    text = str(value).strip()
    if not _MOH_CLASS.fullmatch(text):
        raise InvalidValue(f"music on hold class: {text!r} may contain only letters, digits, '-_'")
    return text


def _caller_id_mode(value: object) -> str:
    text = str(value).strip().lower()
    if text not in ("caller", "hotline"):
        raise InvalidValue(f"caller ID to agents: {value!r} must be 'caller' or 'hotline'")
    return text


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"accept confirm: {value!r} must be true or false")
    return value


def _escalation(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidValue("escalation numbers: expected a list of phone numbers")
    numbers: list[str] = []
    for item in value:
        number = values.phone_number(str(item))
        if number not in numbers:
            numbers.append(number)
    return numbers


def _bool(what: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise InvalidValue(f"{what}: {value!r} must be true or false")
        return value

    return check


def _emails(value: object) -> list[str]:
    """A list, or one comma-separated text as typed: `a@x.org,b@y.org` ('' clears)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise InvalidValue("voicemail notification: expected e-mail addresses")
    addresses: list[str] = []
    for item in items:
        if isinstance(value, str) and not str(item).strip():
            continue
        address = values.email_address(str(item))
        if address not in addresses:
            addresses.append(address)
    return addresses


_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "number": values.hotline_number,
    "name": lambda v: _name(v, "hotline name"),
    "strategy": _strategy,
    "ring_timeout_s": _at_least(1, "ring timeout"),
    "retry_delay_s": _at_least(0, "retry delay"),
    "wrapup_s": _at_least(0, "wrap-up time"),
    "max_wait_s": _at_least(1, "maximum wait"),
    "max_queue_len": _at_least(1, "maximum queue length"),
    "no_answer_limit": _at_least(0, "no-answer limit"),
    "greeting_sound": _optional_sound("greeting"),
    "announce_frequency_s": _at_least(0, "announcement interval"),
    "moh_class": _moh,
    "timezone": validate_timezone,
    "opening_hours": normalise_hours,
    "closed_action": _action("closed action"),
    "no_agent_action": _action("no-agent action"),
    "timeout_action": _action("timeout action"),
    "voicemail_greeting": _optional_sound("voicemail greeting"),
    "voicemail_max_s": _between(1, VOICEMAIL_MAX_S, "voicemail length"),
    "voicemail_quota": _between(1, VOICEMAIL_QUOTA_MAX, "voicemail quota"),
    "caller_id_to_agent": _caller_id_mode,
    "accept_confirm": _flag,
    "min_agents": _at_least(0, "minimum agents"),
    "escalation_numbers": _escalation,
    "service_level_s": _at_least(1, "service level"),
    "vm_notify": _emails,
    "vm_notify_attach": _bool("voicemail notification attach"),
    "vm_notify_caller": _bool("voicemail notification caller number"),
    "language": lambda v: None if v is None else _language(str(v)),
    "callback_after_s": _at_least(0, "callback offer time"),
    "callback_attempts": _at_least(1, "callback attempts"),
    "callback_interval_s": _at_least(0, "callback interval"),
}
HOTLINE_SETTINGS = frozenset(_SETTINGS)


def check_hotline_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validated, normalised hotline settings (column name -> value); InvalidValue names
    the setting that is wrong. An unknown name is a programming error (ValueError)."""
    unknown = set(settings) - HOTLINE_SETTINGS
    if unknown:
        raise ValueError(f"unknown hotline setting(s): {', '.join(sorted(unknown))}")
    return {key: _SETTINGS[key](value) for key, value in settings.items()}


async def get_hotline(session: AsyncSession, number: str) -> Hotline:
    """The hotline with this number (the one lookup by number; NotFound if none)."""
    hotline = await session.scalar(select(Hotline).where(Hotline.number == number))
    if hotline is None:
        raise NotFound(f"no hotline with number {number}")
    return hotline


async def get_agent(session: AsyncSession, number: str) -> Agent:
    agent = await session.scalar(select(Agent).where(Agent.number == number))
    if agent is None:
        raise NotFound(f"no agent with number {number}")
    return agent


async def create_hotline(
    session: AsyncSession,
    number: str,
    name: str,
    *,
    holidays: Iterable[date] = (),
    actor: str | None = None,
    **settings: Any,
) -> Hotline:
    """Create a hotline with its holidays; audited (`hotline_create`) when `actor` is given."""
    number = values.hotline_number(number)
    checked = check_hotline_settings({"name": name, **settings})
    if await session.scalar(select(Hotline.id).where(Hotline.number == number)) is not None:
        raise Conflict(f"a hotline with number {number} exists already")
    hotline = Hotline(number=number, **checked)
    session.add(hotline)
    await session.flush()
    holidays = list(holidays)
    if holidays:
        await add_holidays(session, hotline, holidays)
    await audit.ops_change(
        session,
        actor,
        "hotline_create",
        hotline_id=hotline.id,
        name=name,
        holidays=holidays,
        **settings,
    )
    return hotline


async def create_agent(
    session: AsyncSession,
    number: str,
    name: str,
    *,
    pin: str | None = None,
    device: str | None = None,
    external_numbers: Iterable[str] = (),
    pin_min_length: int = PIN_MIN_LENGTH,
    language: str | None = None,
    actor: str | None = None,
) -> Agent:
    """Create an agent; audited (`agent_create`, never the PIN) when `actor` is given."""
    number = values.agent_number(number)
    name = check_agent_name(name)
    if await session.scalar(select(Agent.id).where(Agent.number == number)) is not None:
        raise Conflict(f"an agent with number {number} exists already")
    agent = Agent(
        number=number, name=name, language=None if language is None else _language(language)
    )
    if pin is not None:
        check_pin_policy(pin, min_length=pin_min_length, agent_number=number)
        agent.pin_hash = hash_pin(pin)
    session.add(agent)
    await session.flush()
    session.add(AgentState(agent_id=agent.id))
    if device is not None:
        await add_target(session, agent, TargetKind.DEVICE, device)
    external_numbers = list(external_numbers)
    for external in external_numbers:
        await add_target(session, agent, TargetKind.EXTERNAL, external)
    await session.flush()
    await audit.ops_change(
        session,
        actor,
        "agent_create",
        agent_id=agent.id,
        number=agent.number,
        device=device,
        external_numbers=external_numbers,
        pin_set=pin is not None,
        language=language,
    )
    return agent


async def add_target(
    session: AsyncSession, agent: Agent, kind: TargetKind, address: str
) -> AgentTarget:
    address = (
        values.dial_string(address) if kind is TargetKind.DEVICE else values.phone_number(address)
    )
    taken = await session.scalar(
        select(AgentTarget).where(AgentTarget.kind == kind, AgentTarget.address == address)
    )
    if taken is not None:
        raise Conflict(f"{address} is configured already")
    if kind is TargetKind.DEVICE:
        for old in await session.scalars(
            select(AgentTarget).where(
                AgentTarget.agent_id == agent.id, AgentTarget.kind == TargetKind.DEVICE
            )
        ):
            await session.delete(old)
    target = AgentTarget(agent_id=agent.id, kind=kind, address=address)
    session.add(target)
    await session.flush()
    return target


async def add_member(
    session: AsyncSession,
    hotline: Hotline,
    agent: Agent,
    position: int | None = None,
    *,
    actor: str | None = None,
) -> Membership:
    """Add the agent at `position` in the ring order (default: last); audited
    (`member_add`) when `actor` is given."""
    existing = await session.get(Membership, (hotline.id, agent.id))
    if existing is not None:
        raise Conflict(f"agent {agent.number} is a member of hotline {hotline.number} already")
    if position is not None:
        # Insert, like into a list: whoever sat at this place or later moves one down.
        await session.execute(
            update(Membership)
            .where(Membership.hotline_id == hotline.id, Membership.position >= position)
            .values(position=Membership.position + 1)
            .execution_options(synchronize_session=False)
        )
    else:
        last = await session.scalar(
            select(Membership.position)
            .where(Membership.hotline_id == hotline.id)
            .order_by(Membership.position.desc())
            .limit(1)
        )
        position = 0 if last is None else last + 1
    membership = Membership(hotline_id=hotline.id, agent_id=agent.id, position=position)
    session.add(membership)
    await session.flush()
    await audit.ops_change(
        session,
        actor,
        "member_add",
        agent_id=agent.id,
        hotline_id=hotline.id,
        position=membership.position,
    )
    return membership


# --- hotlines ---------------------------------------------------------------------------


async def list_hotlines(session: AsyncSession) -> list[Hotline]:
    return list(await session.scalars(select(Hotline).order_by(Hotline.number)))


async def update_hotline(
    session: AsyncSession,
    hotline: Hotline,
    *,
    holidays_added: Iterable[date] = (),
    holidays_removed: Iterable[date] = (),
    actor: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Apply validated settings and add / remove holidays; returns the changed settings
    (name -> new value). Audited (`hotline_update`) when `actor` is given."""
    old_number = hotline.number
    checked = check_hotline_settings(settings)
    new_number = checked.get("number")
    if new_number is not None and new_number != hotline.number:
        taken = await session.scalar(select(Hotline.id).where(Hotline.number == new_number))
        if taken is not None:
            raise Conflict(f"a hotline with number {new_number} exists already")
    changed = {k: v for k, v in checked.items() if getattr(hotline, k) != v}
    for key, value in changed.items():
        setattr(hotline, key, value)
    await session.flush()
    wanted, removed = list(holidays_added), list(holidays_removed)
    added = await add_holidays(session, hotline, wanted) if wanted else []
    if removed:
        await remove_holidays(session, hotline, removed)
    await audit.ops_change(
        session,
        actor,
        "hotline_update",
        hotline_id=hotline.id,
        number=old_number,
        changed=changed,
        holidays_added=added,
        holidays_removed=removed,
    )
    return changed


async def delete_hotline(
    session: AsyncSession, hotline: Hotline, *, actor: str | None = None
) -> None:
    """Delete a hotline with its memberships, logins and holidays. Refused while calls are
    in progress or voicemails remain: their recordings live in Asterisk and must be
    deleted through `hotline voicemail delete` rather than orphaned. Audited
    (`hotline_delete`) when `actor` is given."""
    await audit.ops_change(
        session, actor, "hotline_delete", hotline_id=hotline.id, number=hotline.number
    )
    active = await session.scalar(
        select(func.count())
        .select_from(Call)
        .where(Call.hotline_id == hotline.id, Call.status != CallStatus.ENDED)
    )
    if active:
        raise Refused(f"hotline {hotline.number} has {active} call(s) in progress")
    kept = await session.scalar(
        select(func.count()).select_from(Voicemail).where(Voicemail.hotline_id == hotline.id)
    )
    if kept:
        raise Refused(
            f"hotline {hotline.number} has {kept} voicemail(s); delete them first"
            " (hotline voicemail list/delete)"
        )
    # A bulk DELETE: the database cascades to holidays, memberships and logins (the ORM
    # relationship is lazy="raise" and must not be loaded for that).
    await session.execute(delete(Hotline).where(Hotline.id == hotline.id))


async def holidays(session: AsyncSession, hotline: Hotline) -> list[date]:
    return list(
        await session.scalars(
            select(Holiday.day).where(Holiday.hotline_id == hotline.id).order_by(Holiday.day)
        )
    )


async def add_holidays(session: AsyncSession, hotline: Hotline, days: Iterable[date]) -> list[date]:
    """Add holidays (days that are holidays already stay); returns the days added."""
    existing = set(await holidays(session, hotline))
    added = sorted(set(days) - existing)
    session.add_all(Holiday(hotline_id=hotline.id, day=day) for day in added)
    await session.flush()
    return added


async def remove_holidays(session: AsyncSession, hotline: Hotline, days: Iterable[date]) -> None:
    existing = set(await holidays(session, hotline))
    wanted = set(days)
    missing = sorted(wanted - existing)
    if missing:
        raise NotFound(f"{missing[0].isoformat()} is not a holiday of hotline {hotline.number}")
    await session.execute(
        delete(Holiday).where(Holiday.hotline_id == hotline.id, Holiday.day.in_(wanted))
    )


# --- agents -----------------------------------------------------------------------------


async def list_agents(session: AsyncSession) -> list[Agent]:
    return list(await session.scalars(select(Agent).order_by(Agent.number)))


async def targets_of(session: AsyncSession, agent: Agent) -> list[AgentTarget]:
    return list(
        await session.scalars(
            select(AgentTarget)
            .where(AgentTarget.agent_id == agent.id)
            .order_by(AgentTarget.kind, AgentTarget.address)
        )
    )


async def hotlines_of(session: AsyncSession, agent: Agent) -> list[tuple[Hotline, bool]]:
    """The agent's hotlines in number order, each with whether the agent is logged in."""
    rows = await session.execute(
        select(Hotline, AgentLogin.agent_id.is_not(None))
        .join(Membership, Membership.hotline_id == Hotline.id)
        .outerjoin(
            AgentLogin,
            (AgentLogin.hotline_id == Hotline.id) & (AgentLogin.agent_id == agent.id),
        )
        .where(Membership.agent_id == agent.id)
        .order_by(Hotline.number)
    )
    return [(hotline, bool(logged_in)) for hotline, logged_in in rows]


async def update_agent(
    session: AsyncSession,
    agent: Agent,
    *,
    name: str | None = None,
    number: str | None = None,
    language: str | None = None,
    actor: str | None = None,
) -> dict[str, str]:
    """Rename or renumber an agent, or change the language the agent hears; returns the
    changed fields. Audited (`agent_update`) when `actor` is given."""
    old_number = agent.number
    changed: dict[str, str] = {}
    if language is not None and await set_agent_language(session, agent, language):
        changed["language"] = language
    if number is not None:
        number = values.agent_number(number)
        if number != agent.number:
            if await session.scalar(select(Agent.id).where(Agent.number == number)) is not None:
                raise Conflict(f"an agent with number {number} exists already")
            changed["number"] = agent.number = number
    if name is not None:
        name = check_agent_name(name)
        if name != agent.name:
            changed["name"] = agent.name = name
    await session.flush()
    await audit.ops_change(
        session, actor, "agent_update", agent_id=agent.id, number=old_number, changed=changed
    )
    return changed


async def set_agent_language(session: AsyncSession, agent: Agent, language: str | None) -> bool:
    """The language the agent hears; None: the server's HOTLINE_LANGUAGE. True if changed."""
    value = None if language is None else _language(language)
    if value == agent.language:
        return False
    agent.language = value
    await session.flush()
    return True


async def _busy(session: AsyncSession, agent: Agent) -> bool:
    state = await session.get(AgentState, agent.id)
    return state is not None and (
        state.reserved_call_id is not None or state.activity in agent_state.BUSY
    )


async def delete_agent(session: AsyncSession, agent: Agent, *, actor: str | None = None) -> None:
    """Delete an agent with targets, memberships and logins; refused during a call.
    Audited (`agent_delete`) when `actor` is given."""
    await audit.ops_change(session, actor, "agent_delete", agent_id=agent.id, number=agent.number)
    if await _busy(session, agent):
        raise Refused(f"agent {agent.number} is on a call; try again when it is over")
    await session.execute(delete(Agent).where(Agent.id == agent.id))  # the database cascades


async def set_pin(
    session: AsyncSession,
    agent: Agent,
    pin: str,
    *,
    min_length: int = PIN_MIN_LENGTH,
    actor: str | None = None,
) -> None:
    """Set the agent's PIN; audited (`agent_set_pin`, never the PIN) when `actor` is given."""
    check_pin_policy(pin, min_length=min_length, agent_number=agent.number)
    agent.pin_hash = hash_pin(pin)
    await session.flush()
    await audit.ops_change(session, actor, "agent_set_pin", agent_id=agent.id)


async def _current_target(session: AsyncSession, agent: Agent) -> AgentState | None:
    state = await session.get(AgentState, agent.id, with_for_update=True)
    if state is None or state.target is None:
        return None
    logged = await session.scalar(
        select(func.count()).select_from(AgentLogin).where(AgentLogin.agent_id == agent.id)
    )
    return state if logged else None


async def bind_device(
    session: AsyncSession, agent: Agent, device: str, *, actor: str | None = None
) -> str:
    """Bind the agent's internal device (replacing the old one); an agent logged in on the
    old device keeps receiving calls, now on the new one. Returns the dial string.
    Audited (`agent_device_bind`) when `actor` is given."""
    device = values.dial_string(device)
    await audit.ops_change(session, actor, "agent_device_bind", agent_id=agent.id, device=device)
    old = await session.scalar(
        select(AgentTarget.address).where(
            AgentTarget.agent_id == agent.id, AgentTarget.kind == TargetKind.DEVICE
        )
    )
    if old == device:
        return device
    await add_target(session, agent, TargetKind.DEVICE, device)
    state = await _current_target(session, agent)
    if state is not None and state.target_kind is TargetKind.DEVICE and state.target == old:
        state.target = device
    await session.flush()
    return device


async def _refuse_if_logged_in_on(session: AsyncSession, agent: Agent, address: str) -> None:
    state = await _current_target(session, agent)
    if state is not None and state.target == address:
        raise Refused(
            f"agent {agent.number} is logged in on {address}; log them out first"
            f" (hotline logout {agent.number})"
        )


async def unbind_device(session: AsyncSession, agent: Agent, *, actor: str | None = None) -> str:
    """Remove the agent's internal device; returns the dial string it had. Audited
    (`agent_device_unbind`) when `actor` is given."""
    target = await session.scalar(
        select(AgentTarget).where(
            AgentTarget.agent_id == agent.id, AgentTarget.kind == TargetKind.DEVICE
        )
    )
    if target is None:
        raise NotFound(f"agent {agent.number} has no device")
    await _refuse_if_logged_in_on(session, agent, target.address)
    await session.delete(target)
    await session.flush()
    await audit.ops_change(
        session, actor, "agent_device_unbind", agent_id=agent.id, device=target.address
    )
    return target.address


async def add_external(
    session: AsyncSession, agent: Agent, number: str, *, actor: str | None = None
) -> str:
    """Add an external number the agent may log in from and take calls on; audited
    (`agent_number_add`) when `actor` is given."""
    target = await add_target(session, agent, TargetKind.EXTERNAL, number)
    await audit.ops_change(
        session, actor, "agent_number_add", agent_id=agent.id, external=target.address
    )
    return target.address


async def remove_external(
    session: AsyncSession, agent: Agent, number: str, *, actor: str | None = None
) -> str:
    """Remove one of the agent's external numbers; audited (`agent_number_remove`) when
    `actor` is given."""
    number = values.phone_number(number)
    target = await session.scalar(
        select(AgentTarget).where(
            AgentTarget.agent_id == agent.id,
            AgentTarget.kind == TargetKind.EXTERNAL,
            AgentTarget.address == number,
        )
    )
    if target is None:
        raise NotFound(f"{number} is not an external number of agent {agent.number}")
    await _refuse_if_logged_in_on(session, agent, number)
    await session.delete(target)
    await session.flush()
    await audit.ops_change(
        session, actor, "agent_number_remove", agent_id=agent.id, external=number
    )
    return number


# --- memberships ------------------------------------------------------------------------


async def members(session: AsyncSession, hotline: Hotline) -> list[tuple[Membership, Agent]]:
    """The hotline's members in ring order (position, then agent number)."""
    rows = await session.execute(
        select(Membership, Agent)
        .join(Agent, Agent.id == Membership.agent_id)
        .where(Membership.hotline_id == hotline.id)
        .order_by(Membership.position, Agent.number)
    )
    return [(membership, agent) for membership, agent in rows]


async def reorder_members(session: AsyncSession, hotline: Hotline, agents: list[Agent]) -> None:
    """Give the hotline's members the ring order of `agents` (positions 0, 1, ...); every
    member must be in the list."""
    rows = {m.agent_id: m for m, _ in await members(session, hotline)}
    if set(rows) != {a.id for a in agents}:
        raise ValueError("reorder_members: the list must hold exactly the hotline's members")
    for position, agent in enumerate(agents):
        rows[agent.id].position = position
    await session.flush()


async def remove_member(
    session: AsyncSession, hotline: Hotline, agent: Agent, *, actor: str | None = None
) -> None:
    """Remove the agent from the hotline, logging them out of it; audited
    (`member_remove`) when `actor` is given."""
    membership = await session.get(Membership, (hotline.id, agent.id))
    if membership is None:
        raise NotFound(f"agent {agent.number} is not a member of hotline {hotline.number}")
    await session.execute(
        delete(AgentLogin).where(
            AgentLogin.agent_id == agent.id, AgentLogin.hotline_id == hotline.id
        )
    )
    await session.delete(membership)
    await session.flush()
    await audit.ops_change(
        session, actor, "member_remove", agent_id=agent.id, hotline_id=hotline.id
    )


# --- audit log --------------------------------------------------------------------------


async def audit_entries(
    session: AsyncSession,
    *,
    agent_number: str | None = None,
    hotline_number: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest `limit` audit rows matching, oldest first, with agent and hotline numbers
    (None once deleted; the detail usually still names them)."""
    query = (
        select(AuditEntry, Agent.number, Hotline.number)
        .outerjoin(Agent, Agent.id == AuditEntry.agent_id)
        .outerjoin(Hotline, Hotline.id == AuditEntry.hotline_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
    )
    if agent_number is not None:
        query = query.where(AuditEntry.agent_id == (await get_agent(session, agent_number)).id)
    if hotline_number is not None:
        hotline = await get_hotline(session, hotline_number)
        query = query.where(AuditEntry.hotline_id == hotline.id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    rows = (await session.execute(query)).all()
    return [
        {
            "at": entry.at,
            "actor": entry.actor,
            "action": entry.action,
            "path": entry.path,
            "agent": agent,
            "hotline": hotline_no,
            "detail": entry.detail,
        }
        for entry, agent, hotline_no in reversed(rows)
    ]
