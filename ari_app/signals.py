"""In-process wake-ups. Waiting calls are told at once when an agent may have become free;
a slow poll in each flow covers changes made by other nodes."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Broadcast:
    """Calls every subscribed callback on notify(); callbacks must not block."""

    def __init__(self) -> None:
        self._subscribers: set[Callable[[], None]] = set()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.add(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.discard(callback)

    def notify(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback()
            except Exception:
                log.exception("wake-up subscriber failed")


Wake = Callable[[], bool]  # True: a reservation attempt follows; False: skip this caller
Wants = Callable[[], bool]  # True: the caller waits for an agent now


def _always() -> bool:
    return True


class WaitQueue:
    """The callers of this process that wait for an agent, in queue order per hotline.

    A wake-up ("an agent may be free") goes to the first caller of each hotline that will
    try, not to all of them: a caller that got an agent passes it on to the next
    (`pass_on`), one that got none ends the chain. So k freed agents cost about k + 1
    reservation attempts instead of one per waiting caller (the thundering herd). The
    poll in each flow covers what a chain misses (and changes made by other nodes)."""

    def __init__(self) -> None:
        # hotline -> queue_seq -> (wake, wants)
        self._waiting: dict[int, dict[int, tuple[Wake, Wants]]] = {}

    def add(self, hotline_id: int, queue_seq: int, wake: Wake, wants: Wants | None = None) -> None:
        """`wants`: whether the caller waits for an agent now (not while one rings for
        it); None: always."""
        self._waiting.setdefault(hotline_id, {})[queue_seq] = (wake, wants or _always)

    def wants_agent(self) -> bool:
        """Whether a caller of this process waits for an agent now."""
        return any(wants() for callers in self._waiting.values() for _, wants in callers.values())

    def remove(self, hotline_id: int, queue_seq: int) -> None:
        callers = self._waiting.get(hotline_id)
        if callers is not None:
            callers.pop(queue_seq, None)
            if not callers:
                del self._waiting[hotline_id]

    def notify(self) -> None:
        for hotline_id in list(self._waiting):
            self._wake_after(hotline_id, -1)

    def pass_on(self, hotline_id: int, queue_seq: int) -> None:
        """The caller at `queue_seq` is done with this wake-up: the next one's turn."""
        self._wake_after(hotline_id, queue_seq)

    def _wake_after(self, hotline_id: int, queue_seq: int) -> None:
        callers = self._waiting.get(hotline_id, {})
        for seq in sorted(s for s in callers if s > queue_seq):
            try:
                if callers[seq][0]():
                    return
            except Exception:
                log.exception("wake-up of a waiting caller failed")
