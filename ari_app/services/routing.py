"""Queue and agent reservation, shared by every node through Postgres.

Reservation is atomic: a conditional UPDATE marks an agent reserved for one call only while
the row still says the agent is free (Postgres re-checks the condition on the row it
locks), so no agent is ever rung for two calls, whichever process asks. Queue order is
kept by serialising the decision per hotline (an advisory lock on the hotline, held only
while the SQL function `hotline_reserve` runs) and letting a call reserve only while fewer
unserved callers wait ahead of it than there are free agents.

Who is next is the hotline's strategy, decided in SQL under that lock (`hotline_pick`,
migration i11_start_in_one), the one definition for every caller and callback:
- ring_all: every free agent at once;
- longest_idle: the agent whose last call ended longest ago (never called first);
- round_robin: the next by membership position after the agent offered last;
- linear: always the first by position;
- fewest_calls: the fewest calls taken (ties: longest idle);
- random: any free agent.
Ties go by position, then agent id. Agents who rejected or missed this call (`tried`)
come after every other free agent (ring_all rings them only when everybody was tried).

The call path is lean: a routed call's start is one statement (`start_call`:
`hotline_start` inserts the call, decides, reserves; the hotline is read first when this
process has no current copy of its configuration) and its end one (`finish_call`); its
connection (the agent answered) and mostly its end too go with the next of these the
process sends, and so do the phones' presence changes (`PendingWrites`), so a call costs
one transaction and a share of another. Each is a single statement, so the flows send
them outside BEGIN/COMMIT on a bare connection (FlowContext.statement); they are built
once at import, compiled for the driver (db/session.py DriverStatement).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, func, inspect, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import AgentLogin, AgentState, Call, Holiday, Hotline, Membership
from ari_app.db.session import Db, DriverStatement
from ari_app.domain import agent_state
from ari_app.domain.agent_state import AgentEvent
from ari_app.domain.enums import AgentActivity, CallStatus, Outcome, TargetKind
from ari_app.domain.hours import OpeningHours
from ari_app.services import audit
from ari_app.services.device_states import BatchWritten, DeviceBatch
from ari_app.services.hotline_stats import waiting_in

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Offer:
    """An agent reserved for a call: ring `target` now."""

    agent_id: int
    target: str
    target_kind: TargetKind


def _free_agent_clause(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(
        AgentState.paused.is_(False),
        AgentState.reserved_call_id.is_(None),
        AgentState.device_busy.is_(False),
        AgentState.target.is_not(None),
        or_(
            AgentState.activity == AgentActivity.IDLE,
            and_(AgentState.activity == AgentActivity.WRAPUP, AgentState.wrapup_until <= now),
        ),
    )


@dataclass(frozen=True)
class QueueFacts:
    """What the decision at a call's start (when the hotline's configuration is not
    cached) and a callback's start need about its hotline."""

    holidays: frozenset[date]
    logged_in: int  # agents logged in to the hotline
    waiting: int  # callers waiting in its queue
    free: int = 0  # agents free for its calls now


_TIMESTAMP = AgentState.wrapup_until.type


def _facts_columns(hotline_id: Any) -> list[Any]:
    waiting = (waiting_in(hotline_id),)  # as the panel and `hotline status` count them
    free = (
        select(func.count())
        .select_from(AgentState)
        .join(
            AgentLogin,
            and_(AgentLogin.agent_id == AgentState.agent_id, AgentLogin.hotline_id == hotline_id),
        )
        .join(
            Membership,
            and_(Membership.agent_id == AgentState.agent_id, Membership.hotline_id == hotline_id),
        )
        .where(_free_agent_clause(bindparam("now", type_=_TIMESTAMP)))
    )
    return [
        select(func.array_agg(Holiday.day)).where(Holiday.hotline_id == hotline_id),
        select(func.count()).select_from(AgentLogin).where(AgentLogin.hotline_id == hotline_id),
        select(func.count()).select_from(Call).where(*waiting),
        free,
    ]


