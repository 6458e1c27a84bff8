"""call path: the phones' presence changes carried by the process's next start or end

Revision ID: i11_presence_carried
Revises: i11_connects_carried
Create Date: 2026-12-05 21:40:00

Every routed call changes its agent's phone twice (in use, idle). The PBX's device
presence writer (ari_app/device_presence.py) wrote them in a statement of its own, at most
one every COALESCE_S: at 10 calls/s 0.4 transactions a call on top of the call path's two.
Now the changes go with the next start or end the writer process sends anyway (as the
connections do, migration i11_connects_carried); it writes on its own only when none came
within device_presence.CARRY_S of a change.

- hotline_device_carried(presence): one tracker's view of some agents, as
  hotline_device_busy writes it, but locking the agents' rows with SKIP LOCKED: it
  runs after its statement's own work (start or end), so it must never wait for a lock in
  an order of its own (two starts would deadlock). An agent whose row another transaction
  holds, or that has no state row yet, is returned unwritten and the tracker writes it
  itself. Returns (unwritten, flipped: the agents whose device_busy changed); no row for a
  NULL batch. JSON: {tracker, stale_s, agents: [id], busy: [bool]}.
- hotline_start_carrying(connects, presence, ...): as before, and after the start's rows
  one more row (o_reason NULL) with the presence batch's result.
- hotline_finish(..., connects, presence): as before, then the presence batch; returns its
  result.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "i11_presence_carried"
down_revision: str | None = "i11_connects_carried"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARRIED = """
CREATE FUNCTION hotline_device_carried(p_presence jsonb)
RETURNS TABLE (o_unwritten integer[], o_flipped integer[])
LANGUAGE plpgsql AS $$
DECLARE
    v_agents integer[];
    v_busy boolean[];
    v_locked integer[];
    v_flipped integer[];
BEGIN
    IF p_presence IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(e.a::integer ORDER BY e.i) INTO v_agents
      FROM jsonb_array_elements_text(p_presence->'agents') WITH ORDINALITY AS e(a, i);
    SELECT array_agg(e.b::boolean ORDER BY e.i) INTO v_busy
      FROM jsonb_array_elements_text(p_presence->'busy') WITH ORDINALITY AS e(b, i);
    -- Never waits: a row locked elsewhere is left to the tracker's own write. The agent's
    -- own row too (the key share the foreign key of node_device_states takes): a login
    -- holds it FOR UPDATE and then waits for the state row.
    SELECT array_agg(l.agent_id) INTO v_locked FROM (
        SELECT s.agent_id FROM agent_states s JOIN agents a ON a.id = s.agent_id
         WHERE s.agent_id = ANY (v_agents)
         ORDER BY s.agent_id FOR UPDATE OF s SKIP LOCKED FOR KEY SHARE OF a SKIP LOCKED
    ) l;
    IF v_locked IS NOT NULL THEN
        INSERT INTO node_device_states (tracker, agent_id, busy, seen_at)
        SELECT p_presence->>'tracker', v.agent_id, v.busy, now()
          FROM unnest(v_agents, v_busy) AS v(agent_id, busy)
         WHERE v.agent_id = ANY (v_locked)
        ON CONFLICT (tracker, agent_id) DO UPDATE SET busy = excluded.busy, seen_at = now();
        SELECT array_agg(c) INTO v_flipped
          FROM hotline_device_combine(v_locked, (p_presence->>'stale_s')::double precision) c;
    END IF;
    RETURN QUERY SELECT
        ARRAY(SELECT a FROM unnest(v_agents) a
               WHERE NOT a = ANY (coalesce(v_locked, '{}'::integer[]))),
        coalesce(v_flipped, '{}'::integer[]);
END
$$
"""

START_CARRYING = """
CREATE FUNCTION hotline_start_carrying(
    p_connects jsonb, p_presence jsonb, p_number text, p_hotline integer, p_version bigint,
    p_open boolean, p_call uuid, p_channel text, p_dialled text, p_caller text, p_node text,
    p_now timestamptz
) RETURNS TABLE (
    o_reason text, o_seq integer, o_entered timestamptz, o_agent integer, o_target text,
    o_kind target_kind, o_unwritten integer[], o_flipped integer[]
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_connect(p_connects);
    RETURN QUERY SELECT s.*, NULL::integer[], NULL::integer[]
      FROM hotline_start(p_number, p_hotline, p_version, p_open, p_call, p_channel,
                         p_dialled, p_caller, p_node, p_now) s;
    -- After the start: the presence batch takes no lock it would wait for.
    RETURN QUERY SELECT NULL::text, NULL::integer, NULL::timestamptz, NULL::integer,
                        NULL::text, NULL::target_kind, p.o_unwritten, p.o_flipped
      FROM hotline_device_carried(p_presence) p;
END
$$
"""

FINISH = """
CREATE FUNCTION hotline_finish(
    p_call uuid, p_agent integer, p_wrapup_s integer, p_outcome call_outcome, p_event text,
    p_now timestamptz, p_connects jsonb, p_presence jsonb
) RETURNS TABLE (o_unwritten integer[], o_flipped integer[])
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_connect(p_connects);
    WITH agent AS (
        UPDATE agent_states SET
            activity = CAST(CASE WHEN p_wrapup_s > 0 THEN 'wrapup' ELSE 'idle' END
                            AS agent_activity),
            wrapup_until = p_now + make_interval(secs => p_wrapup_s), last_call_end = p_now,
            calls_taken = calls_taken + 1, reserved_call_id = NULL, reserved_by_node = NULL,
            updated_at = now()
         WHERE agent_id = p_agent AND reserved_call_id = p_call
    ), closed AS (
        UPDATE calls SET status = 'ended', ended_at = p_now, outcome = p_outcome,
                         agent_id = coalesce(p_agent, agent_id)
         WHERE id = p_call AND outcome IS NULL RETURNING id
    )
    INSERT INTO call_events (call_id, event, agent_id, data)
    SELECT id, p_event, p_agent, '{}'::jsonb FROM closed;
    -- After the end: the presence batch takes no lock it would wait for.
    RETURN QUERY SELECT * FROM hotline_device_carried(p_presence);
END
$$
"""

_DROP_PREVIOUS = (
    "DROP FUNCTION hotline_finish(uuid, integer, integer, call_outcome, text, timestamptz, jsonb)",
    "DROP FUNCTION hotline_start_carrying(jsonb, text, integer, bigint, boolean, uuid, text,"
    " text, text, text, timestamptz)",
)
_DROP = (
    "DROP FUNCTION hotline_finish(uuid, integer, integer, call_outcome, text, timestamptz,"
    " jsonb, jsonb)",
    "DROP FUNCTION hotline_start_carrying(jsonb, jsonb, text, integer, bigint, boolean, uuid,"
    " text, text, text, text, timestamptz)",
    "DROP FUNCTION hotline_device_carried(jsonb)",
)


def _previous(name: str) -> str:
    """The function as migration i11_connects_carried created it (for the downgrade)."""
    path = Path(__file__).with_name("20261205_i11e_connects_carried.py")
    spec = importlib.util.spec_from_file_location(f"hotline_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(getattr(module, name))


def upgrade() -> None:
    for statement in (*_DROP_PREVIOUS, CARRIED, START_CARRYING, FINISH):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP:
        op.execute(statement)
    op.execute(_previous("START_CARRYING"))
    op.execute(_previous("FINISH"))
