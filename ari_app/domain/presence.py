"""Presence: what colleagues may see about an agent, and nothing more (privacy by design).

The switchboard needs to know whom to put a call through to; it must not learn why someone
is away (sickness must not be inferable) or what kind of call they are on. So every panel,
presence API and non-admin CLI output is built from `presence_record`, which can only carry
three values: available, on a call, not available. Logged out, paused and wrap-up all map to
the same "unavailable" so they cannot be told apart.

`internal_state` is the finer view for ops and for the distribution logic; it never leaves
admin-only paths.
"""

from __future__ import annotations

import enum

from ari_app.domain.enums import AgentActivity

ACTIVITIES = frozenset(activity.value for activity in AgentActivity)


# Asterisk device states of a phone that is taken: a call on it, or ringing (it cannot take
# a second call). The one definition for ringing agents and for device presence.
BUSY_DEVICE_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})


def device_state_busy(device_state: str) -> bool:
    return device_state.upper() in BUSY_DEVICE_STATES


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    ON_CALL = "on_call"
    UNAVAILABLE = "unavailable"


PRESENCE_LABELS: dict[Presence, str] = {
    Presence.AVAILABLE: "available",
    Presence.ON_CALL: "on a call",
    Presence.UNAVAILABLE: "not available",
}


class InternalState(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAPUP = "wrapup"
    PAUSED = "paused"


def _check_activity(activity: str) -> str:
    value = str(activity)
    if value not in ACTIVITIES:
        raise ValueError(f"unknown agent activity {value!r}")
    return value


def exposed_presence(
    *,
    logged_in: bool,
    paused: bool,
    activity: str,
    device_busy: bool,
    after_call: bool = False,
) -> Presence:
    """The one presence value colleagues see.

    Any call on the agent's device shows as on a call, whatever its kind (hotline, internal,
    private) and even when the agent is logged out or paused: the switchboard must not put a
    call through to a busy phone, and "on a call" says nothing about why.

    Ringing shows as on a call too (a deliberate choice): the agent is being offered a call
    and will be busy in a moment, so "available" would invite a transfer that cannot be
    answered, while "not available" would hide that the agent is at work. Only a logged-in,
    unpaused, idle agent on an idle device is available.

    `after_call`: a call on the agent's device ended less than a wrap-up time ago. That
    shows as not available like a wrap-up does, so "not available right after a call" is
    the same after a hotline call (wrap-up) and after a private call, and tells neither
    from a pause.
    """
    activity = _check_activity(activity)
    if device_busy or activity == "on_call":
        return Presence.ON_CALL
    if not logged_in or paused or activity == "wrapup" or after_call:
        return Presence.UNAVAILABLE
    if activity == "ringing":
        return Presence.ON_CALL
    return Presence.AVAILABLE


def internal_state(
    *, logged_in: bool, paused: bool, activity: str, device_busy: bool = False
) -> InternalState:
    """The agent's state for one hotline session, for admin views and distribution.

    Logged out wins (no session on this hotline, whatever the phone does); then a call on the
    device (hotline or not: the agent cannot take another one), ringing, wrap-up, pause.
    """
    activity = _check_activity(activity)
    if not logged_in:
        return InternalState.LOGGED_OUT
    if activity == "on_call" or device_busy:
        return InternalState.ON_CALL
    if activity == "ringing":
        return InternalState.RINGING
    if activity == "wrapup":
        return InternalState.WRAPUP
    if paused:
        return InternalState.PAUSED
    return InternalState.AVAILABLE


def counts_as_staffed(presence: Presence | str) -> bool:
    """Whether an agent logged in to a hotline counts in its "logged in" figure.

    Only from the exposed value: available or on a call. A paused agent, one in wrap-up
    and one right after a private call are all "not available" and all drop out alike, so
    the figure can never tell them apart (the old rule, "logged in and not paused", kept
    wrap-up in and left pause out).
    """
    return Presence(presence) in (Presence.AVAILABLE, Presence.ON_CALL)


def presence_record(agent_number: str, name: str, presence: Presence | str) -> dict[str, str]:
    """The only shape in which presence leaves the app: exactly agent, name, presence.

    Building every output from this function is what keeps a new field (a reason, the other
    party, the call direction) from leaking into a panel or API by accident.
    """
    return {
        "agent": str(agent_number),
        "name": str(name),
        "presence": Presence(presence).value,
    }
