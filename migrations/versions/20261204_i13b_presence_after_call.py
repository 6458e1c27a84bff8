"""agent_states.device_idle_at: when the last call on the agent's device ended (presence
shows "not available" for the wrap-up time after any call, so a hotline call's wrap-up
cannot be told from a private call)

Revision ID: i13_presence_after_call
Revises: i14_languages
Create Date: 2026-12-04 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i13_presence_after_call"
down_revision: str | None = "i14_languages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "agent_states",
        sa.Column("device_idle_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("agent_states", "device_idle_at")
