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
