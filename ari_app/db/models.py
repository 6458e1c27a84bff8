"""SQLAlchemy models: all shared state of Hotline lives here (DESIGN.md, "Runtime picture").

Times are timezone-aware. No reason for absence is ever stored anywhere.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ari_app.db.base import Base
from ari_app.domain.enums import (  # re-exported for models' users
    AgentActivity as AgentActivity,
)
from ari_app.domain.enums import (
    CallStatus as CallStatus,
)
from ari_app.domain.enums import (
    Outcome as Outcome,
)
from ari_app.domain.enums import (
    TargetKind as TargetKind,
)
from ari_app.domain.strategies import Strategy as Strategy  # re-exported for models' users

JsonDict = dict[str, Any]
CALL_QUEUE_SEQ = Sequence("call_queue_seq", metadata=Base.metadata)
JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class Hotline(Base):
    __tablename__ = "hotlines"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    strategy: Mapped[Strategy] = mapped_column(
        _enum(Strategy, "strategy"), default=Strategy.RING_ALL
    )
    ring_timeout_s: Mapped[int] = mapped_column(Integer, default=20)
    retry_delay_s: Mapped[int] = mapped_column(Integer, default=2)
    wrapup_s: Mapped[int] = mapped_column(Integer, default=10)
    max_wait_s: Mapped[int] = mapped_column(Integer, default=300)
    max_queue_len: Mapped[int] = mapped_column(Integer, default=20)
    no_answer_limit: Mapped[int] = mapped_column(Integer, default=3)
    greeting_sound: Mapped[str | None] = mapped_column(String(200))
    announce_frequency_s: Mapped[int] = mapped_column(Integer, default=30)
    moh_class: Mapped[str] = mapped_column(String(80), default="default")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")
    # "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00"; NULL = always open
    opening_hours: Mapped[str | None] = mapped_column(Text)
    closed_action: Mapped[str] = mapped_column(String(120), default="voicemail")
    no_agent_action: Mapped[str] = mapped_column(String(120), default="voicemail")
    timeout_action: Mapped[str] = mapped_column(String(120), default="voicemail")
    voicemail_greeting: Mapped[str | None] = mapped_column(String(200))
    voicemail_max_s: Mapped[int] = mapped_column(Integer, default=120)
    # Most voicemails kept for the hotline (disk); when reached, callers hear that the
    # mailbox is full and the oldest messages stay.
    voicemail_quota: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    caller_id_to_agent: Mapped[str] = mapped_column(String(16), default="caller")
    accept_confirm: Mapped[bool] = mapped_column(Boolean, default=True)
    min_agents: Mapped[int] = mapped_column(Integer, default=0)
    escalation_numbers: Mapped[list[str]] = mapped_column(JSON_TYPE, default=list)
    service_level_s: Mapped[int] = mapped_column(Integer, default=20)
    # Voicemail notification by e-mail (issue 16): who gets a message for each new
    # voicemail, the recording attached or only a link, and the caller's number only when
    # ops allowed it for this hotline (off by default: privacy).
    vm_notify: Mapped[list[str]] = mapped_column(JSON_TYPE, default=list, server_default="[]")
    vm_notify_attach: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    vm_notify_caller: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # What callers hear ("de", "en"); NULL: the server's HOTLINE_LANGUAGE.
    language: Mapped[str | None] = mapped_column(String(8))
    # Callback keeping the place (issue 15): offered after this long in the queue (0: off),
    # this many attempts, this long between them.
    callback_after_s: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    callback_interval_s: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    # Bumped by triggers on every change of the row or its holidays (migration
    # i11_start_in_one): a process's cached copy (routing.HotlineConfigs) is stale once
    # it differs. Never set it here.
    config_version: Mapped[int] = mapped_column(
        BigInteger, server_default=text("nextval('hotline_config_versions')")
    )

    holidays: Mapped[list[Holiday]] = relationship(
        back_populates="hotline", cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint("caller_id_to_agent IN ('caller', 'hotline')", name="caller_id_mode"),
        CheckConstraint("min_agents >= 0", name="min_agents_nonneg"),
    )


class Holiday(Base):
    __tablename__ = "holidays"

    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hotline: Mapped[Hotline] = relationship(back_populates="holidays", lazy="raise")


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    # What the agent hears on the phone ("de", "en"); NULL: the server's HOTLINE_LANGUAGE.
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AgentTarget(Base):
    """Where calls may be delivered to an agent: only targets ops configured."""

    __tablename__ = "agent_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TargetKind] = mapped_column(_enum(TargetKind, "target_kind"))
    address: Mapped[str] = mapped_column(String(120))

    __table_args__ = (UniqueConstraint("kind", "address", name="kind_address"),)


class Membership(Base):
    __tablename__ = "memberships"

    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Round robin remembers whom it offered last, per hotline.
    last_offered_at: Mapped[datetime | None] = mapped_column()


class AgentState(Base):
    """Runtime state of one agent, the row that is reserved atomically (FOR UPDATE SKIP LOCKED).

    `paused` carries no reason on purpose. `target`/`target_kind` is where calls go for the
    current login (the bound device, a hot-desk phone or a configured external number).
    """

    __tablename__ = "agent_states"

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str | None] = mapped_column(String(160))
    target_kind: Mapped[TargetKind | None] = mapped_column(_enum(TargetKind, "target_kind"))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    activity: Mapped[AgentActivity] = mapped_column(
        _enum(AgentActivity, "agent_activity"), default=AgentActivity.IDLE
    )
    reserved_call_id: Mapped[uuid.UUID | None] = mapped_column()
    reserved_by_node: Mapped[str | None] = mapped_column(String(64))
    wrapup_until: Mapped[datetime | None] = mapped_column()
    last_call_end: Mapped[datetime | None] = mapped_column()
    calls_taken: Mapped[int] = mapped_column(Integer, default=0)
    unanswered_streak: Mapped[int] = mapped_column(Integer, default=0)
    device_busy: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the last call on the device ended (device_busy went false): presence shows "not
    # available" for a wrap-up time after *any* call, like after a hotline call.
    device_idle_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class NodeDeviceState(Base):
    """One device tracker's view of an agent (one per `hotline serve` process, on its node):
    is there a call on the agent's device on this tracker's Asterisk, or one this process
    placed to the agent's mobile? `AgentState.device_busy` is the OR over the fresh rows
    (seen within `device_presence.STALE_S`), so a call on any node makes the agent busy
    everywhere and a dead node's rows stop counting (ari_app/device_presence.py)."""

    __tablename__ = "node_device_states"

    tracker: Mapped[str] = mapped_column(String(96), primary_key=True)
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    busy: Mapped[bool] = mapped_column(Boolean)
    seen_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AgentLogin(Base):
    """An agent logged in to one hotline. No row = logged out of it."""

    __tablename__ = "agent_logins"

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), primary_key=True
    )
    logged_in_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    hotline_id: Mapped[int | None] = mapped_column(
        ForeignKey("hotlines.id", ondelete="SET NULL"), index=True
    )
    dialled_number: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(160), index=True)
    bridge_id: Mapped[str | None] = mapped_column(String(160))
    node: Mapped[str] = mapped_column(String(64))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CallStatus] = mapped_column(
        _enum(CallStatus, "call_status"), default=CallStatus.NEW
    )
    # Queue order across nodes and restarts (re-adoption keeps it).
    queue_seq: Mapped[int] = mapped_column(
        Integer, CALL_QUEUE_SEQ, server_default=CALL_QUEUE_SEQ.next_value()
    )
    entered_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    first_ring_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome, "call_outcome"))
    pseudonymised: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_calls_waiting", "hotline_id", "status", "queue_seq"),)


