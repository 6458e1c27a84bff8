"""device presence: a phone gone idle is announced to every process (NOTIFY hotline_agents)

Revision ID: i11_presence_notify
Revises: i11_presence
Create Date: 2026-12-04 23:00:00

Only one process per PBX writes device states now (ari_app/device_presence.py), so the
other processes hear from Postgres when an agent's phone became idle: their waiting
callers may have an agent. The notification is sent when the writing transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "i11_presence_notify"
down_revision: str | None = "i11_presence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMBINE = """
CREATE OR REPLACE FUNCTION hotline_device_combine(
    p_agents integer[], p_stale_s double precision
) RETURNS SETOF integer
LANGUAGE plpgsql AS $$
DECLARE
    v_freed boolean := false;
    r record;
BEGIN
    FOR r IN
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
        RETURNING s.agent_id, f.busy
    LOOP
        v_freed := v_freed OR NOT r.busy;
        RETURN NEXT r.agent_id;
    END LOOP;
    IF v_freed THEN
        PERFORM pg_notify('hotline_agents', 'device idle');
    END IF;
END
$$
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION hotline_device_combine(p_agents integer[], p_stale_s double precision)
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


def upgrade() -> None:
    op.execute(COMBINE)


def downgrade() -> None:
    op.execute(PREVIOUS)
