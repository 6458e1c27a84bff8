"""Applies the duty roster (services/roster.py) at every shift change, as a task of
`hotline serve`. The clock is injectable so tests need not wait for real shift changes.
Each hotline's change is one transaction under its row lock: any number of nodes may run
this, one of them makes each change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ari_app.flows import escalation
from ari_app.flows.base import FlowContext
from ari_app.services import agents, roster

log = logging.getLogger(__name__)

EVERY_S = 5.0  # shift changes are minute-exact; a few seconds late is fine


def _now() -> datetime:
    return datetime.now(UTC)


class RosterScheduler:
    def __init__(self, ctx: FlowContext, *, clock: Callable[[], datetime] = _now) -> None:
        self.ctx = ctx
        self.clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the database may be away: next tick
                log.warning("roster: check failed: %s", exc)
            await asyncio.sleep(EVERY_S)

    async def tick(self) -> list[roster.Change]:
        """Apply the roster to every hotline that has one; returns the changes made."""
        now = self.clock()
        async with self.ctx.sessions() as session:
            hotlines = await roster.roster_hotlines(session)
        changes = []
        for hotline_id in hotlines:
            async with self.ctx.sessions() as session, session.begin():
                change = await roster.apply(session, hotline_id, now)
                available = await agents.available_agents(session, hotline_id) if change else 0
            if change is None:
                continue
            changes.append(change)
            log.info(
                "roster: shift change on hotline %s: in %s, out %s, failed %s, kept %s",
                change.number,
                change.logged_in,
                change.logged_out,
                change.failed,
                change.kept,
            )
            self.ctx.agents_changed.notify()
            if change.failed:
                log.warning(
                    "roster: hotline %s: %s could not be logged in; the outgoing stay, escalating",
                    change.number,
                    ", ".join(f"{a} ({why})" for a, why in change.failed),
                )
                escalation.escalate(self.ctx, change.shortage(available))
        return changes
