"""device presence in one statement per change: SQL functions for the trackers' writes

Revision ID: i11_presence
Revises: i15_callback_routing
Create Date: 2026-12-04 22:40:00

ari_app/services/device_states.py calls them; each is one round trip sent outside
BEGIN/COMMIT (a transaction of its own):

- hotline_device_combine: `device_busy` := busy on any fresh tracker row, for agents whose
  `agent_states` rows the caller locked, writing only rows whose flag changes (a busy to
  idle change also stamps `device_idle_at`); returns the agents changed.
- hotline_device_busy: one tracker's view of some agents (creates missing state rows,
  locks the agents' rows in id order, writes the tracker rows that change, combines).
- hotline_device_refresh: a tracker's periodic touch (NULL: its Asterisk is not
  connected, its rows go stale), forgets long-gone trackers, and corrects `device_busy`
  where it is not the OR of the fresh rows (a node died); returns the agents corrected.

A plpgsql body sees a new snapshot for each statement, so the OR computed after the lock
includes every tracker row committed before the lock was granted (two trackers writing
at once cannot leave an OR computed from a stale snapshot).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "i11_presence"
down_revision: str | None = "i15_callback_routing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMBINE = """
CREATE FUNCTION hotline_device_combine(p_agents integer[], p_stale_s double precision)
RETURNS SETOF integer
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH fresh AS (
        SELECT a.id AS agent_id, EXISTS (
            SELECT 1 FROM node_device_states n
             WHERE n.agent_id = a.id AND n.busy
               AND n.seen_at > now() - make_interval(secs => p_stale_s)
        ) AS busy
          FROM unnest(p_agents) AS a(id)
    )
    UPDATE agent_states s
       SET device_busy = f.busy,
           device_idle_at = CASE WHEN s.device_busy AND NOT f.busy THEN now()
                                 ELSE s.device_idle_at END,
           updated_at = now()
      FROM fresh f
     WHERE s.agent_id = f.agent_id AND s.device_busy IS DISTINCT FROM f.busy
    RETURNING s.agent_id;
END
$$
"""

BUSY = """
CREATE FUNCTION hotline_device_busy(
    p_tracker text, p_agents integer[], p_busy boolean[], p_stale_s double precision
) RETURNS SETOF integer
LANGUAGE plpgsql AS $$
DECLARE
    v_locked integer[];
BEGIN
    INSERT INTO agent_states (agent_id, paused, activity, calls_taken, unanswered_streak,
                              device_busy)
    SELECT a.id, false, 'idle', 0, 0, false FROM agents a WHERE a.id = ANY (p_agents)
    ON CONFLICT (agent_id) DO NOTHING;
    -- In id order, as every writer of these rows does: trackers do not deadlock.
    SELECT array_agg(l.agent_id) INTO v_locked FROM (
        SELECT s.agent_id FROM agent_states s WHERE s.agent_id = ANY (p_agents)
         ORDER BY s.agent_id FOR UPDATE
    ) l;
    IF v_locked IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO node_device_states (tracker, agent_id, busy, seen_at)
    SELECT p_tracker, v.agent_id, v.busy, now()
      FROM unnest(p_agents, p_busy) AS v(agent_id, busy)
     WHERE v.agent_id = ANY (v_locked)
    ON CONFLICT (tracker, agent_id) DO UPDATE SET busy = excluded.busy, seen_at = now();
    RETURN QUERY SELECT hotline_device_combine(v_locked, p_stale_s);
END
$$
"""

REFRESH = """
CREATE FUNCTION hotline_device_refresh(
    p_tracker text, p_stale_s double precision, p_forget_s double precision
) RETURNS SETOF integer
LANGUAGE plpgsql AS $$
DECLARE
    v_locked integer[];
BEGIN
    IF p_tracker IS NOT NULL THEN
        UPDATE node_device_states SET seen_at = now() WHERE tracker = p_tracker;
    END IF;
    DELETE FROM node_device_states WHERE seen_at < now() - make_interval(secs => p_forget_s);
    SELECT array_agg(l.agent_id) INTO v_locked FROM (
        SELECT s.agent_id FROM agent_states s
         WHERE s.device_busy IS DISTINCT FROM EXISTS (
            SELECT 1 FROM node_device_states n
             WHERE n.agent_id = s.agent_id AND n.busy
               AND n.seen_at > now() - make_interval(secs => p_stale_s))
         ORDER BY s.agent_id FOR UPDATE
    ) l;
    IF v_locked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT hotline_device_combine(v_locked, p_stale_s);
END
$$
"""


def upgrade() -> None:
    op.execute(COMBINE)
    op.execute(BUSY)
    op.execute(REFRESH)


def downgrade() -> None:
    op.execute("DROP FUNCTION hotline_device_refresh(text, double precision, double precision)")
    op.execute("DROP FUNCTION hotline_device_busy(text, integer[], boolean[], double precision)")
    op.execute("DROP FUNCTION hotline_device_combine(integer[], double precision)")
