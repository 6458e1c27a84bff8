"""The enumerations the rules speak in: an agent's activity, a call's status and outcome,
the kind of an agent's target.

They are domain values, not storage details: services, flows, the CLI and the web edge
use them, and db/models.py maps them to PostgreSQL enum types (by value).
"""

from __future__ import annotations

import enum


class TargetKind(enum.StrEnum):
    DEVICE = "device"  # internal Asterisk dial string, e.g. PJSIP/1001
    EXTERNAL = "external"  # mobile/home number, dialled through HOTLINE_EXTERNAL_DIAL


class AgentActivity(enum.StrEnum):
    """Runtime activity of a logged-in agent, shared by all the agent's hotlines."""

    IDLE = "idle"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAPUP = "wrapup"


class CallStatus(enum.StrEnum):
    NEW = "new"
    WAITING = "waiting"  # in the queue
    BRIDGED = "bridged"
    ACTION = "action"  # out of the queue, in an action: voicemail, forward, announcement
    # The caller asked to be called back and hung up: the call keeps its place as a virtual
    # entry (table callbacks) until the callback is connected (bridged) or fails (ended).
    CALLBACK = "callback"
    ENDED = "ended"


class Outcome(enum.StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    VOICEMAIL = "voicemail"
    FORWARDED = "forwarded"
    CLOSED = "closed"
    NO_AGENTS = "no_agents"
    TIMEOUT = "timeout"
    REJECTED_UNKNOWN_NUMBER = "rejected_unknown_number"
