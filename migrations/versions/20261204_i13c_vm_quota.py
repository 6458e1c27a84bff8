"""voicemail quota per hotline (issue 13, finding 7)

Revision ID: i13_vm_quota
Revises: i13_presence_after_call
Create Date: 2026-12-04 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i13_vm_quota"
down_revision: str | None = "i13_presence_after_call"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "hotlines",
        sa.Column("voicemail_quota", sa.Integer(), server_default="100", nullable=False),
    )
    # --vm-max had no upper bound: bring longer settings down to the new one (10 min)
    op.execute("UPDATE hotlines SET voicemail_max_s = 600 WHERE voicemail_max_s > 600")


def downgrade() -> None:
    op.drop_column("hotlines", "voicemail_quota")
