"""Staffing minimum per hotline (`min_agents`, 0 = off): which hotlines are below it, and
the escalation episodes that follow.

A logout or pause through a feature code, the service line or the panel is refused by the
staffing rule (services/agents.py). Every other way out (ops logout from the CLI, auto-pause
after unanswered calls, reconciliation after a restart) can still leave a hotline short;
then the app calls the hotline's escalation numbers (flows/escalation.py).

An escalation episode is kept in the audit log, so it survives restarts and is shared by
every node: `escalation_started` opens it, `staffing_restored` closes it once the hotline
has enough available agents again. A hotline is escalated once per episode, not on every
check. The hotline row is locked while an episode is opened, so two nodes never both call.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import AgentLogin, AgentState, AuditEntry, Hotline
from ari_app.services import audit

log = logging.getLogger(__name__)

STARTED = "escalation_started"
CALL = "escalation_call"
CONFIRMED = "escalation_confirmed"
UNCONFIRMED = "escalation_unconfirmed"
RESTORED = "staffing_restored"
_EPISODE_ACTIONS = (STARTED, RESTORED)
_END_ACTIONS = (CONFIRMED, UNCONFIRMED)

CallOutcome = Literal["confirmed", "no_answer", "not_confirmed", "failed"]


@dataclass(frozen=True)
class Shortage:
    """A hotline with fewer available agents (logged in, not paused) than `min_agents`."""

    hotline_id: int
    number: str
    name: str
    min_agents: int
    available: int
    escalation_numbers: tuple[str, ...]


async def staffing(
    session: AsyncSession, *, lock: bool = False, only: Collection[int] | None = None
) -> list[Shortage]:
    """Every hotline with a minimum, short or not (`available` counts as the staffing rule
    does: logged in and not paused; a busy agent is still on duty)."""
    query = select(Hotline).where(Hotline.min_agents > 0).order_by(Hotline.number)
    if only is not None:
        query = query.where(Hotline.id.in_(only))
    if lock:
        query = query.with_for_update()
    hotlines = list(await session.scalars(query))
    if not hotlines:
        return []
    counts: dict[int, int] = {
        hotline_id: count
        for hotline_id, count in await session.execute(
            select(AgentLogin.hotline_id, func.count())
            .join(AgentState, AgentState.agent_id == AgentLogin.agent_id)
            .where(
                AgentLogin.hotline_id.in_([h.id for h in hotlines]),
                AgentState.paused.is_(False),
            )
            .group_by(AgentLogin.hotline_id)
        )
    }
    return [
        Shortage(
            hotline.id,
            hotline.number,
            hotline.name,
            hotline.min_agents,
            counts.get(hotline.id, 0),
            tuple(hotline.escalation_numbers or ()),
        )
        for hotline in hotlines
    ]


async def shortages(session: AsyncSession) -> list[Shortage]:
    """Hotlines below their staffing minimum now."""
    return [s for s in await staffing(session) if s.available < s.min_agents]


async def is_short(session: AsyncSession, hotline_id: int) -> bool:
    return any(s.hotline_id == hotline_id for s in await shortages(session))


@dataclass(frozen=True)
class Episode:
    """The latest escalation episode of a hotline, from the audit log."""

    open: bool
    node: str | None = None  # the node that started it
    ended: bool = False  # its calls are over (confirmed or nobody confirmed)


async def episode(session: AsyncSession, hotline_id: int) -> Episode:
    latest = await session.scalar(
        select(AuditEntry)
        .where(AuditEntry.hotline_id == hotline_id, AuditEntry.action.in_(_EPISODE_ACTIONS))
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    if latest is None or latest.action != STARTED:
        return Episode(open=False)
    ended = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            and_(
                AuditEntry.hotline_id == hotline_id,
                AuditEntry.action.in_(_END_ACTIONS),
                AuditEntry.id > latest.id,
            )
        )
    )
    node = latest.detail.get("node") if isinstance(latest.detail, dict) else None
    return Episode(open=True, node=str(node) if node else None, ended=bool(ended))


def _needs_action(item: Shortage, current: Episode, node: str, running: Collection[int]) -> bool:
    if item.available >= item.min_agents:
        return current.open  # close the episode
    if current.open:  # escalated already; resume only what this node left unfinished
        return current.node == node and not current.ended and item.hotline_id not in running
    return True


async def open_escalations(
    session: AsyncSession, *, node: str, trigger: str, running: Collection[int] = ()
) -> list[Shortage]:
    """Open an episode (audit `escalation_started`) for every short hotline without one and
    return them: the caller starts their escalation calls. Closes the episodes of hotlines
    staffed again (audit `staffing_restored`).

    `running`: the hotlines this node is escalating now. An open episode this node started
    whose calls neither run nor ended (the app restarted mid-escalation) is returned again,
    so the calls are made after all.
    Locks the rows of hotlines that need an action: call it in a short transaction.
    """
    # An unlocked look first: most checks find nothing to do and then lock nothing.
    todo = [
        item.hotline_id
        for item in await staffing(session)
        if _needs_action(item, await episode(session, item.hotline_id), node, running)
    ]
    if not todo:
        return []
    started: list[Shortage] = []
    for item in await staffing(session, lock=True, only=todo):
        current = await episode(session, item.hotline_id)
        if not _needs_action(item, current, node, running):
            continue  # another node acted meanwhile
        short = item.available < item.min_agents
        if not short:
            if current.open:
                await audit.record(
                    session,
                    actor="system",
                    action=RESTORED,
                    path="system",
                    hotline_id=item.hotline_id,
                    available=item.available,
                    min_agents=item.min_agents,
                )
                log.info("hotline %s staffed again (%d available)", item.number, item.available)
            continue
        if current.open:  # resumed after a restart
            started.append(item)
            continue
        await audit.record(
            session,
            actor="system",
            action=STARTED,
            path="system",
            hotline_id=item.hotline_id,
            trigger=trigger,
            node=node,
            available=item.available,
            min_agents=item.min_agents,
            numbers=len(item.escalation_numbers),
        )
        log.warning(
            "hotline %s below its staffing minimum (%d of %d available; trigger %s): escalating",
            item.number,
            item.available,
            item.min_agents,
            trigger,
        )
        started.append(item)
    return started


async def record_call(
    session: AsyncSession, hotline_id: int, number: str, outcome: CallOutcome
) -> None:
    """One escalation call and how it ended."""
    await audit.record(
        session,
        actor="system",
        action=CALL,
        path="system",
        hotline_id=hotline_id,
        number=number,
        outcome=outcome,
    )


async def record_end(session: AsyncSession, hotline_id: int, confirmed_by: str | None) -> None:
    """The episode's calls are over: someone confirmed (their number) or nobody did."""
    if confirmed_by is not None:
        await audit.record(
            session,
            actor="system",
            action=CONFIRMED,
            path="system",
            hotline_id=hotline_id,
            number=confirmed_by,
        )
    else:
        await audit.record(
            session, actor="system", action=UNCONFIRMED, path="system", hotline_id=hotline_id
        )