class CallEvent(Base):
    """Per-call event log in the spirit of Asterisk's queue_log."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    event: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    data: Mapped[JsonDict] = mapped_column(JSON_TYPE, default=dict)


class Voicemail(Base):
    __tablename__ = "voicemails"

    id: Mapped[int] = mapped_column(primary_key=True)
    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), index=True
    )
    call_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
    duration_s: Mapped[int] = mapped_column(Integer, default=0)
    recording_name: Mapped[str] = mapped_column(String(200), unique=True)
    heard_by_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    heard_at: Mapped[datetime | None] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column()


class MailOutbox(Base):
    """An e-mail to send (voicemail notification), written in the transaction that stores
    the voicemail so nothing is lost; `hotline serve` on `node` (whose Asterisk holds the
    recording) delivers it and retries with backoff. Deleted with its voicemail."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    voicemail_id: Mapped[int] = mapped_column(
        ForeignKey("voicemails.id", ondelete="CASCADE"), index=True
    )
    node: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[list[str]] = mapped_column(JSON_TYPE)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    attach: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index(
            "ix_mail_outbox_due",
            "node",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )


class RosterSlot(Base):
    """A duty shift of one agent on one hotline (issue 16): weekly (minutes of the week in
    the hotline's time zone, Monday 00:00 = 0; an end before the start wraps over Sunday
    night) or one-off (two instants); one-off slots override the weekly ones while they
    last. `target` is one of the agent's external numbers, NULL = the agent's device."""

    __tablename__ = "roster_slots"

    id: Mapped[int] = mapped_column(primary_key=True)
    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    week_start: Mapped[int | None] = mapped_column(Integer)
    week_end: Mapped[int | None] = mapped_column(Integer)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    target: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "(week_start IS NOT NULL AND week_end IS NOT NULL AND starts_at IS NULL"
            " AND ends_at IS NULL AND week_start BETWEEN 0 AND 10079"
            " AND week_end BETWEEN 0 AND 10079 AND week_start <> week_end)"
            " OR (week_start IS NULL AND week_end IS NULL AND starts_at IS NOT NULL"
            " AND ends_at > starts_at)",
            name="weekly_or_once",
        ),
    )


