"""Presence of every agent as colleagues may see it, and the hub that pushes changes to the
team panel (DESIGN.md, "Agent state and presence").

Every record leaves through `presence_record`, so it carries agent, name and presence and
nothing else: no target, no reason, no call direction.

`PresenceHub` keeps the last snapshot (presence and the per-hotline aggregates), recomputes
it at once on `notify()` (the app calls it when an agent's state changes) and on a short
tick, because other nodes and wrap-up expiry change Postgres without telling this process.
It only polls while someone listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Agent, AgentLogin, AgentState, Hotline
from ari_app.domain.enums import AgentActivity
from ari_app.domain.presence import Presence, exposed_presence, presence_record

log = logging.getLogger(__name__)

PresenceRecord = dict[str, str]
DEFAULT_TICK_S = 0.5  # panel updates within a second even for changes made by other nodes


@dataclass(frozen=True)
class AgentPresence:
    """One agent's exposed presence, with the id the aggregates need (never exposed)."""

    agent_id: int
    number: str
    name: str
    presence: Presence

    def record(self) -> PresenceRecord:
        return presence_record(self.number, self.name, self.presence)


def _activity(state: AgentState | None, now: datetime) -> str:
    if state is None:
        return AgentActivity.IDLE.value
    # A wrap-up that is over counts as idle even before the sweep resets it (as routing does).
    if (
        state.activity is AgentActivity.WRAPUP
        and state.wrapup_until is not None
        and state.wrapup_until <= now
    ):
        return AgentActivity.IDLE.value
    return AgentActivity(state.activity).value


_PresenceRow = tuple[int, str, str, AgentState | None, bool, int | None]


def _after_call(state: AgentState | None, hold_s: int | None, now: datetime) -> bool:
    """A call on the device ended less than `hold_s` seconds ago."""
    if state is None or state.device_idle_at is None or not hold_s:
        return False
    return bool(state.device_idle_at + timedelta(seconds=int(hold_s)) > now)


async def agent_presences(
    session: AsyncSession, now: datetime | None = None
) -> list[AgentPresence]:
    """All agents with their exposed presence, ordered by name then number."""
    now = now or datetime.now(UTC)
    logged_in = exists().where(AgentLogin.agent_id == Agent.id)
    # How long "after a call" lasts: the longest wrap-up of the hotlines the agent is
    # logged in to, so a private call ends the way a hotline call does.
    hold = (
        select(func.max(Hotline.wrapup_s))
        .join(AgentLogin, AgentLogin.hotline_id == Hotline.id)
        .where(AgentLogin.agent_id == Agent.id)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Agent.id,
            Agent.number,
            Agent.name,
            AgentState,
            logged_in.label("logged_in"),
            hold.label("hold_s"),
        )
        .outerjoin(AgentState, AgentState.agent_id == Agent.id)
        .order_by(Agent.name, Agent.number)
    )
    result = []
    for row in rows:
        agent_id, number, name, state, is_logged_in, hold_s = cast(_PresenceRow, tuple(row))
        presence = exposed_presence(
            logged_in=bool(is_logged_in),
            paused=bool(state.paused) if state is not None else False,
            activity=_activity(state, now),
            device_busy=bool(state.device_busy) if state is not None else False,
            after_call=_after_call(state, hold_s, now),
        )
        result.append(AgentPresence(agent_id, number, name, presence))
    return result


async def read_presence(session: AsyncSession, now: datetime | None = None) -> list[PresenceRecord]:
    """What /api/presence returns: one `presence_record` per agent."""
    return [p.record() for p in await agent_presences(session, now)]


Snapshot = dict[str, Any]  # topic -> JSON-ready payload
SnapshotSource = Callable[[AsyncSession, datetime], Awaitable[Snapshot]]


async def presence_snapshot(session: AsyncSession, now: datetime) -> Snapshot:
    return {"presence": {"agents": await read_presence(session, now)}}


class HubClosed(Exception):
    """The hub stopped (server shutdown): subscribers end their streams."""


class Subscription:
    """One listener (an SSE stream). `next()` returns the topics that changed since the
    listener last looked; the first call returns every topic."""

    def __init__(self, hub: PresenceHub, min_generation: int) -> None:
        self._hub = hub
        self._seen: dict[str, int] = {}
        self._min_generation = min_generation

    def _pending(self) -> list[tuple[str, Any]]:
        hub = self._hub
        if hub.generation < self._min_generation:
            return []
        return [
            (topic, data)
            for topic, (version, data) in hub.topics.items()
            if version > self._seen.get(topic, 0)
        ]

    async def next(self, timeout: float) -> list[tuple[str, Any]]:
        """Changed (topic, payload) pairs; [] after `timeout` without a change."""
        hub = self._hub

        def ready() -> bool:
            return hub.closed or bool(self._pending())

        async with hub.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.changed.wait_for(ready), timeout)
        if hub.closed:
            raise HubClosed
        pending = self._pending()
        for topic, _ in pending:
            self._seen[topic] = hub.topics[topic][0]
        return pending


class PresenceHub:
    """Last snapshot of presence (and whatever else `sources` add, e.g. hotline aggregates),
    recomputed on `notify()` and every `tick_s` while there are subscribers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        sources: Sequence[SnapshotSource] = (presence_snapshot,),
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        self._sessions = sessions
        self._sources = tuple(sources)
        self.tick_s = tick_s
        self.topics: dict[str, tuple[int, Any]] = {}  # topic -> (version, payload)
        self.generation = 0  # refreshes done (changed or not)
        self.changed = asyncio.Condition()
        self.closed = False
        self.subscribers = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def notify(self) -> None:
        """Something may have changed: recompute now (cheap to call often; never blocks)."""
        self._wake.set()

    async def refresh(self) -> bool:
        """Recompute every topic; True when any changed. Errors keep the last snapshot."""
        now = datetime.now(UTC)
        try:
            async with self._sessions() as session:
                fresh: Snapshot = {}
                for source in self._sources:
                    fresh.update(await source(session, now))
        except Exception as exc:
            if not self._failing:
                log.warning("panel: cannot read presence from the database: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("panel: database readable again")
            self._failing = False
        changed = False
        for topic, payload in fresh.items():
            version, old = self.topics.get(topic, (0, None))
            if version == 0 or old != payload:
                self.topics[topic] = (version + 1, payload)
                changed = True
        self.generation += 1
        async with self.changed:
            self.changed.notify_all()
        return changed

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A listener; while any exists the hub polls. A snapshot older than a tick is
        refreshed before the first delivery, so a new panel never shows stale data."""
        if self.closed:
            raise HubClosed
        self.subscribers += 1
        self.notify()
        try:
            yield Subscription(self, self.generation + 1)
        finally:
            self.subscribers -= 1

    async def run(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            self._wake.clear()
            if self.subscribers and not self.closed:
                await self.refresh()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self.closed = False
            self._task = asyncio.create_task(self.run(), name="presence-hub")

    async def close(self) -> None:
        """Stop polling and end every subscription."""
        self.closed = True
        async with self.changed:
            self.changed.notify_all()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
