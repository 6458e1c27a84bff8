"""What is going on per hotline right now: agents by exposed presence, callers waiting.

Used by `hotline status`. Presence comes from `ari_app.services.presence.agent_presences`
(the panel's source, built on `ari_app.domain.presence.exposed_presence`) and leaves this
module only as a `presence_record` (agent, name, presence), so no internal state (paused,
wrap-up, logged out) and no reason can leak through here.

Counting follows the panel (`services/hotline_stats.py`): an agent counts as logged in to a
hotline when logged in to it and shown as available or on a call
(`domain.presence.counts_as_staffed`). Paused, wrap-up, right after a call and logged out
are all "not available" and never counted, so no figure tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline, Membership
from ari_app.domain.errors import NotFound
from ari_app.domain.presence import Presence
from ari_app.services.hotline_stats import queues, staffed
from ari_app.services.presence import agent_presences

STAFFED = (Presence.AVAILABLE, Presence.ON_CALL)  # the presences a logged-in count can have


@dataclass(frozen=True)
class HotlineStatus:
    """One hotline now. `logged_in` counts the agents logged in to it by exposed presence
    (available, on_call: "not available" agents are not counted at all); `agents` (only
    when asked for) lists every member's presence record."""

    number: str
    name: str
    logged_in: dict[str, int]
    waiting: int
    longest_wait_s: int
    agents: list[dict[str, str]] = field(default_factory=list)

    @property
    def logged_in_total(self) -> int:
        return sum(self.logged_in.values())

    def as_dict(self, *, with_agents: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hotline": self.number,
            "name": self.name,
            "agents_logged_in": dict(self.logged_in),
            "callers_waiting": self.waiting,
            "longest_wait_s": self.longest_wait_s,
        }
        if with_agents:
            out["agents"] = [dict(a) for a in self.agents]
        return out


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock: it stamped entered_at, and the CLI may run on another host."""
    now = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def hotline_status(
    session: AsyncSession, hotline_number: str | None = None, *, with_agents: bool = False
) -> list[HotlineStatus]:
    """Status of one hotline (NotFound if unknown) or of all, in number order."""
    query = select(Hotline.id, Hotline.number, Hotline.name).order_by(Hotline.number)
    if hotline_number is not None:
        query = query.where(Hotline.number == hotline_number)
    hotlines = (await session.execute(query)).all()
    if hotline_number is not None and not hotlines:
        raise NotFound(f"no hotline with number {hotline_number}")
    ids = [hotline_id for hotline_id, _, _ in hotlines]
    now = await db_now(session)
    presence = {p.agent_id: p for p in await agent_presences(session, now)}

    counts = {i: {p.value: 0 for p in STAFFED} for i in ids}
    presence_of = {agent_id: p.presence for agent_id, p in presence.items()}
    for hotline_id, agents_in in (await staffed(session, presence_of, ids)).items():
        for agent_id in agents_in:
            counts[hotline_id][presence_of[agent_id].value] += 1

    agents: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    if with_agents:
        members = await session.execute(
            select(Membership.hotline_id, Membership.agent_id)
            .where(Membership.hotline_id.in_(ids))
            .order_by(Membership.hotline_id, Membership.position, Membership.agent_id)
        )
        for hotline_id, agent_id in members:
            if agent_id in presence:
                agents[hotline_id].append(presence[agent_id].record())

    waiting = await queues(session, now, ids)
    return [
        HotlineStatus(
            number=number,
            name=name,
            logged_in=counts[hotline_id],
            waiting=waiting.get(hotline_id, (0, 0))[0],
            longest_wait_s=waiting.get(hotline_id, (0, 0))[1],
            agents=agents[hotline_id],
        )
        for hotline_id, number, name in hotlines
    ]


async def agent_presence(session: AsyncSession, agent_id: int) -> Presence:
    """One agent's presence as colleagues see it."""
    now = await db_now(session)
    for p in await agent_presences(session, now):
        if p.agent_id == agent_id:
            return p.presence
    raise NotFound(f"no agent with id {agent_id}")