# Built and compiled once: the call path's statements cost no construction or compilation
# per call. The hotline's columns, not the ORM entity: no ORM layer per call.
_HOTLINE_COLUMNS = tuple((prop.key, prop.columns[0]) for prop in inspect(Hotline).column_attrs)
_START_FACTS = DriverStatement.compile(
    select(
        *(column for _, column in _HOTLINE_COLUMNS),
        *(column.scalar_subquery() for column in _facts_columns(Hotline.id)),
    ).where(Hotline.number == bindparam("number"))
)
_QUEUE_FACTS = DriverStatement.compile(
    select(*(column.scalar_subquery() for column in _facts_columns(bindparam("hotline_id"))))
)


def _facts(row: Any) -> QueueFacts:
    holidays, logged_in, waiting, free = row
    return QueueFacts(frozenset(holidays or ()), int(logged_in), int(waiting), int(free))


async def start_facts(db: Db, number: str, now: datetime) -> tuple[Hotline, QueueFacts] | None:
    """The hotline dialled and its facts (holidays, logged-in agents, waiting callers,
    free agents) in one round trip; None for an unknown number. The hotline is a detached
    copy of its row: read it, never add it to a session."""
    rows = await _START_FACTS.rows(db, {"number": number, "now": now})
    if not rows:
        return None
    row = tuple(rows[0])
    split = len(_HOTLINE_COLUMNS)
    hotline = Hotline(
        **{key: value for (key, _), value in zip(_HOTLINE_COLUMNS, row[:split], strict=True)}
    )
    return hotline, _facts(row[split:])


async def queue_facts(db: Db, hotline_id: int, now: datetime | None = None) -> QueueFacts:
    """The hotline's facts (see start_facts) in one round trip."""
    params = {"hotline_id": hotline_id, "now": now or datetime.now().astimezone()}
    (row,) = await _QUEUE_FACTS.rows(db, params)
    return _facts(tuple(row))


def is_open(hotline: Hotline, holidays: frozenset[date], now: datetime) -> bool:
    return OpeningHours.parse(hotline.opening_hours or "").is_open(now, hotline.timezone, holidays)


@dataclass(frozen=True)
class _Config:
    hotline: Hotline  # a detached copy of the row (with its config_version): never mutated
    holidays: frozenset[date]
    hours: OpeningHours

    def is_open(self, now: datetime) -> bool:
        return self.hours.is_open(now, self.hotline.timezone, self.holidays)


class HotlineConfigs:
    """The hotlines' configuration as this process last read it, by number: a call's
    start sends the version it holds, and Postgres answers 'stale' when ops changed the
    hotline or its holidays since (the version a trigger bumps), so a change is never
    outrun by the cache. Only numbers of hotlines are kept (unknown numbers are not)."""

    def __init__(self) -> None:
        self._by_number: dict[str, _Config] = {}

    def get(self, number: str) -> _Config | None:
        return self._by_number.get(number)

    def keep(self, hotline: Hotline, holidays: frozenset[date]) -> _Config:
        config = _Config(hotline, holidays, OpeningHours.parse(hotline.opening_hours or ""))
        self._by_number[hotline.number] = config
        return config

    def forget(self, number: str) -> None:
        self._by_number.pop(number, None)


@dataclass(frozen=True)
class Start:
    """A new call's record: its hotline (None: unknown number), why it is not queued (None:
    queued), its queue place and the agents reserved for it (none: it waits)."""

    hotline: Hotline | None
    reason: Outcome | None
    queue_seq: int
    offers: list[Offer]


_REASONS = {
    "queued": None,
    "closed": Outcome.CLOSED,
    "no_agents": Outcome.NO_AGENTS,
    "timeout": Outcome.TIMEOUT,
}


