"""Hotline and agent administration shared by the CLI, the demo seed and the tests.

Every function takes the caller's AsyncSession, never commits, and raises domain errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, AgentState, AgentTarget, Hotline, Membership, TargetKind
from ari_app.domain import values
from ari_app.domain.errors import Conflict, NotFound
from ari_app.domain.pin import check_pin_policy, hash_pin


async def get_hotline(session: AsyncSession, number: str) -> Hotline:
    hotline = await session.scalar(select(Hotline).where(Hotline.number == number))
    if hotline is None:
        raise NotFound(f"no hotline with number {number}")
    return hotline


async def get_agent(session: AsyncSession, number: str) -> Agent:
    agent = await session.scalar(select(Agent).where(Agent.number == number))
    if agent is None:
        raise NotFound(f"no agent with number {number}")
    return agent


async def create_hotline(session: AsyncSession, number: str, name: str, **settings: Any) -> Hotline:
    number = values.hotline_number(number)
    if await session.scalar(select(Hotline.id).where(Hotline.number == number)) is not None:
        raise Conflict(f"a hotline with number {number} exists already")
    hotline = Hotline(number=number, name=name, **settings)
    session.add(hotline)
    await session.flush()
    return hotline


async def create_agent(
    session: AsyncSession,
    number: str,
    name: str,
    *,
    pin: str | None = None,
    device: str | None = None,
    external_numbers: Iterable[str] = (),
) -> Agent:
    number = values.agent_number(number)
    if await session.scalar(select(Agent.id).where(Agent.number == number)) is not None:
        raise Conflict(f"an agent with number {number} exists already")
    agent = Agent(number=number, name=name)
    if pin is not None:
        check_pin_policy(pin, agent_number=number)
        agent.pin_hash = hash_pin(pin)
    session.add(agent)
    await session.flush()
    session.add(AgentState(agent_id=agent.id))
    if device is not None:
        await add_target(session, agent, TargetKind.DEVICE, device)
    for external in external_numbers:
        await add_target(session, agent, TargetKind.EXTERNAL, external)
    await session.flush()
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
    session: AsyncSession, hotline: Hotline, agent: Agent, position: int | None = None
) -> Membership:
    existing = await session.get(Membership, (hotline.id, agent.id))
    if existing is not None:
        raise Conflict(f"agent {agent.number} is a member of hotline {hotline.number} already")
    if position is None:
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
    return membership
