"""Queue and agent reservation, shared by every node through Postgres.

Reservation is atomic: a conditional UPDATE marks an agent reserved for one call only while
the row still says the agent is free (Postgres re-checks the condition on the row it
locks), so no agent is ever rung for two calls, whichever process asks. Queue order is
kept by serialising the decision per hotline (an advisory lock on the hotline, held only
while the SQL function `hotline_reserve` runs) and letting a call reserve only while fewer
unserved callers wait ahead of it than there are free agents.

The call path is lean: a routed call's start is two statements (`start_facts`, then
`enqueue`, which inserts the call and reserves its agent), its connection one
(`connect_call`), its end one (`finish_call`). Each is a single statement, so the flows
send them outside BEGIN/COMMIT on a bare connection (FlowContext.statement); they are built
once at import, the text() ones compiled for the driver (db/session.py DriverStatement).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, inspect, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ari_app.db.models import AgentLogin, AgentState, Call, Holiday, Hotline, Membership
from ari_app.db.session import Db, DriverStatement
from ari_app.domain import agent_state
from ari_app.domain.agent_state import AgentEvent
from ari_app.domain.enums import AgentActivity, CallStatus, Outcome, TargetKind
from ari_app.domain.strategies import Candidate, Strategy, order_candidates
from ari_app.services import audit
from ari_app.services.hotline_stats import waiting_in

_rng = random.Random()


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
    """What the decision at a call's start, and a reservation, need about its hotline."""

    holidays: frozenset[date]
    logged_in: int  # agents logged in to the hotline
    waiting: int  # callers waiting in its queue
    unserved: int = 0  # of them, callers no agent is reserved for (ahead of `before_seq`)
    candidates: tuple[Candidate, ...] = ()  # agents free for its calls now
    last_offered: tuple[int | None, int | None] = (None, None)  # round robin: agent, position


_TIMESTAMP = AgentState.wrapup_until.type
LAST_SEQ = 2**31 - 1  # behind every queue place: a new caller's view of the queue