def _offers(rows: Any) -> list[Offer]:
    return [
        Offer(agent_id, target, TargetKind(kind))
        for agent_id, target, kind in rows
        if agent_id is not None
    ]


_START = DriverStatement.compile(
    text(
        "SELECT o_reason, o_seq, o_agent, o_target, o_kind, o_unwritten, o_flipped"
        " FROM hotline_start_carrying(CAST(:connects AS jsonb), CAST(:ends AS jsonb),"
        " CAST(:presence AS jsonb), :number, CAST(:hotline_id AS integer),"
        " CAST(:version AS bigint), :open, :call_id, :channel_id, :dialled, :caller, :node,"
        " :now)"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)
_ENQUEUE = DriverStatement.compile(
    text(
        "SELECT o_seq, o_entered, o_agent, o_target, o_kind FROM hotline_enqueue("
        ":call_id, :channel_id, :dialled, :caller, :hotline_id, :node, :waiting, :now)"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)
_RESERVE = DriverStatement.compile(
    text(
        "SELECT o_agent, o_target, o_kind FROM hotline_reserve("
        ":call_id, :hotline_id, :queue_seq, CAST(:tried AS integer[]), :node, :now,"
        " CAST(:most AS integer))"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)


async def start_call(
    db: Db,
    configs: HotlineConfigs,
    *,
    number: str,
    call_id: uuid.UUID,
    channel_id: str,
    dialled: str,
    caller_number: str,
    node: str,
    now: datetime,
    carried: Carried | None = None,
) -> Start:
    """A new call to `number`: its record, why it is not queued (closed, nobody logged
    in, the queue full: decided by hotline_start, the one place of that rule) and when it
    is queued the agents reserved for it, by the hotline's strategy. One statement when
    the hotline's configuration is cached and current; else (first call, changed by ops)
    the hotline is read first and the cache refreshed. An unknown number is recorded as
    such (two statements: the read, the insert). The statement writes the `carried`
    connections and ends of other calls first (so the start may pick an agent an end
    freed) and the carried presence changes last (PendingWrites; their result in
    `carried.presence_written`); a start that is not sent with them (an unknown number)
    writes the connections and ends on their own and leaves the presence changes to
    their tracker."""
    carried = carried if carried is not None else Carried()
    connects: str | None = carried.connects_json()
    ends = carried.ends_json()
    presence = carried.presence.json() if carried.presence is not None else None
    cached = configs.get(number) if number else None
    while True:  # again only after ops changed the hotline between the read and the start
        if cached is not None:
            rows = await _START.rows(
                db,
                {
                    "connects": connects,
                    "ends": ends,
                    "presence": presence,
                    "number": number,
                    "hotline_id": cached.hotline.id,
                    "version": cached.hotline.config_version,
                    "open": cached.is_open(now),
                    "call_id": call_id,
                    "channel_id": channel_id,
                    "dialled": dialled,
                    "caller": caller_number,
                    "node": node,
                    "now": now,
                },
            )
            connects = ends = None  # written, whatever the answer
            if presence is not None:  # its row comes after the start's (o_reason NULL)
                presence = None
                carried.presence_written = BatchWritten.of(rows[-1][5], rows[-1][6])
                rows = rows[:-1]
            reason = rows[0][0]
            if reason != "stale":
                offers = _offers(tuple(row)[2:5] for row in rows)
                return Start(cached.hotline, _REASONS[reason], rows[0][1], offers)
            configs.forget(number)
        found = await start_facts(db, number, now) if number else None
        if found is None:
            break
        cached = configs.keep(found[0], found[1].holidays)
    if connects is not None or ends is not None:  # not sent with a start: on their own
        await finish_call(db, None, Carried(carried.connects, ends=carried.ends))
    queue_seq, _, offers = await enqueue(
        db,
        call_id=call_id,
        channel_id=channel_id,
        dialled=dialled,
        caller_number=caller_number,
        hotline=None,
        node=node,
        waiting=False,
        now=now,
    )
    return Start(None, None, queue_seq, offers)


async def enqueue(
    db: Db,
    *,
    call_id: uuid.UUID,
    channel_id: str,
    dialled: str,
    caller_number: str,
    hotline: Hotline | None,
    node: str,
    waiting: bool,
    now: datetime,
) -> tuple[int, datetime, list[Offer]]:
    """Insert a call for `hotline` (None: an unknown number; queued when `waiting`, with
    its ENTERQUEUE event) and reserve its agents by the hotline's strategy, in one
    statement. Returns its queue_seq, its entered_at and the offers (none: it waits)."""
    rows = await _ENQUEUE.rows(
        db,
        {
            "call_id": call_id,
            "channel_id": channel_id,
            "dialled": dialled,
            "caller": caller_number,
            "hotline_id": hotline.id if hotline is not None else None,
            "node": node,
            "waiting": waiting,
            "now": now,
        },
    )
    queue_seq, entered_at = rows[0][0], rows[0][1]
    return queue_seq, entered_at, _offers(tuple(row)[2:] for row in rows)


def bridge_of(call_id: uuid.UUID) -> str:
    """The bridge of a routed call with its agent: named after the call, so that
    reconciliation finds it in Asterisk whether or not the connection was written."""
    return f"{call_id}-bridge"


def agent_leg(call_id: uuid.UUID, agent_id: int, n: int) -> str:
    """The channel id of the `n`th leg a call rang, to `agent_id`."""
    return f"{call_id}-a{agent_id}-{n}"


def agent_of_leg(call_id: uuid.UUID, channel_id: str) -> int | None:
    """The agent an `agent_leg` of the call rang; None for another channel (a forward)."""
    prefix = f"{call_id}-a"
    agent, _, n = channel_id.removeprefix(prefix).partition("-")
    if not channel_id.startswith(prefix) or not agent.isdigit() or not n.isdigit():
        return None
    return int(agent)


@dataclass(frozen=True)
class Connected:
    """A call bridged with its agent (or forward target: `agent_id` None) at `at`."""

    call_id: uuid.UUID
    agent_id: int | None
    bridge_id: str
    target_kind: TargetKind
    at: datetime


def _connects_json(connects: Sequence[Connected]) -> str | None:
    if not connects:
        return None
    return json.dumps(
        [
            {
                "call": str(c.call_id),
                "agent": c.agent_id,
                "bridge": c.bridge_id,
                "kind": c.target_kind.value,
                "at": c.at.isoformat(),
            }
            for c in connects
        ]
    )


@dataclass(frozen=True)
class Ended:
    """A connected call over at `at`: its agent (None: a forward target) into wrap-up for
    `wrapup_s` or idle, the call's one outcome; `own`, its connection, is written with it
    (a connection written already is left as it is)."""

    call_id: uuid.UUID
    agent_id: int | None
    wrapup_s: int
    outcome: Outcome
    at: datetime
    own: Connected | None = None

    @property
    def event(self) -> str:
        """The call's event for its outcome (call_events)."""
        return self.outcome.value.upper()

    def json(self) -> dict[str, Any]:
        return {
            "call": str(self.call_id),
            "agent": self.agent_id,
            "wrapup_s": self.wrapup_s,
            "outcome": self.outcome.value,
            "event": self.event,
            "at": self.at.isoformat(),
        }


@dataclass
class Carried:
    """What a call's start or end writes first (connections and ends of other calls) and
    last (the PBX's phone presence changes, when this process writes them) in its
    statement, for the rest of the process (PendingWrites)."""

    connects: list[Connected] = field(default_factory=list)
    presence: DeviceBatch | None = None
    # The statement's answer for `presence` (None: not sent, or the statement failed).
    presence_written: BatchWritten | None = None
    ends: list[Ended] = field(default_factory=list)

    def connects_json(self, *first: Connected) -> str | None:
        """The connections to write, the ends' own among them."""
        owns = [e.own for e in self.ends if e.own is not None]
        return _connects_json([*first, *self.connects, *owns])

    def ends_json(self) -> str | None:
        return json.dumps([e.json() for e in self.ends]) if self.ends else None


class PresenceSource(Protocol):
    """Device presence's side of PendingWrites (ari_app/device_presence.py)."""

    def take(self) -> DeviceBatch | None:
        """The changes not stored yet, now in flight (None: nothing to carry now)."""

    def carried(self, batch: DeviceBatch, written: BatchWritten | None) -> None:
        """The statement that carried `batch` is over (`written` None: it failed)."""


async def connect_calls(db: Db, connects: Sequence[Connected]) -> None:
    """The calls are bridged with their agents (or forward targets): each agent on the
    call, the call record bridged, its CONNECT event at the answer's time; one statement,
    the one that writes what the call path carries (migration i11_connects_carried: a call
    already answered or ended is left as it is)."""
    if connects:
        await finish_call(db, None, Carried(list(connects)))


# How long an answer or an end may wait for the process's next start or end to carry it
# (PendingWrites): the panel shows the agent ringing, not talking (talking, not free),
# that much longer.
CARRY_S = 0.5
RETRY_S = 2.0  # a write on its own that failed (the database away) is tried again after


class PendingWrites:
    """What this process has to write and lets the next start or end of a call carry
    (`carried_by`), in the same statement: a routed call costs about one transaction (its
    start) and the share of an end that carried others, not three or more.

    - Connections (an agent answered, the call is bridged) and ends (`end`): one that
      nothing carried within `carry_s` is written on its own, and `close` writes what is
      left. Meanwhile Asterisk holds the bridge (or has no channel of the call left) and
      Postgres still shows the call waiting with its agent reserved (bridged with its agent
      on the call): reconciliation reads that as bridged when it finds the call's bridge,
      and writes what is pending before it looks (reconcile.py). An end carries its own
      call's connection.
    - The phones' presence changes of the PBX's device presence writer (`presence`, set in
      the process that writes them, ari_app/device_presence.py): it keeps them until a
      start or end takes them, and writes them itself when none did within its CARRY_S.
    """

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[Db]],
        carry_s: float = CARRY_S,
    ) -> None:
        self._connection = connection  # for a write on its own (FlowContext.statement)
        self.carry_s = carry_s
        self.presence: PresenceSource | None = None
        # (loop time added, what to write), oldest first
        self._pending: list[tuple[float, Connected | Ended]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, write: Connected | Ended) -> None:
        loop = asyncio.get_running_loop()
        self._pending.append((loop.time(), write))
        self._arm(loop)

    def end(self, ended: Ended, *, needed_now: bool) -> bool:
        """The call is over: True when its end waits for the process's next start or end
        (carried); False when the caller writes it now, carrying what is pending:
        - its own connection is not stored yet, or it has no agent (a forward target): a
          process killed before the end is written would leave a call that recovery
          closes as abandoned (recovery.close_vanished: answered only with an agent);
        - `needed_now`: callers of this process wait for an agent (the end's is theirs).
        What a process killed while its end waits loses: the end's own time (recovery
        closes the call at its own, as it does for a call whose caller left while no
        process watched, and as it takes its own time for a connection not stored)."""
        # The call's own connection goes with its end, wherever that goes.
        kept = [p for p in self._pending if p[1].call_id != ended.call_id]
        unwritten = len(kept) < len(self._pending)
        self._pending = kept
        if unwritten or ended.agent_id is None or needed_now or self.carry_s <= 0:
            return False
        self.add(ended)
        return True

    @contextlib.contextmanager
    def _taken(self) -> Iterator[Carried]:
        """The pending connections and ends, for the block to write; given back to the
        pending ones when it fails, so that nothing is lost."""
        taken, self._pending = self._pending, []
        try:
            yield Carried(
                [w for _, w in taken if isinstance(w, Connected)],
                ends=[w for _, w in taken if isinstance(w, Ended)],
            )
        except BaseException:
            self._pending[:0] = taken
            raise

    async def carried_by(self, work: Callable[[Carried], Awaitable[T]]) -> T:
        """`work` with what is pending to write in its statement (`_taken`); device
        presence hears what became of its changes, whatever happens."""
        presence = self.presence
        with self._taken() as carried:
            carried.presence = presence.take() if presence is not None else None
            try:
                return await work(carried)
            finally:
                if presence is not None and carried.presence is not None:
                    presence.carried(carried.presence, carried.presence_written)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer for the oldest pending write's deadline."""
        if self._timer is None and self._pending:
            self._timer = loop.call_at(self._pending[0][0] + self.carry_s, self._due)

    def _due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        if self._pending and self._pending[0][0] + self.carry_s > loop.time():
            self._arm(loop)  # the due ones were carried: wait for the next one's deadline
        elif self._pending and (self._writing is None or self._writing.done()):
            self._writing = asyncio.create_task(self.write(), name="pending writes")

    async def write(self) -> None:
        """Write what is pending now, in one statement; after a failure (the database
        away) again RETRY_S later."""
        if not self._pending:
            return
        try:
            with self._taken() as carried:  # not carried_by: no presence batch goes here
                async with self._connection() as db:
                    await finish_call(db, None, carried)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "%d connection(s) or end(s) not stored yet (database unavailable,"
                " retry in %.1fs): %s",
                len(self._pending), RETRY_S, type(exc).__name__,
            )  # fmt: skip
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._due)
        else:
            self._arm(asyncio.get_running_loop())  # added while this was written

    async def flush(self) -> None:
        """Write what is pending now (after a write on its own in flight)."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        await self.write()

    async def close(self) -> None:
        """At shutdown: what is pending is written now (once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:  # the write failed: reconciliation will find the calls
            log.error("%d connection(s) or end(s) not stored at shutdown", len(self._pending))


_FINISH = DriverStatement.compile(
    text(
        "SELECT o_unwritten, o_flipped FROM hotline_finish(:call_id,"
        " CAST(:agent_id AS integer), CAST(:wrapup_s AS integer),"
        " CAST(:outcome AS call_outcome), :event, :now, CAST(:connects AS jsonb),"
        " CAST(:ends AS jsonb), CAST(:presence AS jsonb))"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)


async def finish_call(db: Db, ended: Ended | None, carried: Carried | None = None) -> None:
    """A connected call ended (`ended`; None: only what is `carried`): its agent into
    wrap-up (or idle) as `agent_finished` does, the call's one outcome as
    `calls.close_call` sets it (a call that has one keeps it, its event is logged once);
    one statement, which writes the call's own connection (when it may not be written
    yet) and the `carried` connections and ends first, and the carried presence changes
    last (their result in `carried.presence_written`)."""
    carried = carried if carried is not None else Carried()
    own = (ended.own,) if ended is not None and ended.own is not None else ()
    rows = await _FINISH.rows(
        db,
        {
            "call_id": ended.call_id if ended else None,
            "agent_id": ended.agent_id if ended else None,
            "wrapup_s": ended.wrapup_s if ended else None,
            "now": ended.at if ended else None,
            "outcome": ended.outcome.value if ended else None,
            "event": ended.event if ended else None,
            "connects": carried.connects_json(*own),
            "ends": carried.ends_json(),
            "presence": carried.presence.json() if carried.presence is not None else None,
        },
    )
    if carried.presence is not None:
        carried.presence_written = BatchWritten.of(rows[0][0], rows[0][1])


async def position_in_queue(session: AsyncSession, call: Call) -> int:
    """1-based position among the hotline's waiting callers and the callbacks still to be
    made ahead of it (a callback keeps the place of its call, issue 15)."""
    ahead = await session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.hotline_id == call.hotline_id,
            Call.status.in_((CallStatus.WAITING, CallStatus.CALLBACK)),
            Call.queue_seq < call.queue_seq,
        )
    )
    return int(ahead or 0) + 1


