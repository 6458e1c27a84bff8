"""callbacks in the queue: a call waiting for its callback, and reservations in entry order
across live callers and callbacks

Revision ID: i15_callback_routing
Revises: i11_nodes
Create Date: 2026-12-04 22:40:00

- call_status 'callback': the caller asked to be called back and hung up; the call keeps
  its place (queue_seq, entered_at) as a virtual entry (table callbacks) and is neither
  waiting live nor over until its callback is connected (then bridged, answered) or fails.
- hotline_reserve counts, among the entries ahead of a caller, the callbacks that are
  pending and due (no attempt in flight, so no agent reserved for them): a live caller never
  takes the agent a callback ahead of it is due. The function is i11_fast_path's with that
  one count added (replaced in place, so fast path changes stay in one definition).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "i15_callback_routing"
down_revision: str | None = "i11_nodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The end of the count of live callers ahead, in i11_fast_path's function body.
_LIVE_AHEAD = (
    "       AND NOT EXISTS (SELECT 1 FROM agent_states r WHERE r.reserved_call_id = c.id);\n"
)
_CALLBACKS_AHEAD = (
    _LIVE_AHEAD
    + """    -- Callbacks ahead that are due and have no attempt in flight wait for an agent too.
    v_ahead := v_ahead + (
        SELECT count(*) FROM callbacks b
         WHERE b.hotline_id = p_hotline AND b.state = 'pending'
           AND b.next_attempt_at <= p_now AND b.queue_seq < p_seq);
"""
)


def _fast_path_reserve() -> str:
    """i11_fast_path's CREATE FUNCTION hotline_reserve, as a replacement."""
    path = Path(__file__).with_name("20261204_0003_fast_call_path.py")
    spec = importlib.util.spec_from_file_location("i11_fast_path_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reserve: str = module.RESERVE
    assert reserve.count(_LIVE_AHEAD) == 1, "hotline_reserve changed: update this migration"
    return reserve.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    # Postgres >= 12 adds an enum value inside a transaction (used only after it commits).
    op.execute("ALTER TYPE call_status ADD VALUE IF NOT EXISTS 'callback'")
    op.execute(_fast_path_reserve().replace(_LIVE_AHEAD, _CALLBACKS_AHEAD))


def downgrade() -> None:
    op.execute(_fast_path_reserve())
    # An enum value cannot be dropped; calls in it are ended as abandoned.
    op.execute(
        "UPDATE calls SET status = 'ended', outcome = 'abandoned', ended_at = now()"
        " WHERE status = 'callback'"
    )
