"""signals.WaitQueue: an agent that may be free wakes the waiting callers one after
another in queue order, as long as each gets an agent, instead of all of them at once."""

from __future__ import annotations

from collections.abc import Callable

from ari_app.signals import Broadcast, WaitQueue


def _caller(log: list[int], seq: int, tries: bool = True) -> Callable[[], bool]:
    def wake() -> bool:
        log.append(seq)
        return tries

    return wake


def test_a_wake_up_goes_to_the_first_caller_of_each_hotline_only() -> None:
    queue, woken = WaitQueue(), list[int]()
    for seq in (7, 3, 5):
        queue.add(1, seq, _caller(woken, seq))
    queue.add(2, 4, _caller(woken, 4))
    queue.notify()
    assert sorted(woken) == [3, 4]


def test_a_served_caller_passes_on_and_callers_that_will_not_try_are_skipped() -> None:
    queue, woken = WaitQueue(), list[int]()
    queue.add(1, 1, _caller(woken, 1))
    queue.add(1, 2, _caller(woken, 2, tries=False))  # ringing an agent already
    queue.add(1, 3, _caller(woken, 3))
    queue.pass_on(1, 1)  # caller 1 got an agent
    assert woken == [2, 3]
    queue.remove(1, 3)
    queue.remove(1, 1)
    woken.clear()
    queue.notify()
    assert woken == [2]


def test_the_queue_hears_the_broadcast_it_is_subscribed_to() -> None:
    changed, queue, woken = Broadcast(), WaitQueue(), list[int]()
    changed.subscribe(queue.notify)
    queue.add(1, 9, _caller(woken, 9))
    changed.notify()
    assert woken == [9]


def test_an_agent_is_wanted_only_while_a_caller_waits_with_none_ringing() -> None:
    """PendingWrites.end asks this: a caller ringing an agent does not need the agent a
    call's end frees; a queued one does (and an ending call's end is then written at once)."""
    queue, states = WaitQueue(), {1: "ringing", 2: "ringing"}
    assert not queue.wants_agent()
    for seq in states:
        queue.add(1, seq, _caller([], seq), lambda seq=seq: states[seq] == "queued")
    assert not queue.wants_agent()
    states[2] = "queued"
    assert queue.wants_agent()
    queue.remove(1, 2)
    assert not queue.wants_agent()
    queue.add(2, 9, _caller([], 9))  # no `wants`: always
    assert queue.wants_agent()
