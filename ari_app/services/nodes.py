"""Liveness of the app's processes on one PBX, through Postgres.

Every process (a node, or one worker of `hotline serve --workers N`) writes a heartbeat
row. A process is dead for its siblings on the same PBX when its row is older than
STALE_S, or at once when the supervisor of `--workers` saw it die (`mark_dead`): a busy
machine may hold up a live process's heartbeat for seconds, its supervisor's waitpid is
certain. The first sibling to notice deletes the row (one statement, so exactly one
sibling wins) and takes over its open calls and the agents it had reserved, then adopts
them like its own after a restart (ari_app/reconcile.py).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

HEARTBEAT_S = 1.0
STALE_S = 30.0  # a process without a supervisor (a node of its own) that stopped beating

_BEAT = text("UPDATE nodes SET seen_at = now() WHERE name = :name AND pid = :pid RETURNING name")
_REGISTER = text(
    "INSERT INTO nodes (name, pbx, pid, seen_at) VALUES (:name, :pbx, :pid, now())"
    " ON CONFLICT (name) DO UPDATE SET pbx = excluded.pbx, pid = excluded.pid, seen_at = now()"
)
_TAKE_OVER = text(
    "WITH dead AS ("
    " DELETE FROM nodes WHERE pbx = :pbx AND name <> :me"
    " AND seen_at < now() - make_interval(secs => :stale_s) RETURNING name"
    "), calls_moved AS ("
    " UPDATE calls SET node = :me WHERE node IN (SELECT name FROM dead)"
    " AND status IN ('new', 'waiting', 'bridged', 'action')"
    "), callbacks_moved AS ("
    " UPDATE callbacks SET attempt_node = :me WHERE attempt_node IN (SELECT name FROM dead)"
    "), agents_moved AS ("
    " UPDATE agent_states SET reserved_by_node = :me"
    " WHERE reserved_by_node IN (SELECT name FROM dead)"
    ") SELECT name FROM dead"
)


_MARK_DEAD = text(
    "UPDATE nodes SET seen_at = now() - interval '1 day' WHERE name = :name AND pid = :pid"
)


async def mark_dead(session: AsyncSession, *, name: str, pid: int) -> None:
    """The process `pid` running as `name` is gone (its supervisor reaped it)."""
    await session.execute(_MARK_DEAD, {"name": name, "pid": pid})


async def register(session: AsyncSession, *, name: str, pbx: str, pid: int) -> None:
    """This process runs as `name` now (a restarted process takes its name back)."""
    await session.execute(_REGISTER, {"name": name, "pbx": pbx, "pid": pid})


async def heartbeat(session: AsyncSession, *, name: str, pid: int) -> bool:
    """Still alive. False when a sibling declared this process dead meanwhile (its row is
    gone) and took its calls over."""
    beat = await session.execute(_BEAT, {"name": name, "pid": pid})
    return beat.first() is not None


async def take_over_dead(
    session: AsyncSession, *, me: str, pbx: str, stale_s: float = STALE_S
) -> list[str]:
    """Siblings on the same PBX without a heartbeat for `stale_s`: their open calls, agent
    reservations and callback attempts become this process's; returns their names."""
    rows = await session.execute(_TAKE_OVER, {"me": me, "pbx": pbx, "stale_s": stale_s})
    return [str(name) for (name,) in rows]


_FIRST_ALIVE = text(
    "SELECT min(name) FROM nodes WHERE pbx = :pbx"
    " AND seen_at > now() - make_interval(secs => :stale_s)"
)


async def first_alive(session: AsyncSession, *, pbx: str, stale_s: float = STALE_S) -> str | None:
    """The live process on this PBX with the smallest name (None: none registered yet): the
    one that does what one process per PBX should do (device presence's writes)."""
    name = await session.scalar(_FIRST_ALIVE, {"pbx": pbx, "stale_s": stale_s})
    return str(name) if name is not None else None
