"""Agent login, logout and pause, with the staffing rule and the audit row, for every edge
(feature codes, service line, CLI). No reason for a pause is asked or stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, AgentLogin, AgentState, AgentTarget, Hotline, Membership
from ari_app.domain import agent_state
from ari_app.domain.agent_state import AgentEvent
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import NotFound, Refused
from ari_app.services import audit, auth, status
from ari_app.services.audit import Path


@dataclass(frozen=True)
class Target:
    address: str
    kind: TargetKind


async def _state(session: AsyncSession, agent: Agent) -> AgentState:
    state = await session.get(AgentState, agent.id, with_for_update=True)
    if state is None:
        state = AgentState(agent_id=agent.id)
        session.add(state)
        await session.flush()
    return state


async def device_of(session: AsyncSession, agent: Agent) -> str | None:
    result: str | None = await session.scalar(
        select(AgentTarget.address).where(
            AgentTarget.agent_id == agent.id, AgentTarget.kind == TargetKind.DEVICE
        )
    )
    return result


async def member_hotlines(
    session: AsyncSession, agent_id: int, hotline_number: str | None = None
) -> list[Hotline]:
    """The agent's hotlines (one of them when a number is given; [] if not a member)."""
    query = (
        select(Hotline)
        .join(Membership, Membership.hotline_id == Hotline.id)
        .where(Membership.agent_id == agent_id)
        .order_by(Hotline.number)
    )
    if hotline_number is not None:
        query = query.where(Hotline.number == hotline_number)
    return list(await session.scalars(query))


async def _member_hotlines(
    session: AsyncSession, agent: Agent, hotline_number: str | None
) -> list[Hotline]:
    hotlines = await member_hotlines(session, agent.id, hotline_number)
    if hotline_number is not None and not hotlines:
        raise NotFound(f"agent {agent.number} is not a member of hotline {hotline_number}")
    return hotlines


async def login(
    session: AsyncSession,
    agent: Agent,
    *,
    target: Target | None,
    hotline_number: str | None = None,
    path: Path,
    actor: str,
) -> list[Hotline]:
    """Log the agent in to one or all of their hotlines; calls go to `target` (default:
    the bound device). An external target must be one of the numbers ops configured for
    the agent (DESIGN.md: calls are only ever delivered to those); any other is Refused."""
    if target is None:
        device = await device_of(session, agent)
        if device is None:
            raise Refused(f"agent {agent.number} has no device; log in from a phone")
        target = Target(device, TargetKind.DEVICE)
    elif (
        target.kind is TargetKind.EXTERNAL
        and await auth.external_number(session, agent, target.address) is None
    ):
        raise Refused(
            f"{target.address} is not an external number of agent {agent.number}"
            f" (add it with: hotline agent number add {agent.number} {target.address})"
        )
    hotlines = await _member_hotlines(session, agent, hotline_number)
    if not hotlines:
        raise Refused(f"agent {agent.number} is not a member of any hotline")
    state = await _state(session, agent)
    state.target, state.target_kind = target.address, target.kind
    logged = set(
        await session.scalars(select(AgentLogin.hotline_id).where(AgentLogin.agent_id == agent.id))
    )
    for hotline in hotlines:
        if hotline.id not in logged:
            session.add(AgentLogin(agent_id=agent.id, hotline_id=hotline.id))
        await audit.record(
            session,
            actor=actor,
            action="login",
            path=path,
            agent_id=agent.id,
            hotline_id=hotline.id,
            target_kind=target.kind.value,
        )
    await session.flush()
    return hotlines


async def login_from_number(
    session: AsyncSession, agent: Agent, caller: str | None, *, path: Path, actor: str
) -> list[Hotline] | None:
    """Remote login (service line): calls go to the agent's configured external number
    that is the caller ID. None when the caller ID is none of them (or withheld): nothing
    changes but a `login_refused` audit row, which the caller's transaction keeps."""
    number = await auth.external_number(session, agent, caller)
    if number is None:
        await audit.record(
            session,
            actor=actor,
            action="login_refused",
            path=path,
            agent_id=agent.id,
            caller=caller or auth.ANONYMOUS,
            why="not a configured number of the agent",
        )
        return None
    target = Target(number, TargetKind.EXTERNAL)
    return await login(session, agent, target=target, path=path, actor=actor)


