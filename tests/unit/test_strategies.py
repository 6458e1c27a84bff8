import random
from datetime import UTC, datetime, timedelta

import pytest

from ari_app.domain.errors import InvalidValue
from ari_app.domain.strategies import Candidate, Strategy, order_candidates, parse_strategy

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def flat(rounds: list[list[int]]) -> list[int]:
    assert all(len(r) == 1 for r in rounds), rounds
    return [r[0] for r in rounds]


# Positions deliberately differ from the ids and from the list order.
AGENTS = [
    Candidate(agent_id=10, position=2, last_call_end=at(5), calls_taken=4),
    Candidate(agent_id=11, position=0, last_call_end=at(1), calls_taken=7),
    Candidate(agent_id=12, position=1, last_call_end=None, calls_taken=0),
    Candidate(agent_id=13, position=3, last_call_end=at(3), calls_taken=4),
]


def test_strategy_values_match_the_database_enum() -> None:
    assert [s.value for s in Strategy] == [
        "ring_all",
        "longest_idle",
        "round_robin",
        "linear",
        "fewest_calls",
        "random",
    ]


@pytest.mark.parametrize("text", ["ring_all", "RING_ALL", " ring-all "])
def test_parse_strategy(text: str) -> None:
    assert parse_strategy(text) is Strategy.RING_ALL


def test_parse_strategy_lists_choices() -> None:
    with pytest.raises(InvalidValue, match=r"unknown 'loudest'.*ring_all.*random"):
        parse_strategy("loudest")


@pytest.mark.parametrize("strategy", list(Strategy))
def test_empty_input_gives_no_rounds(strategy: Strategy) -> None:
    assert order_candidates(strategy, [], rng=random.Random(1)) == []
    assert order_candidates(strategy, [], tried=frozenset({1}), last_agent_id=1) == []


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_candidate_appears_exactly_once(strategy: Strategy) -> None:
    rounds = order_candidates(strategy, AGENTS, tried=frozenset({11}), rng=random.Random(3))
    ids = [a for r in rounds for a in r]
    assert sorted(ids) == [10, 11, 12, 13]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_tried_agents_come_after_untried(strategy: Strategy) -> None:
    tried = frozenset({12, 10})
    for seed in range(5):
        rounds = order_candidates(
            strategy, AGENTS, tried=tried, last_agent_id=11, rng=random.Random(seed)
        )
        ids = [a for r in rounds for a in r]
        assert set(ids[:2]) == {11, 13}
        assert set(ids[2:]) == {10, 12}


def test_strategy_accepts_its_string_value() -> None:
    assert order_candidates("linear", AGENTS) == [[11], [12], [10], [13]]


def test_duplicate_ids_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        order_candidates(Strategy.LINEAR, [Candidate(1), Candidate(1, position=2)])


# ring_all


def test_ring_all_rings_everyone_at_once_in_position_order() -> None:
    assert order_candidates(Strategy.RING_ALL, AGENTS) == [[11, 12, 10, 13]]


def test_ring_all_rings_tried_agents_only_in_a_later_round() -> None:
    rounds = order_candidates(Strategy.RING_ALL, AGENTS, tried=frozenset({11, 13}))
    assert rounds == [[12, 10], [11, 13]]


def test_ring_all_when_everybody_was_tried() -> None:
    rounds = order_candidates(Strategy.RING_ALL, AGENTS, tried=frozenset({10, 11, 12, 13}))
    assert rounds == [[11, 12, 10, 13]]


def test_ring_all_ignores_unknown_tried_ids() -> None:
    assert order_candidates(Strategy.RING_ALL, AGENTS, tried=frozenset({99})) == [[11, 12, 10, 13]]


# longest_idle


def test_longest_idle_never_called_first_then_oldest_call_end() -> None:
    assert flat(order_candidates(Strategy.LONGEST_IDLE, AGENTS)) == [12, 11, 13, 10]


def test_longest_idle_ties_by_position_then_id() -> None:
    cands = [
        Candidate(agent_id=5, position=1, last_call_end=at(0)),
        Candidate(agent_id=4, position=1, last_call_end=at(0)),
        Candidate(agent_id=3, position=0, last_call_end=at(0)),
        Candidate(agent_id=9, position=7, last_call_end=None),
        Candidate(agent_id=8, position=7, last_call_end=None),
        Candidate(agent_id=7, position=6, last_call_end=None),
    ]
    assert flat(order_candidates(Strategy.LONGEST_IDLE, cands)) == [7, 8, 9, 3, 4, 5]


