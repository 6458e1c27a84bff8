"""callbacks keeping the caller's place: per-hotline settings and the callbacks table

Revision ID: i15_callbacks
Revises: i13_vm_quota
Create Date: 2026-12-04 20:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i15_callbacks"
down_revision: str | None = "i13_vm_quota"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "hotlines", sa.Column("callback_after_s", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "hotlines", sa.Column("callback_attempts", sa.Integer(), server_default="3", nullable=False)
    )
    op.add_column(
        "hotlines",
        sa.Column("callback_interval_s", sa.Integer(), server_default="300", nullable=False),
    )
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("queue_seq", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("attempt_node", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'dialling', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_callbacks_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_callbacks_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_callbacks_call_id_calls"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_callbacks_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint("call_id", name=op.f("uq_callbacks_call_id")),
    )
    op.create_index(
        "ix_callbacks_open",
        "callbacks",
        ["hotline_id", "queue_seq"],
        unique=False,
        postgresql_where=sa.text("state IN ('pending', 'dialling')"),
    )


def downgrade() -> None:
    op.drop_index("ix_callbacks_open", table_name="callbacks")
    op.drop_table("callbacks")
    op.drop_column("hotlines", "callback_interval_s")
    op.drop_column("hotlines", "callback_attempts")
    op.drop_column("hotlines", "callback_after_s")