async def position_of(session: AsyncSession, call_id: uuid.UUID | None) -> int:
    """`position_in_queue` of the call with this id; 1 when it has no record (any more)."""
    call = await session.get(Call, call_id) if call_id is not None else None
    return await position_in_queue(session, call) if call else 1


async def reserve_agents(
    db: Db,
    *,
    call_id: uuid.UUID,
    hotline: Hotline,
    queue_seq: int,
    tried: Collection[int],
    node: str,
    now: datetime,
    most: int | None = None,
) -> list[Offer]:
    """Reserve the next agent(s) the hotline's strategy picks for this waiting call, or
    none; the first ring and the RING events are recorded with the reservation. `most`:
    at most that many (a callback rings one agent). One statement: `hotline_reserve`
    orders the hotline's callers, chooses (`hotline_pick`, agents in `tried` last) and
    passes over an agent another hotline's caller took meanwhile."""
    rows = await _RESERVE.rows(
        db,
        {
            "call_id": call_id,
            "hotline_id": hotline.id,
            "queue_seq": queue_seq,
            "tried": sorted(tried),
            "node": node,
            "now": now,
            "most": most,
        },
    )
    return _offers(tuple(row) for row in rows)


async def release_agent(
    session: AsyncSession, *, agent_id: int, call_id: uuid.UUID, unanswered: bool, limit: int
) -> bool:
    """Free an agent the call reserved but did not get. Returns True when the agent was
    auto-paused for not answering `limit` calls in a row."""
    state = await session.get(AgentState, agent_id, with_for_update=True)
    if state is None or state.reserved_call_id != call_id:
        return False
    state.reserved_call_id = None
    state.reserved_by_node = None
    state.activity = agent_state.after(state.activity, AgentEvent.RELEASED)
    if not unanswered:
        return False
    state.unanswered_streak += 1
    if limit > 0 and state.unanswered_streak >= limit and not state.paused:
        state.paused = True
        state.unanswered_streak = 0
        await audit.record(
            session,
            actor="system",
            action="auto_pause",
            path="system",
            agent_id=agent_id,
            unanswered_calls=limit,
        )
        return True
    return False


