"""Issue 15, done-when 4: with random arrivals, callbacks, hang-ups and agent availability,
agents take entries strictly in entry order and no callback has two attempts at once
(domain/callbacks.QueueModel, the rule services/callbacks.py implements in SQL)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ari_app.domain.callbacks import (
    CallbackState,
    Kind,
    QueueModel,
    after_attempt,
    offerable,
)

# (operation, a number picking which entry, for attempts: connected or not)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["arrive", "callback", "hang_up", "agent_free", "attempt_done", "tick"]),
        st.integers(min_value=0, max_value=50),
        st.booleans(),
    ),
    max_size=120,
)


def _run(ops: list[tuple[str, int, bool]], *, always_connect: bool = False) -> QueueModel:
    q = QueueModel(max_attempts=3, interval_s=60)
    now = 0.0
    in_flight: set[int] = set()  # callbacks with an attempt being dialled, seen from outside
    for op, pick, flag in ops:
        live = sorted(e.seq for e in q.entries.values() if e.kind is Kind.LIVE)
        if op == "arrive":
            q.arrive()
        elif op == "callback" and live:
            q.request_callback(live[pick % len(live)])
        elif op == "hang_up" and live:
            q.hang_up(live[pick % len(live)])
        elif op == "agent_free":
            ready = q.eligible(now)
            expected = min((e.seq for e in ready), default=None)
            entry = q.serve(now)
            # the rule: the lowest entry order among what can be served now
            assert (entry.seq if entry else None) == expected
            if entry is not None and entry.kind is Kind.CALLBACK:
                assert entry.seq not in in_flight, "two attempts at once"
                in_flight.add(entry.seq)
        elif op == "attempt_done" and in_flight:
            seq = sorted(in_flight)[pick % len(in_flight)]
            in_flight.discard(seq)
            q.attempt_done(seq, now, connected=always_connect or flag)
        elif op == "tick":
            now += pick * 5
        dialling = {s for s, e in q.entries.items() if e.state is CallbackState.DIALLING}
        assert dialling == in_flight
        assert all(e.attempts <= q.max_attempts for e in q.entries.values())
    return q


@settings(max_examples=400, deadline=None)
@given(OPS)
def test_served_by_the_rule_and_one_attempt_at_a_time(ops: list[tuple[str, int, bool]]) -> None:
    _run(ops)


@settings(max_examples=400, deadline=None)
@given(OPS)
def test_without_failed_attempts_service_order_is_entry_order(
    ops: list[tuple[str, int, bool]],
) -> None:
    q = _run(ops, always_connect=True)
    assert q.assigned == sorted(q.assigned)
    assert len(q.assigned) == len(set(q.assigned))  # nobody is served (or dialled) twice


def test_a_callback_keeps_its_place_before_later_callers() -> None:
    q = QueueModel()
    one, two, three = q.arrive(), q.arrive(), q.arrive()
    assert q.request_callback(two)
    four = q.arrive()
    for _ in range(4):
        entry = q.serve(0)
        assert entry is not None
        if entry.kind is Kind.CALLBACK:
            q.attempt_done(entry.seq, 0, connected=True)
    assert q.assigned == [one, two, three, four]


def test_attempts_then_failed_for_good() -> None:
    assert after_attempt(1, 3, 60, connected=False).retry_in_s == 60
    assert after_attempt(3, 3, 60, connected=False).state is CallbackState.FAILED
    assert after_attempt(2, 3, 60, connected=True).state is CallbackState.COMPLETED


def test_only_a_delivered_number_is_offered() -> None:
    assert offerable("+4930123456") and offerable("030123456")
    for withheld in (None, "", "anonymous", "Anonymous", "unknown", "restricted", "12*3", "1#"):
        assert not offerable(withheld)
