"""call status 'action': a caller out of the queue, in voicemail, forward or announcement

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE call_status ADD VALUE IF NOT EXISTS 'action' BEFORE 'ended'")


def downgrade() -> None:
    # Postgres cannot drop an enum value: rebuild the type without it.
    op.execute("UPDATE calls SET status = 'ended' WHERE status = 'action'")
    op.execute("ALTER TYPE call_status RENAME TO call_status_old")
    op.execute("CREATE TYPE call_status AS ENUM ('new', 'waiting', 'bridged', 'ended')")
    op.execute(
        "ALTER TABLE calls ALTER COLUMN status TYPE call_status USING status::text::call_status"
    )
    op.execute("DROP TYPE call_status_old")
