"""Estimated wait in a hotline's queue (issue 15), pure: no I/O, no clock.

The model. A caller at position k (1 = next) is served when the k-th agent frees up after
all callers ahead of them were served. With n agents logged in (not paused) and a mean
*handling time* h per call (talk time plus the hotline's wrap-up, measured on this
hotline's recent answered calls), agents free up at a rate of n / h, so the expected wait
is k * h / n. This is the conditional wait of an M/M/n queue given the caller's place
(Erlang C without the probability of waiting, since the caller already waits); it needs no
arrival rate and adapts at once when an agent logs in or out.

Why a mean and not a median: the wait is a sum of k handling times, so the mean is what
adds up; a window of the last WINDOW calls (not all history) follows a morning rush, and a
trimmed mean keeps one forgotten 2-hour call from doubling everyone's estimate.

Too little data: fewer than MIN_SAMPLES answered calls, or nobody logged in, gives no
estimate (None) and the caller hears only the position. The error of this model is
measured by tests/unit/test_waits_simulation.py, not assumed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

MIN_SAMPLES = 5  # fewer answered calls: no estimate is announced
WINDOW = 50  # the most recent answered calls the mean is taken over
TRIM = 0.1  # share cut off at each end before averaging (outliers: a forgotten call)


def handling_time(samples_s: Sequence[float]) -> float | None:
    """Trimmed mean of the most recent handling times (newest last), None with too few."""
    recent = [s for s in samples_s[-WINDOW:] if s >= 0]
    if len(recent) < MIN_SAMPLES:
        return None
    ordered = sorted(recent)
    cut = int(len(ordered) * TRIM)
    kept = ordered[cut : len(ordered) - cut] if cut else ordered
    return sum(kept) / len(kept)


def estimate_wait_s(position: int, agents: int, samples_s: Sequence[float]) -> float | None:
    """Expected seconds until the caller at 1-based `position` is served, or None when
    there is too little data (no agent logged in, or fewer than MIN_SAMPLES calls)."""
    if position < 1 or agents < 1:
        return None
    h = handling_time(samples_s)
    if h is None:
        return None
    return position * h / agents


class WaitKind(enum.StrEnum):
    LESS_THAN_A_MINUTE = "less_than_a_minute"
    ABOUT = "about"


@dataclass(frozen=True)
class SpokenWait:
    """A wait as people say it: "less than a minute" or "about N minutes"."""

    kind: WaitKind
    minutes: int = 1

    def text(self) -> str:
        if self.kind is WaitKind.LESS_THAN_A_MINUTE:
            return "less than a minute"
        return f"about {self.minutes} minute{'s' if self.minutes != 1 else ''}"

    def seconds(self) -> float:
        """What the caller understands, in seconds (for measuring the announced error)."""
        return 30.0 if self.kind is WaitKind.LESS_THAN_A_MINUTE else self.minutes * 60.0


def spoken(seconds: float) -> SpokenWait:
    """Round as people say it: under 45 s "less than a minute"; up to 10 minutes to the
    minute; up to 30 to five minutes; beyond that to ten. A precise-sounding "23 minutes"
    promises more than any estimate knows."""
    if seconds < 45:
        return SpokenWait(WaitKind.LESS_THAN_A_MINUTE)
    minutes = seconds / 60
    step = 1 if minutes < 10 else 5 if minutes < 30 else 10
    return SpokenWait(WaitKind.ABOUT, max(1, int(minutes / step + 0.5) * step))


def media(wait: SpokenWait) -> list[str]:
    """The prompt keys (domain/sounds.py) that say `wait`."""
    if wait.kind is WaitKind.LESS_THAN_A_MINUTE:
        return ["sound:queue-holdtime", "sound:queue-less-than", "number:1", "sound:minute"]
    unit = "sound:minute" if wait.minutes == 1 else "sound:minutes"
    return ["sound:queue-holdtime", f"number:{wait.minutes}", unit]
