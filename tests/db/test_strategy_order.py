"""The strategies' order, decided in Postgres by hotline_pick (migration i11_start_in_one).

Ports of the rules the pure Python `order_candidates` had (its unit tests, same names).
hotline_pick gives the first round only; `Line.rounds` asks again with each answer added
to `p_lost`, which gives the whole order, round by round.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentActivity, AgentLogin, AgentState, Membership
from ari_app.domain.strategies import Strategy
from ari_app.services import admin, agents

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)  # p_now: after every call end and offer below

PICK = text(
    "SELECT hotline_pick(:h, CAST(:s AS strategy), CAST(:tried AS integer[]),"
    " CAST(:lost AS integer[]), :now)"
)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Spec:
    """An agent as the old unit tests' Candidate described it (the id is the creation order)."""

    position: int = 0
    last_call_end: datetime | None = None
    calls_taken: int = 0


# The old tests' agents 10, 11, 12, 13 are 1, 2, 3, 4 here.
# Positions deliberately differ from the ids.
AGENTS = [
    Spec(position=2, last_call_end=at(5), calls_taken=4),
    Spec(position=0, last_call_end=at(1), calls_taken=7),
    Spec(position=1, last_call_end=None, calls_taken=0),
    Spec(position=3, last_call_end=at(3), calls_taken=4),
]


@dataclass
class Line:
    """One hotline whose agents 1..n are members, logged in with a device, and idle."""

    sessions: Sessions
    id: int

    @classmethod
    async def create(cls, sessions: Sessions, specs: list[Spec]) -> Line:
        async with sessions() as session, session.begin():
            hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
            for i, spec in enumerate(specs, start=1):
                agent = await admin.create_agent(
                    session, f"10{i:02d}", f"A{i}", device=f"PJSIP/10{i:02d}"
                )
                assert agent.id == i
                await admin.add_member(session, hotline, agent)
                await agents.login(session, agent, target=None, path="cli", actor="test")
                await session.execute(
                    update(Membership)
                    .where(Membership.hotline_id == hotline.id, Membership.agent_id == i)
                    .values(position=spec.position)
                )
                await session.execute(
                    update(AgentState)
                    .where(AgentState.agent_id == i)
                    .values(last_call_end=spec.last_call_end, calls_taken=spec.calls_taken)
                )
        return cls(sessions, hotline.id)

    async def state(self, agent_id: int, **values: Any) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(AgentState).where(AgentState.agent_id == agent_id).values(**values)
            )

    async def offered(self, agent_id: int, when: datetime) -> None:
        """What hotline_reserve records for round_robin when it reserves the agent."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Membership)
                .where(Membership.hotline_id == self.id, Membership.agent_id == agent_id)
                .values(last_offered_at=when)
            )

    async def logout(self, agent_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(delete(AgentLogin).where(AgentLogin.agent_id == agent_id))

    async def leave(self, agent_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(delete(Membership).where(Membership.agent_id == agent_id))

    @staticmethod
    async def _pick(
        session: AsyncSession,
        hotline: int,
        strategy: Strategy,
        tried: Iterable[int],
        lost: Iterable[int],
    ) -> list[int] | None:
        params = {"h": hotline, "s": strategy.value, "now": NOW}
        result = await session.scalar(PICK, {**params, "tried": list(tried), "lost": list(lost)})
        return None if result is None else list(result)

    async def pick(
        self, strategy: Strategy, *, tried: Iterable[int] = (), lost: Iterable[int] = ()
    ) -> list[int] | None:
        """hotline_pick's answer: the first round."""
        async with self.sessions() as session:
            return await self._pick(session, self.id, strategy, tried, lost)

    async def rounds(
        self,
        strategy: Strategy,
        *,
        tried: Iterable[int] = (),
        lost: Iterable[int] = (),
        seed: float | None = None,
    ) -> list[list[int]]:
        """Every round: hotline_pick again and again, each answer added to p_lost (on one
        connection, so that `setseed` makes random reproducible)."""
        lost = list(lost)
        found: list[list[int]] = []
        async with self.sessions() as session:
            if seed is not None:
                await session.execute(text("SELECT setseed(:seed)"), {"seed": seed})
            while got := await self._pick(session, self.id, strategy, tried, lost):
                assert not set(got) & set(lost), got
                found.append(got)
                lost += got
        return found

    async def order(self, strategy: Strategy, **kwargs: Any) -> list[int]:
        """The whole order of a strategy that offers one agent at a time."""
        rounds = await self.rounds(strategy, **kwargs)
        assert all(len(r) == 1 for r in rounds), rounds
        return [r[0] for r in rounds]


async def agents_line(sessions: Sessions) -> Line:
    return await Line.create(sessions, AGENTS)