def _facts_columns(hotline_id: Any) -> list[Any]:
    waiting = (waiting_in(hotline_id),)  # as the panel and `hotline status` count them
    free = (
        select(
            func.json_agg(
                func.json_build_array(
                    AgentState.agent_id,
                    Membership.position,
                    AgentState.last_call_end,
                    AgentState.calls_taken,
                )
            )
        )
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
    last = (
        select(func.json_build_array(Membership.agent_id, Membership.position))
        .where(Membership.hotline_id == hotline_id, Membership.last_offered_at.is_not(None))
        .order_by(Membership.last_offered_at.desc(), Membership.position.desc())
        .limit(1)
    )
    return [
        select(func.array_agg(Holiday.day)).where(Holiday.hotline_id == hotline_id),
        select(func.count()).select_from(AgentLogin).where(AgentLogin.hotline_id == hotline_id),
        select(func.count()).select_from(Call).where(*waiting),
        select(func.count())
        .select_from(Call)
        .where(
            *waiting,
            Call.queue_seq < bindparam("before_seq"),
            ~exists().where(AgentState.reserved_call_id == Call.id),
        ),
        free,
        last,
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
    holidays, logged_in, waiting, unserved, free, last = row
    candidates = tuple(
        Candidate(
            agent_id=agent_id,
            position=position,
            last_call_end=datetime.fromisoformat(ended) if ended else None,
            calls_taken=taken,
        )
        for agent_id, position, ended, taken in (_json(free) or ())
    )
    last_offered = _json(last) or (None, None)
    return QueueFacts(
        frozenset(holidays or ()),
        int(logged_in),
        int(waiting),
        int(unserved),
        candidates,
        (last_offered[0], last_offered[1]),
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def start_facts(db: Db, number: str, now: datetime) -> tuple[Hotline, QueueFacts] | None:
    """The hotline dialled and its facts (holidays, logged-in agents, waiting callers,
    free agents) in one round trip; None for an unknown number. The hotline is a detached
    copy of its row: read it, never add it to a session."""
    rows = await _START_FACTS.rows(db, {"number": number, "now": now, "before_seq": LAST_SEQ})
    if not rows:
        return None
    row = tuple(rows[0])
    split = len(_HOTLINE_COLUMNS)
    hotline = Hotline(
        **{key: value for (key, _), value in zip(_HOTLINE_COLUMNS, row[:split], strict=True)}
    )
    return hotline, _facts(row[split:])


async def queue_facts(
    db: Db,
    hotline_id: int,
    now: datetime | None = None,
    before_seq: int = LAST_SEQ,
) -> QueueFacts:
    """The hotline's facts (see start_facts) in one round trip; `unserved` counts the
    callers ahead of queue place `before_seq`."""
    params = {
        "hotline_id": hotline_id,
        "now": now or datetime.now().astimezone(),
        "before_seq": before_seq,
    }
    (row,) = await _QUEUE_FACTS.rows(db, params)
    return _facts(tuple(row))


def choose(hotline: Hotline, facts: QueueFacts, tried: Collection[int], ahead: int) -> list[int]:
    """The agents to ring together for a waiting caller with `ahead` unserved callers
    before it, by the hotline's strategy (domain/strategies.py); none when every free
    agent is due to a caller ahead."""
    if len(facts.candidates) <= ahead:
        return []
    last_agent_id, last_position = facts.last_offered
    rounds = order_candidates(
        hotline.strategy,
        list(facts.candidates),
        last_agent_id=last_agent_id,
        last_position=last_position,
        tried=frozenset(tried),
        rng=_rng,
    )
    return list(rounds[0]) if rounds and rounds[0] else []


def _offers(chosen: list[int], rows: Any) -> list[Offer]:
    by_id = {agent_id: (target, kind) for agent_id, target, kind in rows if agent_id is not None}
    return [
        Offer(agent_id, by_id[agent_id][0], TargetKind(by_id[agent_id][1]))
        for agent_id in chosen
        if agent_id in by_id
    ]


_ENQUEUE = DriverStatement.compile(
    text(
        "SELECT o_seq, o_entered, o_agent, o_target, o_kind FROM hotline_enqueue("
        ":call_id, :channel_id, :dialled, :caller, :hotline_id, :node, :waiting,"
        " CAST(:agents AS integer[]), :now, :round_robin)"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)
_RESERVE = DriverStatement.compile(
    text(
        "SELECT o_agent, o_target, o_kind FROM hotline_reserve("
        ":call_id, :hotline_id, :queue_seq, CAST(:agents AS integer[]), :node, :now, :round_robin)"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)


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
    agents: list[int],
    now: datetime,
) -> tuple[int, datetime, list[Offer]]:
    """Insert a call for `hotline` (None: an unknown number; queued when `waiting`, with
    its ENTERQUEUE event) and
    reserve `agents` for it (see `choose`) in one statement. Returns its queue_seq, its
    entered_at and the offers for the agents it got (taken meanwhile: none)."""
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
            "agents": agents,
            "now": now,
            "round_robin": hotline is not None
            and Strategy(hotline.strategy) is Strategy.ROUND_ROBIN,
        },
    )
    queue_seq, entered_at = rows[0][0], rows[0][1]
    return queue_seq, entered_at, _offers(agents, [tuple(row)[2:] for row in rows])


_CONNECT = DriverStatement.compile(
    text(
        "WITH agent AS ("
        " UPDATE agent_states SET activity = 'on_call', unanswered_streak = 0, updated_at = now()"
        " WHERE agent_id = CAST(:agent_id AS integer) AND reserved_call_id = :call_id"
        "), call AS ("
        " UPDATE calls SET status = 'bridged', answered_at = :now,"
        " agent_id = CAST(:agent_id AS integer), bridge_id = :bridge_id WHERE id = :call_id"
        ") INSERT INTO call_events (call_id, event, agent_id, data)"
        " VALUES (:call_id, 'CONNECT', CAST(:agent_id AS integer), CAST(:data AS jsonb))"
    ).bindparams(bindparam("now", type_=_TIMESTAMP))
)


async def connect_call(
    db: Db,
    *,
    call_id: uuid.UUID,
    agent_id: int | None,
    bridge_id: str,
    target_kind: TargetKind,
    now: datetime,
) -> None:
    """The call is bridged with its agent (or forward target, `agent_id` None): the agent
    on the call, the call record bridged, its CONNECT event; one statement."""
    await _CONNECT.rows(
        db,
        {
            "call_id": call_id,
            "agent_id": agent_id,
            "bridge_id": bridge_id,
            "now": now,
            "data": json.dumps({"target_kind": target_kind.value}),
        },
    )


_FINISH = DriverStatement.compile(
    text(
        "WITH agent AS ("
        " UPDATE agent_states SET"
        " activity = CAST(CASE WHEN :wrapup_s > 0 THEN 'wrapup' ELSE 'idle' END AS agent_activity),"
        " wrapup_until = :now + make_interval(secs => :wrapup_s), last_call_end = :now,"
        " calls_taken = calls_taken + 1, reserved_call_id = NULL, reserved_by_node = NULL,"
        " updated_at = now()"
        " WHERE agent_id = CAST(:agent_id AS integer) AND reserved_call_id = :call_id"
        "), closed AS ("
        " UPDATE calls SET status = 'ended', ended_at = :now,"
        " outcome = CAST(:outcome AS call_outcome),"
        " agent_id = COALESCE(CAST(:agent_id AS integer), agent_id)"
        " WHERE id = :call_id AND outcome IS NULL RETURNING id"
        ") INSERT INTO call_events (call_id, event, agent_id, data)"
        " SELECT id, :event, CAST(:agent_id AS integer), CAST('{}' AS jsonb) FROM closed"
    ).bindparams(
        bindparam("now", type_=_TIMESTAMP),
        bindparam("wrapup_s", type_=Call.queue_seq.type),
    )
)


async def finish_call(
    db: Db,
    *,
    call_id: uuid.UUID,
    agent_id: int | None,
    wrapup_s: int,
    outcome: Outcome,
    now: datetime,
) -> None:
    """A connected call ended: its agent into wrap-up (or idle) as `agent_finished` does,
    the call's one outcome as `calls.close_call` sets it (a call that has one keeps it,
    its event is logged once); one statement."""
    await _FINISH.rows(
        db,
        {
            "call_id": call_id,
            "agent_id": agent_id,
            "wrapup_s": wrapup_s,
            "now": now,
            "outcome": outcome.value,
            "event": outcome.value.upper(),
        },
    )


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
    at most that many (a callback rings one agent).

    The free agents are read without locking them; the chosen ones are then taken by
    `hotline_reserve`, which orders the hotline's callers and re-checks that each agent is
    still free (another caller may have taken an agent meanwhile: then the next choice).
    """
    lost: set[int] = set()
    round_robin = Strategy(hotline.strategy) is Strategy.ROUND_ROBIN
    facts = await queue_facts(db, hotline.id, now, before_seq=queue_seq)
    while True:
        free = QueueFacts(
            facts.holidays,
            facts.logged_in,
            facts.waiting,
            facts.unserved,
            tuple(c for c in facts.candidates if c.agent_id not in lost),
            facts.last_offered,
        )
        # The function counts the callers ahead again, under the hotline's lock.
        chosen = choose(hotline, free, tried, ahead=facts.unserved)[:most]
        if not chosen:
            return []
        rows = await _RESERVE.rows(
            db,
            {
                "call_id": call_id,
                "hotline_id": hotline.id,
                "queue_seq": queue_seq,
                "agents": chosen,
                "node": node,
                "now": now,
                "round_robin": round_robin,
            },
        )
        if rows:  # a row without an agent: callers ahead get the free agents first
            return _offers(chosen, [tuple(row) for row in rows])
        # Taken by another caller meanwhile: the next choice, on fresh facts (the callers
        # ahead may have been served meanwhile too).
        lost.update(chosen)
        facts = await queue_facts(db, hotline.id, now, before_seq=queue_seq)


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