async def agent_connected(session: AsyncSession, *, agent_id: int, call_id: uuid.UUID) -> None:
    await session.execute(
        update(AgentState)
        .where(AgentState.agent_id == agent_id, AgentState.reserved_call_id == call_id)
        .values(
            activity=agent_state.after(AgentActivity.RINGING, AgentEvent.CONNECTED),
            unanswered_streak=0,
        )
    )


async def agent_finished(
    session: AsyncSession, *, agent_id: int, call_id: uuid.UUID, wrapup_s: int, now: datetime
) -> None:
    await session.execute(
        update(AgentState)
        .where(AgentState.agent_id == agent_id, AgentState.reserved_call_id == call_id)
        .values(
            activity=agent_state.finished(wrapup_s),
            wrapup_until=now + timedelta(seconds=wrapup_s),
            last_call_end=now,
            calls_taken=AgentState.calls_taken + 1,
            reserved_call_id=None,
            reserved_by_node=None,
        )
    )


async def end_expired_wrapups(session: AsyncSession, now: datetime) -> list[int]:
    """Wrap-up over: back to idle. Returns the agents that became free."""
    result = await session.execute(
        update(AgentState)
        .where(
            AgentState.activity.in_(agent_state.sources(AgentEvent.WRAPUP_OVER)),
            AgentState.wrapup_until <= now,
        )
        .values(activity=agent_state.after(AgentActivity.WRAPUP, AgentEvent.WRAPUP_OVER))
        .returning(AgentState.agent_id)
    )
    return list(result.scalars())
