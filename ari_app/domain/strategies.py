"""Distribution strategies: in which order the agents free for a call are offered it.

Pure on purpose: the service layer reads the candidates (agents logged in, not paused,
idle, with a target) from Postgres, asks this module for the order, then tries to reserve
the agents of the first round atomically. Keeping the order here means every strategy is
tested without a database, and one rule decides "who is next" for every edge.

The result is a list of *rounds*; each round is the agents rung together. `ring_all`
produces one round with everybody; the other strategies produce rounds of one agent each.
Agents in `tried` (they rejected or did not answer this call) come after every untried
agent, so nobody is rung twice for a call while a colleague has not been rung yet; they are
still listed, so a call keeps being offered when everybody has been tried once.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ari_app.domain.errors import InvalidValue


class Strategy(enum.StrEnum):
    """Values are stored in the database (`strategy` enum type): never rename one."""

    RING_ALL = "ring_all"
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    LINEAR = "linear"
    FEWEST_CALLS = "fewest_calls"
    RANDOM = "random"


def parse_strategy(text: str) -> Strategy:
    """Strategy from user input (`ring_all`, `ring-all`, `RING_ALL`), with the choices listed."""
    value = text.strip().lower().replace("-", "_")
    try:
        return Strategy(value)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise InvalidValue(f"strategy: unknown {text.strip()!r} (choose {choices})") from None


@dataclass(frozen=True)
class Candidate:
    """An agent free to take the call, with what the strategies need to know about them.

    `position` is the membership order in the hotline (linear and round_robin follow it);
    `last_call_end` is None for an agent who has not had a call yet; `calls_taken` counts
    the calls the agent answered (the service decides over which period).
    """

    agent_id: int
    position: int = 0
    last_call_end: datetime | None = None
    calls_taken: int = 0


Rounds = list[list[int]]
_Key = tuple[int, int]


def _by_position(c: Candidate) -> _Key:
    return (c.position, c.agent_id)


def _sort_idle(cands: Sequence[Candidate]) -> list[Candidate]:
    # Never-called agents first; ties (same end time, or both never called) by position, id.
    never = sorted((c for c in cands if c.last_call_end is None), key=_by_position)
    called = [(c.last_call_end, c) for c in cands if c.last_call_end is not None]
    called.sort(key=lambda pair: (pair[0], pair[1].position, pair[1].agent_id))
    return never + [c for _, c in called]


def _sort_fewest(cands: Sequence[Candidate]) -> list[Candidate]:
    # Stable sort on calls_taken keeps the longest-idle order for ties.
    return sorted(_sort_idle(cands), key=lambda c: c.calls_taken)


def _sort_linear(cands: Sequence[Candidate]) -> list[Candidate]:
    return sorted(cands, key=_by_position)


def _rotate_after(cands: Sequence[Candidate], last: _Key | None) -> list[Candidate]:
    ordered = sorted(cands, key=_by_position)
    if last is None:
        return ordered
    after = [c for c in ordered if _by_position(c) > last]
    before = [c for c in ordered if _by_position(c) <= last]
    return after + before


def order_candidates(
    strategy: Strategy | str,
    candidates: Sequence[Candidate],
    *,
    last_agent_id: int | None = None,
    last_position: int | None = None,
    tried: frozenset[int] = frozenset(),
    rng: random.Random | None = None,
) -> Rounds:
    """The rounds in which to offer the call: `[[a, b, c]]` for ring_all, `[[a], [b]]` else.

    round_robin memory: `last_agent_id` is the agent offered last on this hotline. If that
    agent is no longer a candidate (busy, logged out), pass its membership `last_position`
    too so the rotation continues after where they sit; without it the rotation restarts
    at the first position. `rng` makes `random` reproducible in tests.

    An empty candidate list gives no rounds.
    """
    strategy = Strategy(strategy)
    ids = [c.agent_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("order_candidates: duplicate agent ids in candidates")
    untried = [c for c in candidates if c.agent_id not in tried]
    retry = [c for c in candidates if c.agent_id in tried]

    if strategy is Strategy.RING_ALL:
        groups = [_sort_linear(untried), _sort_linear(retry)]
        return [[c.agent_id for c in g] for g in groups if g]

    sort: Callable[[Sequence[Candidate]], list[Candidate]]
    if strategy is Strategy.LONGEST_IDLE:
        sort = _sort_idle
    elif strategy is Strategy.FEWEST_CALLS:
        sort = _sort_fewest
    elif strategy is Strategy.LINEAR:
        sort = _sort_linear
    elif strategy is Strategy.ROUND_ROBIN:
        last = _round_robin_key(candidates, last_agent_id, last_position)

        def sort(cs: Sequence[Candidate]) -> list[Candidate]:
            return _rotate_after(cs, last)

    else:  # RANDOM
        generator = rng if rng is not None else random.Random()

        def sort(cs: Sequence[Candidate]) -> list[Candidate]:
            # Sort first so the result depends only on the rng, not the input order.
            shuffled = _sort_linear(cs)
            generator.shuffle(shuffled)
            return shuffled

    return [[c.agent_id] for c in sort(untried) + sort(retry)]


def _round_robin_key(
    candidates: Sequence[Candidate], last_agent_id: int | None, last_position: int | None
) -> _Key | None:
    if last_agent_id is None:
        return None
    for c in candidates:
        if c.agent_id == last_agent_id:
            return _by_position(c)
    if last_position is None:
        return None
    return (last_position, last_agent_id)