async def available_agents(session: AsyncSession, hotline_id: int) -> int:
    """Agents logged in to the hotline and not paused (the staffing rule counts these)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AgentLogin)
            .join(AgentState, AgentState.agent_id == AgentLogin.agent_id)
            .where(AgentLogin.hotline_id == hotline_id, AgentState.paused.is_(False))
        )
        or 0
    )


async def understaffed_by_leaving(
    session: AsyncSession, agent: Agent, hotlines: list[Hotline]
) -> list[Hotline]:
    """Hotlines that would fall below min_agents if this agent left or paused."""
    state = await _state(session, agent)
    logged = set(
        await session.scalars(select(AgentLogin.hotline_id).where(AgentLogin.agent_id == agent.id))
    )
    short = []
    for hotline in hotlines:
        if hotline.min_agents <= 0 or hotline.id not in logged or state.paused:
            continue
        if await available_agents(session, hotline.id) - 1 < hotline.min_agents:
            short.append(hotline)
    return short


async def logout(
    session: AsyncSession,
    agent: Agent,
    *,
    hotline_number: str | None = None,
    path: Path,
    actor: str,
    enforce_staffing: bool = True,
) -> list[Hotline]:
    hotlines = await _member_hotlines(session, agent, hotline_number)
    if enforce_staffing:
        short = await understaffed_by_leaving(session, agent, hotlines)
        if short:
            raise Refused(
                "hotline "
                + ", ".join(h.number for h in short)
                + " would have too few agents; hand the duty over first"
            )
    ids = [h.id for h in hotlines]
    await session.execute(
        delete(AgentLogin).where(AgentLogin.agent_id == agent.id, AgentLogin.hotline_id.in_(ids))
    )
    for hotline in hotlines:
        await audit.record(
            session,
            actor=actor,
            action="logout",
            path=path,
            agent_id=agent.id,
            hotline_id=hotline.id,
        )
    remaining = await session.scalar(
        select(func.count()).select_from(AgentLogin).where(AgentLogin.agent_id == agent.id)
    )
    if not remaining:
        state = await _state(session, agent)
        state.target = None
        state.target_kind = None
        state.paused = False
        if agent_state.allowed(state.activity, AgentEvent.LEFT):  # a wrap-up ends
            state.activity = agent_state.after(state.activity, AgentEvent.LEFT)
    await session.flush()
    return hotlines


async def set_paused(
    session: AsyncSession,
    agent: Agent,
    paused: bool,
    *,
    path: Path,
    actor: str,
    enforce_staffing: bool = True,
) -> None:
    """Not available for all the agent's hotlines (True) or back (False). No reason."""
    state = await _state(session, agent)
    if paused and not state.paused and enforce_staffing:
        short = await understaffed_by_leaving(
            session, agent, await _member_hotlines(session, agent, None)
        )
        if short:
            raise Refused(
                "hotline "
                + ", ".join(h.number for h in short)
                + " would have too few agents; hand the duty over first"
            )
    state.paused = paused
    if not paused:
        state.unanswered_streak = 0
    await audit.record(
        session,
        actor=actor,
        action="pause" if paused else "unpause",
        path=path,
        agent_id=agent.id,
    )
    await session.flush()


async def toggle_paused(
    session: AsyncSession, agent: Agent, *, path: Path, actor: str
) -> bool | None:
    """Feature code *23: not available <-> available, for all the agent's hotlines. Returns
    the new state, None (nothing changed) when the agent is logged in nowhere; Refused by
    the staffing rule like `set_paused`."""
    logged = await session.scalar(
        select(func.count()).select_from(AgentLogin).where(AgentLogin.agent_id == agent.id)
    )
    if not logged:
        return None
    paused = not (await _state(session, agent)).paused
    await set_paused(session, agent, paused, path=path, actor=actor)
    return paused


@dataclass(frozen=True)
class OwnStatus:
    """What an agent hears of one hotline by phone: am I logged in (and not available),
    how many agents are logged in, callers waiting; never a name."""

    hotline: Hotline
    logged_in: bool
    paused: bool
    agents_in: int
    waiting: int


async def own_statuses(
    session: AsyncSession,
    agent: Agent,
    hotline_number: str | None = None,
    *,
    path: Path,
    actor: str,
) -> list[OwnStatus]:
    """The agent's own status (feature code *24<hotline>, service line option 4) for the
    hotline named or each of the agent's hotlines, with one `status` audit row each; []
    when the agent is no member."""
    told = []
    for hotline in await member_hotlines(session, agent.id, hotline_number):
        now = (await status.hotline_status(session, hotline.number))[0]
        logged = await session.get(AgentLogin, (agent.id, hotline.id))
        state = await session.get(AgentState, agent.id)
        paused = bool(state is not None and state.paused)
        told.append(
            OwnStatus(hotline, logged is not None, paused, now.logged_in_total, now.waiting)
        )
        await audit.record(
            session,
            actor=actor,
            action="status",
            path=path,
            agent_id=agent.id,
            hotline_id=hotline.id,
        )
    return told
