"""Every query of device presence (ari_app/device_presence.py): the agents' devices it
follows, each tracker's view in `node_device_states`, and `AgentState.device_busy` as the
OR over the fresh views of all trackers (busy on any node is busy everywhere).

The writes are SQL functions (migration i11_presence), one statement each, so that a
tracker sends one round trip per batch of device changes (sent outside BEGIN/COMMIT when
the caller's session is an AUTOCOMMIT one: FlowContext.one_statement). Under load a batch
goes with the next start or end of a call instead (DeviceBatch; migration
i11_presence_carried), no transaction of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ari_app.db.models import Agent, AgentState, AgentTarget, NodeDeviceState
from ari_app.domain.enums import TargetKind

log = logging.getLogger(__name__)

# A tracker's rows count this long after its last touch (it touches every resync while its
# Asterisk is connected): a dead node's calls stop making agents busy after this.
STALE_S = 10.0
# Rows of trackers gone this long (restarted processes) are deleted.
FORGET_S = 3600.0


@dataclass(frozen=True)
class AgentDevices:
    agent_id: int
    presence_device: str | None  # hot-desk device while logged in on one, else the bound one
    external_numbers: frozenset[str]
    stored_busy: bool | None  # AgentState.device_busy; None: no state row yet


@dataclass(frozen=True)
class DeviceFacts:
    """What a tracker's resync reads: every agent's devices, the devices ops bound to
    agents, and this tracker's rows as stored (agent -> busy)."""

    agents: list[AgentDevices]
    bound: list[str]
    stored: dict[int, bool]


_TARGETS = select(AgentTarget.agent_id, AgentTarget.kind, AgentTarget.address).where(
    AgentTarget.kind.in_([TargetKind.DEVICE, TargetKind.EXTERNAL])
)
_AGENTS = (
    select(Agent.id, AgentState.target, AgentState.target_kind, AgentState.device_busy)
    .outerjoin(AgentState, AgentState.agent_id == Agent.id)
    .order_by(Agent.id)
)
_TRACKER_ROWS = select(NodeDeviceState.agent_id, NodeDeviceState.busy).where(
    NodeDeviceState.tracker == bindparam("tracker")
)


async def device_facts(session: AsyncSession, tracker: str) -> DeviceFacts:
    """One read for a resync (three SELECTs in the caller's session)."""
    bound: dict[int, str] = {}
    bound_all: list[str] = []
    externals: dict[int, set[str]] = {}
    for agent_id, kind, address in await session.execute(_TARGETS):
        if kind is TargetKind.DEVICE:
            bound[agent_id] = address
            bound_all.append(address)
        else:
            externals.setdefault(agent_id, set()).add(address)
    agents = []
    for agent_id, target, target_kind, busy in await session.execute(_AGENTS):
        device = target if target_kind is TargetKind.DEVICE and target else bound.get(agent_id)
        agents.append(AgentDevices(agent_id, device, frozenset(externals.get(agent_id, ())), busy))
    stored = {a: b for a, b in await session.execute(_TRACKER_ROWS, {"tracker": tracker})}
    return DeviceFacts(agents, bound_all, stored)


@dataclass(frozen=True)
class DeviceBatch:
    """A tracker's changes (agent -> busy) handed to a call's start or end to write last
    in its statement (routing.PendingWrites; migration i11_presence_carried)."""

    tracker: str
    busy: dict[int, bool]

    def json(self) -> str:
        ids = sorted(self.busy)
        return json.dumps(
            {
                "tracker": self.tracker,
                "stale_s": STALE_S,
                "agents": ids,
                "busy": [self.busy[a] for a in ids],
            }
        )


@dataclass(frozen=True)
class BatchWritten:
    """What a carried batch did: the agents it left unwritten (their rows were locked by
    another transaction, or they have no state row) and those whose device_busy changed."""

    unwritten: frozenset[int]
    flipped: tuple[int, ...]

    @classmethod
    def of(cls, unwritten: Sequence[int] | None, flipped: Sequence[int] | None) -> BatchWritten:
        return cls(frozenset(unwritten or ()), tuple(flipped or ()))


_BUSY = text("SELECT hotline_device_busy(:tracker, :agents, :busy, :stale_s)")
_REFRESH = text("SELECT hotline_device_refresh(:tracker, :stale_s, :forget_s)")


async def store_busy(session: AsyncSession, busy: dict[int, bool], tracker: str) -> list[int]:
    """Write this tracker's view of these agents and recompute their `device_busy`
    (creating state rows for agents that have none), in one statement; returns the agents
    whose `device_busy` changed."""
    if not busy:
        return []
    ids = sorted(busy)
    rows = await session.execute(
        _BUSY,
        {"tracker": tracker, "agents": ids, "busy": [busy[a] for a in ids], "stale_s": STALE_S},
    )
    return list(rows.scalars())


async def refresh(session: AsyncSession, tracker: str | None) -> list[int]:
    """Touch this tracker's rows (None: its Asterisk is not connected, let them go stale),
    forget long-gone trackers, and correct `device_busy` where it no longer is the OR of
    the fresh rows (a node died). Returns the agents corrected. One statement."""
    rows = await session.execute(
        _REFRESH, {"tracker": tracker, "stale_s": STALE_S, "forget_s": FORGET_S}
    )
    return list(rows.scalars())


AGENTS_CHANNEL = "hotline_agents"  # NOTIFY'd when an agent's phone went idle (any process)
_RELISTEN_S = 1.0


async def listen_agents_freed(engine: AsyncEngine, on_freed: Callable[[], None]) -> None:
    """Call `on_freed` whenever some process stored an agent's phone as idle (the SQL
    function's NOTIFY): one connection of the pool held for this, LISTENing; after a
    database restart it listens again. Runs until cancelled."""
    while True:
        try:
            async with engine.connect() as conn:
                driver: Any = (await conn.get_raw_connection()).driver_connection
                lost = asyncio.Event()

                def heard(*_: object) -> None:
                    on_freed()

                def closed(*_: object, lost: asyncio.Event = lost) -> None:
                    lost.set()

                driver.add_termination_listener(closed)
                await driver.add_listener(AGENTS_CHANNEL, heard)
                try:
                    await lost.wait()
                finally:
                    driver.remove_termination_listener(closed)
                    if not driver.is_closed():
                        await driver.remove_listener(AGENTS_CHANNEL, heard)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("device presence: cannot listen for freed agents: %s", exc)
        on_freed()  # whatever was announced meanwhile was missed
        await asyncio.sleep(_RELISTEN_S)