async def test_strategy_values_match_the_database_enum(sessions: Sessions) -> None:
    async with sessions() as session:
        labels = await session.scalar(text("SELECT enum_range(NULL::strategy)::text[]"))
    assert labels == [s.value for s in Strategy]


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_empty_input_gives_no_rounds(sessions: Sessions, strategy: Strategy) -> None:
    line = await Line.create(sessions, [])
    assert not await line.pick(strategy)
    assert not await line.pick(strategy, tried=[1], lost=[2])
    assert await line.rounds(strategy) == []


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_no_free_agent_gives_no_rounds(sessions: Sessions, strategy: Strategy) -> None:
    line = await Line.create(sessions, [Spec(), Spec()])
    await line.state(1, paused=True)
    await line.state(2, device_busy=True)
    assert not await line.pick(strategy)
    assert not await line.pick(strategy, tried=[1, 2])


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_every_candidate_appears_exactly_once(sessions: Sessions, strategy: Strategy) -> None:
    line = await agents_line(sessions)
    rounds = await line.rounds(strategy, tried=[2], seed=0.3)
    assert sorted(a for r in rounds for a in r) == [1, 2, 3, 4]


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_tried_agents_come_after_untried(sessions: Sessions, strategy: Strategy) -> None:
    line = await agents_line(sessions)
    await line.offered(2, at(10))
    for seed in (0.0, 0.1, 0.2, 0.3, 0.4):
        ids = [a for r in await line.rounds(strategy, tried=[3, 1], seed=seed) for a in r]
        assert set(ids[:2]) == {2, 4}
        assert set(ids[2:]) == {1, 3}


# ring_all


