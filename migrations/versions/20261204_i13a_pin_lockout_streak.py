"""lockouts: the streak of locks (each lasts twice as long) and when the subject last failed

Revision ID: i13_pin_lockout
Revises: i16_vm_notify
Create Date: 2026-12-04 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i13_pin_lockout"
down_revision: str | None = "i16_vm_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lockouts",
        sa.Column("lockouts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "lockouts",
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("lockouts", "last_failure_at")
    op.drop_column("lockouts", "lockouts")