def test_longest_idle_compares_instants_across_time_zones() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    cands = [
        Candidate(agent_id=1, last_call_end=datetime(2025, 3, 3, 10, 30, tzinfo=berlin)),
        Candidate(agent_id=2, last_call_end=datetime(2025, 3, 3, 9, 45, tzinfo=UTC)),
    ]
    # 10:30 in Berlin is 09:30 UTC, so agent 1 has been idle longer.
    assert flat(order_candidates(Strategy.LONGEST_IDLE, cands)) == [1, 2]


# round_robin


def test_round_robin_starts_at_first_position_without_memory() -> None:
    assert flat(order_candidates(Strategy.ROUND_ROBIN, AGENTS)) == [11, 12, 10, 13]


def test_round_robin_continues_after_last_agent() -> None:
    rounds = order_candidates(Strategy.ROUND_ROBIN, AGENTS, last_agent_id=12)
    assert flat(rounds) == [10, 13, 11, 12]


def test_round_robin_wraps_around() -> None:
    rounds = order_candidates(Strategy.ROUND_ROBIN, AGENTS, last_agent_id=13)
    assert flat(rounds) == [11, 12, 10, 13]


def test_round_robin_successive_calls_visit_everyone() -> None:
    last: int | None = None
    seen = []
    for _ in range(8):
        last = order_candidates(Strategy.ROUND_ROBIN, AGENTS, last_agent_id=last)[0][0]
        seen.append(last)
    assert seen == [11, 12, 10, 13] * 2


def test_round_robin_last_agent_gone_uses_its_position() -> None:
    # Agent 12 (position 1) is busy and not a candidate any more: continue after position 1.
    cands = [c for c in AGENTS if c.agent_id != 12]
    rounds = order_candidates(Strategy.ROUND_ROBIN, cands, last_agent_id=12, last_position=1)
    assert flat(rounds) == [10, 13, 11]


def test_round_robin_last_agent_gone_without_position_restarts() -> None:
    cands = [c for c in AGENTS if c.agent_id != 12]
    rounds = order_candidates(Strategy.ROUND_ROBIN, cands, last_agent_id=12)
    assert flat(rounds) == [11, 10, 13]


def test_round_robin_same_position_ordered_by_id() -> None:
    cands = [Candidate(agent_id=i, position=0) for i in (3, 1, 2)]
    assert flat(order_candidates(Strategy.ROUND_ROBIN, cands, last_agent_id=2)) == [3, 1, 2]


def test_round_robin_with_tried_keeps_rotation_in_both_groups() -> None:
    rounds = order_candidates(
        Strategy.ROUND_ROBIN, AGENTS, last_agent_id=12, tried=frozenset({10, 11})
    )
    assert flat(rounds) == [13, 12, 10, 11]


# linear


def test_linear_always_by_position_then_id() -> None:
    cands = [*AGENTS, Candidate(agent_id=1, position=2)]
    for last in (None, 10, 13):
        rounds = order_candidates(Strategy.LINEAR, cands, last_agent_id=last)
        assert flat(rounds) == [11, 12, 1, 10, 13]


def test_linear_with_tried() -> None:
    rounds = order_candidates(Strategy.LINEAR, AGENTS, tried=frozenset({11}))
    assert flat(rounds) == [12, 10, 13, 11]


# fewest_calls


def test_fewest_calls_first_ties_by_longest_idle() -> None:
    # 12 has 0 calls; 10 and 13 both have 4, 13 has been idle longer; 11 has 7.
    assert flat(order_candidates(Strategy.FEWEST_CALLS, AGENTS)) == [12, 13, 10, 11]


def test_fewest_calls_full_tie_by_position_then_id() -> None:
    cands = [
        Candidate(agent_id=3, position=1, calls_taken=2),
        Candidate(agent_id=2, position=1, calls_taken=2),
        Candidate(agent_id=1, position=5, calls_taken=2),
    ]
    assert flat(order_candidates(Strategy.FEWEST_CALLS, cands)) == [2, 3, 1]


# random


def test_random_is_reproducible_with_a_seeded_rng() -> None:
    a = order_candidates(Strategy.RANDOM, AGENTS, rng=random.Random(42))
    b = order_candidates(Strategy.RANDOM, list(reversed(AGENTS)), rng=random.Random(42))
    assert a == b
    assert sorted(flat(a)) == [10, 11, 12, 13]


def test_random_varies_with_the_rng() -> None:
    orders = {
        tuple(flat(order_candidates(Strategy.RANDOM, AGENTS, rng=random.Random(s))))
        for s in range(50)
    }
    assert len(orders) > 5


def test_random_without_rng_still_works() -> None:
    assert sorted(flat(order_candidates(Strategy.RANDOM, AGENTS, rng=None))) == [10, 11, 12, 13]
