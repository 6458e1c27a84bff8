"""The agent state machine (DESIGN.md, "Agent state and presence"): how a logged-in agent's
activity moves between idle, ringing, on a call and wrap-up, as one table.

Pure: the services apply it (services/routing.py, agents.py, admin.py, recovery.py) and
write the result in their own statements; the call path's hand-written SQL
(`hotline_reserve`, the connect and finish statements) sets the same targets, which a unit
test compares with this table. Pausing and logging in or out are not activities: they are
flags and rows of their own, and presence (domain/presence.py) combines them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ari_app.domain.enums import AgentActivity

IDLE, RINGING, ON_CALL, WRAPUP = (
    AgentActivity.IDLE,
    AgentActivity.RINGING,
    AgentActivity.ON_CALL,
    AgentActivity.WRAPUP,
)


class AgentEvent(enum.StrEnum):
    RESERVED = "reserved"  # a waiting call took the agent: their phone rings
    RELEASED = "released"  # the call did not get the agent (no answer, busy, caller gone,
    # its process died): the agent is free again at once, no wrap-up
    CONNECTED = "connected"  # the agent answered and is bridged with the caller
    FINISHED = "finished"  # the connected call ended: wrap-up (none when its time is 0)
    WRAPUP_OVER = "wrapup_over"  # the hotline's wrap-up time has passed
    LEFT = "left"  # logged out of the last hotline: a wrap-up ends with it


TRANSITIONS: Mapping[tuple[AgentActivity, AgentEvent], AgentActivity] = {
    (IDLE, AgentEvent.RESERVED): RINGING,
    # Only once its wrap-up time has passed: the reservation's condition checks the time.
    (WRAPUP, AgentEvent.RESERVED): RINGING,
    (RINGING, AgentEvent.RELEASED): IDLE,
    # A bridged call's reservation given up without a finish (recovery, failed bridge).
    (ON_CALL, AgentEvent.RELEASED): IDLE,
    (RINGING, AgentEvent.CONNECTED): ON_CALL,
    (ON_CALL, AgentEvent.FINISHED): WRAPUP,
    (WRAPUP, AgentEvent.WRAPUP_OVER): IDLE,
    (WRAPUP, AgentEvent.LEFT): IDLE,
}

# Activities in which the agent's phone is taken by a hotline call (not to be deleted,
# not to be offered another call).
BUSY: frozenset[AgentActivity] = frozenset({RINGING, ON_CALL})


class InvalidTransition(ValueError):
    """An event the agent's activity does not allow (a bug, never a user's error)."""


def allowed(activity: AgentActivity, event: AgentEvent) -> bool:
    return (activity, event) in TRANSITIONS


def after(
    activity: AgentActivity, event: AgentEvent, *, wrapup_s: int | None = None
) -> AgentActivity:
    """The activity after `event`. FINISHED with `wrapup_s` 0 goes straight to idle (a
    wrap-up of no time is over at once)."""
    try:
        target = TRANSITIONS[activity, event]
    except KeyError:
        raise InvalidTransition(
            f"agent activity {activity.value}: {event.value} is not allowed"
        ) from None
    if target is WRAPUP and wrapup_s is not None and wrapup_s <= 0:
        return after(target, AgentEvent.WRAPUP_OVER)
    return target


def sources(event: AgentEvent) -> frozenset[AgentActivity]:
    """The activities `event` may happen in (for the condition of a set-based update)."""
    return frozenset(activity for activity, on in TRANSITIONS if on is event)


def finished(wrapup_s: int) -> AgentActivity:
    """Where a connected call's end leaves its agent."""
    return after(ON_CALL, AgentEvent.FINISHED, wrapup_s=wrapup_s)
