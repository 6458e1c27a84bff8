"""Distribution strategies: their names, as stored and as ops type them.

Who is next by each strategy is decided in Postgres, under the hotline's lock, in the same
statement that reserves the agent (`hotline_pick`; services/routing.py describes the
rules): a call's start is then one round trip, and one definition serves every caller.
"""

from __future__ import annotations

import enum

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