async def test_ring_all_rings_everyone_at_once_in_position_order(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.pick(Strategy.RING_ALL) == [2, 3, 1, 4]


async def test_ring_all_rings_tried_agents_only_in_a_later_round(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.pick(Strategy.RING_ALL, tried=[2, 4]) == [3, 1]
    assert await line.rounds(Strategy.RING_ALL, tried=[2, 4]) == [[3, 1], [2, 4]]


async def test_ring_all_when_everybody_was_tried(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.pick(Strategy.RING_ALL, tried=[1, 2, 3, 4]) == [2, 3, 1, 4]


async def test_ring_all_ignores_unknown_tried_ids(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.pick(Strategy.RING_ALL, tried=[99]) == [2, 3, 1, 4]


# longest_idle


async def test_longest_idle_never_called_first_then_oldest_call_end(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.order(Strategy.LONGEST_IDLE) == [3, 2, 4, 1]


async def test_longest_idle_ties_by_position_then_id(sessions: Sessions) -> None:
    line = await Line.create(
        sessions,
        [
            Spec(position=1, last_call_end=at(0)),
            Spec(position=1, last_call_end=at(0)),
            Spec(position=0, last_call_end=at(0)),
            Spec(position=7),
            Spec(position=7),
            Spec(position=6),
        ],
    )
    assert await line.order(Strategy.LONGEST_IDLE) == [6, 4, 5, 3, 1, 2]


async def test_longest_idle_compares_instants_across_time_zones(sessions: Sessions) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    line = await Line.create(
        sessions,
        [
            Spec(last_call_end=datetime(2025, 3, 3, 9, 45, tzinfo=UTC)),
            Spec(last_call_end=datetime(2025, 3, 3, 10, 30, tzinfo=berlin)),
        ],
    )
    # 10:30 in Berlin is 09:30 UTC, so agent 2 has been idle longer.
    assert await line.order(Strategy.LONGEST_IDLE) == [2, 1]


# round_robin


async def test_round_robin_starts_at_first_position_without_memory(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.order(Strategy.ROUND_ROBIN) == [2, 3, 1, 4]


async def test_round_robin_continues_after_last_agent(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    await line.offered(1, at(10))
    await line.offered(3, at(20))  # the latest offer counts
    assert await line.order(Strategy.ROUND_ROBIN) == [1, 4, 2, 3]


async def test_round_robin_wraps_around(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    await line.offered(4, at(10))
    assert await line.order(Strategy.ROUND_ROBIN) == [2, 3, 1, 4]


async def test_round_robin_successive_calls_visit_everyone(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    seen = []
    for i in range(8):
        first = await line.pick(Strategy.ROUND_ROBIN)
        assert first is not None and len(first) == 1
        seen += first
        await line.offered(first[0], at(10 + i))
    assert seen == [2, 3, 1, 4] * 2


@pytest.mark.parametrize("gone", ["device_busy", "paused", "reserved", "logged_out"])
async def test_round_robin_last_agent_gone_uses_its_position(sessions: Sessions, gone: str) -> None:
    # Agent 3 (position 1) was offered last and is not free any more: continue after 1.
    line = await agents_line(sessions)
    await line.offered(3, at(10))
    if gone == "logged_out":
        await line.logout(3)
    elif gone == "reserved":
        await line.state(3, reserved_call_id=uuid.uuid4())
    else:
        await line.state(3, **{gone: True})
    assert await line.order(Strategy.ROUND_ROBIN) == [1, 4, 2]


async def test_round_robin_last_agent_no_longer_member_restarts(sessions: Sessions) -> None:
    # The memory is the membership's: without it the rotation restarts at the first position.
    line = await agents_line(sessions)
    await line.offered(3, at(10))
    await line.leave(3)
    assert await line.order(Strategy.ROUND_ROBIN) == [2, 1, 4]


async def test_round_robin_same_position_ordered_by_id(sessions: Sessions) -> None:
    line = await Line.create(sessions, [Spec(), Spec(), Spec()])
    await line.offered(2, at(10))
    assert await line.order(Strategy.ROUND_ROBIN) == [3, 1, 2]


async def test_round_robin_with_tried_keeps_rotation_in_both_groups(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    await line.offered(3, at(10))
    assert await line.order(Strategy.ROUND_ROBIN, tried=[1, 2]) == [4, 3, 1, 2]


# linear


async def test_linear_always_by_position_then_id(sessions: Sessions) -> None:
    line = await Line.create(sessions, [*AGENTS, Spec(position=2)])
    assert await line.order(Strategy.LINEAR) == [2, 3, 1, 5, 4]
    for i, last in enumerate((1, 4)):
        await line.offered(last, at(10 + i))
        assert await line.order(Strategy.LINEAR) == [2, 3, 1, 5, 4]


async def test_linear_with_tried(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert await line.order(Strategy.LINEAR, tried=[2]) == [3, 1, 4, 2]


# fewest_calls


async def test_fewest_calls_first_ties_by_longest_idle(sessions: Sessions) -> None:
    # 3 has 0 calls; 1 and 4 both have 4, 4 has been idle longer; 2 has 7.
    line = await agents_line(sessions)
    assert await line.order(Strategy.FEWEST_CALLS) == [3, 4, 1, 2]


async def test_fewest_calls_full_tie_by_position_then_id(sessions: Sessions) -> None:
    line = await Line.create(
        sessions,
        [
            Spec(position=5, calls_taken=2),
            Spec(position=1, calls_taken=2),
            Spec(position=1, calls_taken=2),
        ],
    )
    assert await line.order(Strategy.FEWEST_CALLS) == [2, 3, 1]


# random


async def test_random_is_reproducible_with_a_seed(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    a = await line.order(Strategy.RANDOM, seed=0.42)
    b = await line.order(Strategy.RANDOM, seed=0.42)
    assert a == b
    assert sorted(a) == [1, 2, 3, 4]


async def test_random_varies_with_the_seed(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    orders = {tuple(await line.order(Strategy.RANDOM, seed=s / 50)) for s in range(50)}
    assert len(orders) > 5


async def test_random_without_seed_still_works(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    assert sorted(await line.order(Strategy.RANDOM)) == [1, 2, 3, 4]


# who is free


@pytest.mark.parametrize(
    "values",
    [
        {"paused": True},
        {"device_busy": True},
        {"reserved_call_id": uuid.UUID(int=1)},
        {"activity": AgentActivity.RINGING},
        {"activity": AgentActivity.ON_CALL},
        {"activity": AgentActivity.WRAPUP, "wrapup_until": NOW + timedelta(seconds=1)},
        {"target": None},
    ],
    ids=["paused", "device_busy", "reserved", "ringing", "on_call", "wrapup", "no_target"],
)
async def test_agents_not_free_are_left_out(sessions: Sessions, values: dict[str, Any]) -> None:
    line = await agents_line(sessions)
    await line.state(3, **values)
    for strategy in Strategy:
        rounds = await line.rounds(strategy)
        assert sorted(a for r in rounds for a in r) == [1, 2, 4], strategy


async def test_agents_logged_out_are_left_out(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    await line.logout(3)
    for strategy in Strategy:
        rounds = await line.rounds(strategy)
        assert sorted(a for r in rounds for a in r) == [1, 2, 4], strategy


async def test_wrapup_over_is_free(sessions: Sessions) -> None:
    line = await agents_line(sessions)
    await line.state(3, activity=AgentActivity.WRAPUP, wrapup_until=NOW)
    assert await line.pick(Strategy.RING_ALL) == [2, 3, 1, 4]
    assert await line.pick(Strategy.LONGEST_IDLE) == [3]


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_lost_agents_are_left_out(sessions: Sessions, strategy: Strategy) -> None:
    line = await agents_line(sessions)
    rounds = await line.rounds(strategy, tried=[3], lost=[2, 3])
    assert sorted(a for r in rounds for a in r) == [1, 4]
