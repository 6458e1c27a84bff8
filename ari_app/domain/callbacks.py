"""Callbacks that keep the caller's place (issue 15): the rules, pure.

A caller who asked to be called back leaves a *virtual entry* in the queue with the place
(queue_seq) and the entry time of the original call. Live and virtual entries form one
queue served strictly in entry order: the next agent goes to the entry with the lowest
queue_seq among those that can be served now (a live caller waiting; a callback that is
pending and due). A callback has at most one attempt in flight (state DIALLING); a failed
attempt makes it pending again after the interval, until the attempts are used up.

`QueueModel` is the executable statement of the rule: the property test drives it with
random arrivals, callbacks, hang-ups and agent changes, and a DB test checks that the
SQL of services/callbacks.py picks the same entry.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from ari_app.domain.errors import Refused


class CallbackState(enum.StrEnum):
    PENDING = "pending"  # waiting for its turn (or for the next attempt)
    DIALLING = "dialling"  # one attempt in flight: agent reserved, citizen being dialled
    COMPLETED = "completed"  # the citizen was connected to an agent
    FAILED = "failed"  # attempts used up: listed for ops, counted in the report
    CANCELLED = "cancelled"  # by ops


OPEN_STATES = (CallbackState.PENDING, CallbackState.DIALLING)

# A callable number as the network delivered it: digits, an optional leading +.
_CALLABLE = re.compile(r"^\+?[0-9]{3,20}$")


def offerable(caller_number: str | None) -> bool:
    """Whether a caller may be offered a callback: only to the number the call came from,
    and only when the network delivered one (withheld, anonymous, or anything that is not
    a plain number gets no offer: nothing a caller types is ever dialled)."""
    return bool(caller_number) and _CALLABLE.match(caller_number or "") is not None


def callback_number(caller_number: str | None) -> str:
    """The number to dial back, or Refused (code `refused`) for a withheld number."""
    if not offerable(caller_number):
        raise Refused("no callback: the caller's number is withheld or not callable")
    return str(caller_number)


@dataclass(frozen=True)
class AttemptResult:
    state: CallbackState
    retry_in_s: int | None  # the next attempt after this long (state PENDING), else None


def after_attempt(
    attempts: int, max_attempts: int, interval_s: int, *, connected: bool
) -> AttemptResult:
    """What follows an attempt (`attempts` counts it): completed, another try, or failed."""
    if connected:
        return AttemptResult(CallbackState.COMPLETED, None)
    if attempts >= max_attempts:
        return AttemptResult(CallbackState.FAILED, None)
    return AttemptResult(CallbackState.PENDING, interval_s)


# --- the queue model -----------------------------------------------------------------------


class Kind(enum.StrEnum):
    LIVE = "live"
    CALLBACK = "callback"


@dataclass
class Entry:
    seq: int
    kind: Kind
    state: CallbackState = CallbackState.PENDING  # live entries: PENDING while waiting
    due_at: float = 0.0
    attempts: int = 0


@dataclass
class QueueModel:
    """One hotline's queue: live callers and callbacks in entry order."""

    max_attempts: int = 3
    interval_s: int = 60
    entries: dict[int, Entry] = field(default_factory=dict)
    assigned: list[int] = field(default_factory=list)  # seqs, in the order agents took them
    _next_seq: int = 1

    def arrive(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self.entries[seq] = Entry(seq, Kind.LIVE)
        return seq

    def request_callback(self, seq: int) -> bool:
        """A waiting live caller presses 1 and hangs up: the entry keeps its seq."""
        entry = self.entries.get(seq)
        if entry is None or entry.kind is not Kind.LIVE:
            return False
        entry.kind = Kind.CALLBACK
        return True

    def hang_up(self, seq: int) -> None:
        entry = self.entries.get(seq)
        if entry is not None and entry.kind is Kind.LIVE:
            del self.entries[seq]

    def eligible(self, now: float) -> list[Entry]:
        return [
            e
            for e in self.entries.values()
            if e.kind is Kind.LIVE or (e.state is CallbackState.PENDING and e.due_at <= now)
        ]

    def next_entry(self, now: float) -> Entry | None:
        """The rule: the lowest entry order among those that can be served now."""
        ready = self.eligible(now)
        return min(ready, key=lambda e: e.seq) if ready else None

    def serve(self, now: float) -> Entry | None:
        """An agent is free: it takes the next entry (a callback starts an attempt)."""
        entry = self.next_entry(now)
        if entry is None:
            return None
        self.assigned.append(entry.seq)
        if entry.kind is Kind.LIVE:
            del self.entries[entry.seq]
            return entry
        if entry.state is not CallbackState.PENDING:
            raise AssertionError("a second attempt while one is in flight")
        entry.state = CallbackState.DIALLING
        entry.attempts += 1
        return entry

    def attempt_done(self, seq: int, now: float, *, connected: bool) -> None:
        entry = self.entries[seq]
        assert entry.state is CallbackState.DIALLING
        result = after_attempt(
            entry.attempts, self.max_attempts, self.interval_s, connected=connected
        )
        entry.state = result.state
        if result.state is CallbackState.PENDING:
            entry.due_at = now + (result.retry_in_s or 0)
            return
        del self.entries[seq]  # completed or failed for good
