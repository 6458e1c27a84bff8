"""device presence per node: each tracker's view of an agent's devices

Revision ID: i12_node_devices
Revises: i16_roster
Create Date: 2026-12-04 19:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i12_node_devices"
down_revision: str | None = "i16_roster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "node_device_states",
        sa.Column("tracker", sa.String(length=96), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("busy", sa.Boolean(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_node_device_states_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tracker", "agent_id", name=op.f("pk_node_device_states")),
    )
    op.create_index(
        op.f("ix_node_device_states_agent_id"), "node_device_states", ["agent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_node_device_states_agent_id"), table_name="node_device_states")
    op.drop_table("node_device_states")
