"""languages: what callers of a hotline hear, what an agent hears

Revision ID: i14_languages
Revises: i12_node_devices
Create Date: 2026-12-04 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i14_languages"
down_revision: str | None = "i12_node_devices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the server's HOTLINE_LANGUAGE, so existing rows follow the configured default.
    op.add_column("hotlines", sa.Column("language", sa.String(length=8), nullable=True))
    op.add_column("agents", sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column("agents", "language")
    op.drop_column("hotlines", "language")
