"""voicemail notification by e-mail: per-hotline recipients and the mail outbox

Revision ID: i16_vm_notify
Revises: 0002
Create Date: 2026-12-04 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "i16_vm_notify"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("hotlines", sa.Column("vm_notify", JSON, server_default="[]", nullable=False))
    op.add_column(
        "hotlines",
        sa.Column("vm_notify_attach", sa.Boolean(), server_default="true", nullable=False),
    )
    op.add_column(
        "hotlines",
        sa.Column("vm_notify_caller", sa.Boolean(), server_default="false", nullable=False),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voicemail_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attach", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["voicemail_id"],
            ["voicemails.id"],
            name=op.f("fk_mail_outbox_voicemail_id_voicemails"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(
        op.f("ix_mail_outbox_voicemail_id"), "mail_outbox", ["voicemail_id"], unique=False
    )
    op.create_index(
        "ix_mail_outbox_due",
        "mail_outbox",
        ["node", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_due", table_name="mail_outbox")
    op.drop_index(op.f("ix_mail_outbox_voicemail_id"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_column("hotlines", "vm_notify_caller")
    op.drop_column("hotlines", "vm_notify_attach")
    op.drop_column("hotlines", "vm_notify")
