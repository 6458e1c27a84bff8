import pytest

from ari_app.domain.errors import InvalidValue
from ari_app.domain.strategies import Strategy, parse_strategy

# The order each strategy gives is decided in SQL (hotline_pick): tests/db/test_strategy_order.py.


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
