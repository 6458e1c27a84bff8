"""The database side of handing an on-call duty over (issue 4; the call side is
flows/handover.py): who would leave which hotlines short, which colleagues to ask, logging
the requester out (or pausing them) and the colleague in, with the audit rows."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, AgentLogin, AgentState, AgentTarget, Hotline, Membership
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import HotlineError
from ari_app.services import agents, audit
from ari_app.services.audit import Path


class HandoverAction(enum.StrEnum):
    LOGOUT = "logout"  # the requester logs out of `hotline_ids`
    PAUSE = "pause"  # the requester becomes not available (all their hotlines)


@dataclass
class Colleague:
    agent_id: int
    number: str
    hotline_ids: list[int]  # the short hotlines the colleague is a member of
    targets: list[tuple[str, TargetKind]]  # bound device first, then the external numbers
    language: str | None = None  # what the colleague hears (None: the server's default)


@dataclass
class Plan:
    requester: Agent
    leaving: list[Hotline]  # what the requester leaves (LOGOUT) / all their hotlines (PAUSE)
    short: list[Hotline] = field(default_factory=list)
    colleagues: list[Colleague] = field(default_factory=list)


async def plan(
    session: AsyncSession, agent_id: int, action: HandoverAction, hotline_ids: Collection[int]
) -> Plan | None:
    """What the requester leaves, which of it would fall short, and whom to ask (None when
    the requester is gone). `hotline_ids` narrows a LOGOUT (empty: all their hotlines)."""
    requester = await session.get(Agent, agent_id)
    if requester is None:
        return None
    member_of = select(Membership.hotline_id).where(Membership.agent_id == requester.id)
    query = select(Hotline).where(Hotline.id.in_(member_of)).order_by(Hotline.number)
    if action is HandoverAction.LOGOUT and hotline_ids:
        query = query.where(Hotline.id.in_(hotline_ids))
    leaving = list(await session.scalars(query))
    result = Plan(requester, leaving)
    result.short = await agents.understaffed_by_leaving(session, requester, leaving)
    if result.short:
        result.colleagues = await colleagues(session, requester.id, result.short)
    return result


async def leave(
    session: AsyncSession,
    requester: Agent,
    leaving: list[Hotline],
    action: HandoverAction,
    path: Path,
) -> None:
    """Log the requester out of `leaving` (or pause them); the staffing rule still
    applies, so a colleague who left meanwhile makes this fail rather than leave a
    hotline short."""
    actor = f"agent:{requester.number}"
    if action is HandoverAction.PAUSE:
        await agents.set_paused(session, requester, True, path=path, actor=actor)
        return
    for hotline in leaving:
        await agents.logout(
            session, requester, hotline_number=hotline.number, path=path, actor=actor
        )


async def take_over(
    session: AsyncSession,
    colleague: Colleague,
    hotlines: Mapping[int, str],
    target: agents.Target,
    *,
    requester_id: int,
    action: HandoverAction,
) -> list[str]:
    """Log the colleague in to those of `hotlines` (id -> number) they are a member of, on
    the target they answered, and unpause them; one `handover` audit row per hotline.
    Returns the hotline numbers taken over."""
    actor = f"agent:{colleague.number}"
    path: Path = "device" if target.kind is TargetKind.DEVICE else "service"
    agent = await session.get(Agent, colleague.agent_id)
    if agent is None:
        raise HotlineError(f"agent {colleague.number} is gone")
    taken = []
    for hotline_id in colleague.hotline_ids:
        number = hotlines.get(hotline_id)
        if number is None:
            continue
        await agents.login(
            session, agent, target=target, hotline_number=number, path=path, actor=actor
        )
        await audit.record(
            session,
            actor=actor,
            action="handover",
            path=path,
            agent_id=requester_id,
            hotline_id=hotline_id,
            to_agent=colleague.number,
            requested=action.value,
        )
        taken.append(number)
    state = await session.get(AgentState, agent.id)
    if state is not None and state.paused:
        await agents.set_paused(session, agent, False, path=path, actor=actor)
    return taken


async def colleagues(
    session: AsyncSession, requester_id: int, short: Sequence[Hotline]
) -> list[Colleague]:
    """The other members of the short hotlines, hotline by hotline in membership position
    order, who are not available there now, each with their configured targets."""
    order = {hotline.id: index for index, hotline in enumerate(short)}
    result = await session.execute(
        select(Membership.hotline_id, Membership.position, Agent.id, Agent.number, Agent.language)
        .join(Agent, Agent.id == Membership.agent_id)
        .where(Membership.hotline_id.in_(order), Membership.agent_id != requester_id)
    )
    rows = sorted(result.all(), key=lambda r: (order[r[0]], r[1], r[3]))
    on_duty = {
        (agent_id, hotline_id)
        for agent_id, hotline_id in await session.execute(
            select(AgentLogin.agent_id, AgentLogin.hotline_id)
            .join(AgentState, AgentState.agent_id == AgentLogin.agent_id)
            .where(AgentLogin.hotline_id.in_(order), AgentState.paused.is_(False))
        )
    }
    by_agent: dict[int, Colleague] = {}
    for hotline_id, _, agent_id, number, language in rows:
        if (agent_id, hotline_id) in on_duty:
            continue
        colleague = by_agent.get(agent_id)
        if colleague is None:
            colleague = by_agent[agent_id] = Colleague(agent_id, number, [], [], language)
        colleague.hotline_ids.append(hotline_id)
    for target in await session.scalars(
        select(AgentTarget)
        .where(AgentTarget.agent_id.in_(by_agent))
        .order_by(AgentTarget.kind, AgentTarget.id)
    ):
        by_agent[target.agent_id].targets.append((target.address, target.kind))
    return [c for c in by_agent.values() if c.targets]
