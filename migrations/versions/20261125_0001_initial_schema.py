"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 22:29:05.306860
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("call_queue_seq")))
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("pin_hash", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("number", name=op.f("uq_agents_number")),
    )
    op.create_table(
        "hotlines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "strategy",
            sa.Enum(
                "ring_all",
                "longest_idle",
                "round_robin",
                "linear",
                "fewest_calls",
                "random",
                name="strategy",
            ),
            nullable=False,
        ),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=False),
        sa.Column("retry_delay_s", sa.Integer(), nullable=False),
        sa.Column("wrapup_s", sa.Integer(), nullable=False),
        sa.Column("max_wait_s", sa.Integer(), nullable=False),
        sa.Column("max_queue_len", sa.Integer(), nullable=False),
        sa.Column("no_answer_limit", sa.Integer(), nullable=False),
        sa.Column("greeting_sound", sa.String(length=200), nullable=True),
        sa.Column("announce_frequency_s", sa.Integer(), nullable=False),
        sa.Column("moh_class", sa.String(length=80), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("opening_hours", sa.Text(), nullable=True),
        sa.Column("closed_action", sa.String(length=120), nullable=False),
        sa.Column("no_agent_action", sa.String(length=120), nullable=False),
        sa.Column("timeout_action", sa.String(length=120), nullable=False),
        sa.Column("voicemail_greeting", sa.String(length=200), nullable=True),
        sa.Column("voicemail_max_s", sa.Integer(), nullable=False),
        sa.Column("caller_id_to_agent", sa.String(length=16), nullable=False),
        sa.Column("accept_confirm", sa.Boolean(), nullable=False),
        sa.Column("min_agents", sa.Integer(), nullable=False),
        sa.Column(
            "escalation_numbers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("service_level_s", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "caller_id_to_agent IN ('caller', 'hotline')", name=op.f("ck_hotlines_caller_id_mode")
        ),
        sa.CheckConstraint("min_agents >= 0", name=op.f("ck_hotlines_min_agents_nonneg")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hotlines")),
        sa.UniqueConstraint("number", name=op.f("uq_hotlines_number")),
    )
    op.create_table(
        "lockouts",
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_lockouts")),
    )
    op.create_table(
        "agent_logins",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column(
            "logged_in_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_logins_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_agent_logins_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "hotline_id", name=op.f("pk_agent_logins")),
    )
    op.create_table(
        "agent_states",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=True),
        sa.Column("target_kind", sa.Enum("device", "external", name="target_kind"), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column(
            "activity",
            sa.Enum("idle", "ringing", "on_call", "wrapup", name="agent_activity"),
            nullable=False,
        ),
        sa.Column("reserved_call_id", sa.Uuid(), nullable=True),
        sa.Column("reserved_by_node", sa.String(length=64), nullable=True),
        sa.Column("wrapup_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_call_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("calls_taken", sa.Integer(), nullable=False),
        sa.Column("unanswered_streak", sa.Integer(), nullable=False),
        sa.Column("device_busy", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_states_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agent_states")),
    )
    op.create_table(
        "agent_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Enum("device", "external", name="target_kind"), nullable=False),
        sa.Column("address", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_targets_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_targets")),
        sa.UniqueConstraint("kind", "address", name="kind_address"),
    )
    op.create_index(op.f("ix_agent_targets_agent_id"), "agent_targets", ["agent_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("hotline_id", sa.Integer(), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_audit_log_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_audit_log_hotline_id_hotlines"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_agent_id"), "audit_log", ["agent_id"], unique=False)
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("hotline_id", sa.Integer(), nullable=True),
        sa.Column("dialled_number", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=160), nullable=False),
        sa.Column("bridge_id", sa.String(length=160), nullable=True),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum("new", "waiting", "bridged", "ended", name="call_status"),
            nullable=False,
        ),
        sa.Column(
            "queue_seq",
            sa.Integer(),
            server_default=sa.text("nextval('call_queue_seq')"),
            nullable=False,
        ),
        sa.Column(
            "entered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("first_ring_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column(
            "outcome",
            sa.Enum(
                "answered",
                "abandoned",
                "voicemail",
                "forwarded",
                "closed",
                "no_agents",
                "timeout",
                "rejected_unknown_number",
                name="call_outcome",
            ),
            nullable=True,
        ),
        sa.Column("pseudonymised", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_calls_agent_id_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_calls_hotline_id_hotlines"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_channel_id"), "calls", ["channel_id"], unique=False)
    op.create_index(op.f("ix_calls_entered_at"), "calls", ["entered_at"], unique=False)
    op.create_index(op.f("ix_calls_hotline_id"), "calls", ["hotline_id"], unique=False)
    op.create_index(
        "ix_calls_waiting", "calls", ["hotline_id", "status", "queue_seq"], unique=False
    )
    op.create_table(
        "holidays",
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_holidays_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hotline_id", "day", name=op.f("pk_holidays")),
    )
    op.create_table(
        "memberships",
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("last_offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_memberships_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_memberships_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hotline_id", "agent_id", name=op.f("pk_memberships")),
    )
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_call_events_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_events_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
    )
    op.create_index(op.f("ix_call_events_call_id"), "call_events", ["call_id"], unique=False)
    op.create_table(
        "voicemails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("recording_name", sa.String(length=200), nullable=False),
        sa.Column("heard_by_agent_id", sa.Integer(), nullable=True),
        sa.Column("heard_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_voicemails_call_id_calls"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["heard_by_agent_id"],
            ["agents.id"],
            name=op.f("fk_voicemails_heard_by_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_voicemails_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemails")),
        sa.UniqueConstraint("recording_name", name=op.f("uq_voicemails_recording_name")),
    )
    op.create_index(op.f("ix_voicemails_hotline_id"), "voicemails", ["hotline_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_voicemails_hotline_id"), table_name="voicemails")
    op.drop_table("voicemails")
    op.drop_index(op.f("ix_call_events_call_id"), table_name="call_events")
    op.drop_table("call_events")
    op.drop_table("memberships")
    op.drop_table("holidays")
    op.drop_index("ix_calls_waiting", table_name="calls")
    op.drop_index(op.f("ix_calls_hotline_id"), table_name="calls")
    op.drop_index(op.f("ix_calls_entered_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_channel_id"), table_name="calls")
    op.drop_table("calls")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_agent_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_agent_targets_agent_id"), table_name="agent_targets")
    op.drop_table("agent_targets")
    op.drop_table("agent_states")
    op.drop_table("agent_logins")
    op.drop_table("lockouts")
    op.drop_table("hotlines")
    op.drop_table("agents")
    op.execute(sa.schema.DropSequence(sa.Sequence("call_queue_seq")))
    for enum_name in ("strategy", "target_kind", "agent_activity", "call_status", "call_outcome"):
        sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
