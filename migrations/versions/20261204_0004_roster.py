"""duty roster: weekly and one-off shifts per hotline, and what the roster last applied

Revision ID: i16_roster
Revises: i13_pin_lockout
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "i16_roster"
down_revision: str | None = "i13_pin_lockout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "roster_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("week_start", sa.Integer(), nullable=True),
        sa.Column("week_end", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "(week_start IS NOT NULL AND week_end IS NOT NULL AND starts_at IS NULL"
            " AND ends_at IS NULL AND week_start BETWEEN 0 AND 10079"
            " AND week_end BETWEEN 0 AND 10079 AND week_start <> week_end)"
            " OR (week_start IS NULL AND week_end IS NULL AND starts_at IS NOT NULL"
            " AND ends_at > starts_at)",
            name=op.f("ck_roster_slots_weekly_or_once"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_roster_slots_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_roster_slots_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_slots")),
    )
    op.create_index(
        op.f("ix_roster_slots_hotline_id"), "roster_slots", ["hotline_id"], unique=False
    )
    op.create_table(
        "roster_state",
        sa.Column("hotline_id", sa.Integer(), nullable=False),
        sa.Column("duty", JSON, nullable=False),
        sa.Column("holding", JSON, nullable=False),
        sa.Column("audit_mark", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotline_id"],
            ["hotlines.id"],
            name=op.f("fk_roster_state_hotline_id_hotlines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hotline_id", name=op.f("pk_roster_state")),
    )


def downgrade() -> None:
    op.drop_table("roster_state")
    op.drop_index(op.f("ix_roster_slots_hotline_id"), table_name="roster_slots")
    op.drop_table("roster_slots")