class RosterState(Base):
    """What the roster last applied to a hotline: the duty (agent id -> target) of the
    current shift, the agents the roster holds on duty (logged out at the next change),
    and the audit id at that change (handovers by phone after it are found by id)."""

    __tablename__ = "roster_state"

    hotline_id: Mapped[int] = mapped_column(
        ForeignKey("hotlines.id", ondelete="CASCADE"), primary_key=True
    )
    duty: Mapped[JsonDict] = mapped_column(JSON_TYPE, default=dict)
    holding: Mapped[list[int]] = mapped_column(JSON_TYPE, default=list)
    audit_mark: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column()


class Callback(Base):
    """A virtual queue entry (issue 15): a caller who asked to be called back keeps the
    place (`queue_seq`, `entered_at`) of the original call. `number` is the number that
    call came from, never one a caller typed. At most one attempt is in flight (state
    dialling); `next_attempt_at` is when a pending callback may be served."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    hotline_id: Mapped[int] = mapped_column(ForeignKey("hotlines.id", ondelete="CASCADE"))
    call_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), unique=True
    )
    number: Mapped[str] = mapped_column(String(64))
    queue_seq: Mapped[int] = mapped_column(Integer)
    entered_at: Mapped[datetime] = mapped_column()
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempt_node: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    finished_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'dialling', 'completed', 'failed', 'cancelled')",
            name="state_known",
        ),
        Index(
            "ix_callbacks_open",
            "hotline_id",
            "queue_seq",
            postgresql_where=text("state IN ('pending', 'dialling')"),
        ),
    )


class AuditEntry(Base):
    """Who did what, via which path (device, hotdesk, service, cli, system), when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    hotline_id: Mapped[int | None] = mapped_column(ForeignKey("hotlines.id", ondelete="SET NULL"))
    detail: Mapped[JsonDict] = mapped_column(JSON_TYPE, default=dict)


class Lockout(Base):
    """Consecutive PIN failures per agent number, calling number or device, and the streak
    of locks (`lockouts`: the next lock lasts twice as long; domain/pin.LockoutPolicy)."""

    __tablename__ = "lockouts"

    subject: Mapped[str] = mapped_column(String(100), primary_key=True)  # agent:1001 / number:+49..
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    lockouts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the last failure, or the end of the last lock: a quiet day after it forgets the streak
    last_failure_at: Mapped[datetime | None] = mapped_column()


class Node(Base):
    """A running `hotline serve` process (a node, or one worker of a node), for the others
    on the same PBX to notice when it died and adopt its calls (services/nodes.py)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    pbx: Mapped[str] = mapped_column(String(200))  # host and ARI URL: the Asterisk it drives
    pid: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
