"""call path: a call's end carried by the process's next start or end

Revision ID: i11_ends_carried
Revises: i11_presence_carried
Create Date: 2026-12-06 00:40:00

A routed call cost two transactions of its own: its start and its end. The end now waits
(at most routing.CARRY_S) for the process's next start or end and goes in its statement,
as the connections and the phones' presence changes do (migrations i11_connects_carried,
i11_presence_carried): a routed call costs one transaction and a share of another.

- hotline_end(call, agent, wrapup_s, outcome, event, at): what hotline_finish did for its
  call (the agent into wrap-up or idle, the call's one outcome, its event), with the
  event at the end's own time (a carried end is written up to CARRY_S later). When the
  end frees an agent whose phone is stored idle already while a caller of one of its
  hotlines waits with no agent ringing, it NOTIFYs
  `hotline_agents` as hotline_device_combine does for a phone that went idle: device
  presence may have written the phone before the end, and the waiting callers of the
  other processes learn then that the agent is free.
- hotline_ends(ends): hotline_end for each end in a JSON array ({call, agent, wrapup_s,
  outcome, event, at}), in order.
- hotline_start_carrying(connects, ends, presence, ...): the connections, the ends, then
  the start (which may pick an agent an end freed), then the presence batch.
- hotline_finish(call, ..., connects, ends, presence): the connections, the ends, the
  call's own end (none for a NULL call: the process writing what is pending on its own),
  then the presence batch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "i11_ends_carried"
down_revision: str | None = "i11_presence_carried"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

END = """
CREATE FUNCTION hotline_end(
    p_call uuid, p_agent integer, p_wrapup_s integer, p_outcome call_outcome, p_event text,
    p_at timestamptz
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_free boolean;
BEGIN
    UPDATE agent_states SET
        activity = CAST(CASE WHEN p_wrapup_s > 0 THEN 'wrapup' ELSE 'idle' END
                        AS agent_activity),
        wrapup_until = p_at + make_interval(secs => p_wrapup_s), last_call_end = p_at,
        calls_taken = calls_taken + 1, reserved_call_id = NULL, reserved_by_node = NULL,
        updated_at = now()
     WHERE agent_id = p_agent AND reserved_call_id = p_call
    RETURNING p_wrapup_s <= 0 AND NOT device_busy AND NOT paused INTO v_free;
    WITH closed AS (
        UPDATE calls SET status = 'ended', ended_at = p_at, outcome = p_outcome,
                         agent_id = coalesce(p_agent, agent_id)
         WHERE id = p_call AND outcome IS NULL RETURNING id
    )
    INSERT INTO call_events (call_id, at, event, agent_id, data)
    SELECT id, p_at, p_event, p_agent, '{}'::jsonb FROM closed;
    -- A caller of one of the agent's hotlines waits with no agent ringing for it.
    IF v_free AND EXISTS (
        SELECT 1 FROM agent_logins l JOIN calls c ON c.hotline_id = l.hotline_id
         WHERE l.agent_id = p_agent AND c.status = 'waiting'
           AND NOT EXISTS (SELECT 1 FROM agent_states r WHERE r.reserved_call_id = c.id)
    ) THEN
        PERFORM pg_notify('hotline_agents', 'call end');
    END IF;
END
$$
"""

ENDS = """
CREATE FUNCTION hotline_ends(p_ends jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_end((e->>'call')::uuid, (e->>'agent')::integer,
                        (e->>'wrapup_s')::integer, (e->>'outcome')::call_outcome,
                        e->>'event', (e->>'at')::timestamptz)
       FROM jsonb_array_elements(coalesce(p_ends, '[]'::jsonb)) WITH ORDINALITY AS x(e, i)
      ORDER BY x.i;
END
$$
"""

START_CARRYING = """
CREATE FUNCTION hotline_start_carrying(
    p_connects jsonb, p_ends jsonb, p_presence jsonb, p_number text, p_hotline integer,
    p_version bigint, p_open boolean, p_call uuid, p_channel text, p_dialled text,
    p_caller text, p_node text, p_now timestamptz
) RETURNS TABLE (
    o_reason text, o_seq integer, o_entered timestamptz, o_agent integer, o_target text,
    o_kind target_kind, o_unwritten integer[], o_flipped integer[]
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_connect(p_connects);
    PERFORM hotline_ends(p_ends);
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
    p_now timestamptz, p_connects jsonb, p_ends jsonb, p_presence jsonb
) RETURNS TABLE (o_unwritten integer[], o_flipped integer[])
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_connect(p_connects);
    PERFORM hotline_ends(p_ends);
    IF p_call IS NOT NULL THEN
        PERFORM hotline_end(p_call, p_agent, p_wrapup_s, p_outcome, p_event, p_now);
    END IF;
    -- After the ends: the presence batch takes no lock it would wait for.
    RETURN QUERY SELECT * FROM hotline_device_carried(p_presence);
END
$$
"""

_DROP_PREVIOUS = (
    "DROP FUNCTION hotline_finish(uuid, integer, integer, call_outcome, text, timestamptz,"
    " jsonb, jsonb)",
    "DROP FUNCTION hotline_start_carrying(jsonb, jsonb, text, integer, bigint, boolean, uuid,"
    " text, text, text, text, timestamptz)",
)
_DROP = (
    "DROP FUNCTION hotline_finish(uuid, integer, integer, call_outcome, text, timestamptz,"
    " jsonb, jsonb, jsonb)",
    "DROP FUNCTION hotline_start_carrying(jsonb, jsonb, jsonb, text, integer, bigint, boolean,"
    " uuid, text, text, text, text, timestamptz)",
    "DROP FUNCTION hotline_ends(jsonb)",
    "DROP FUNCTION hotline_end(uuid, integer, integer, call_outcome, text, timestamptz)",
)


def _previous(name: str) -> str:
    """The function as migration i11_presence_carried created it (for the downgrade)."""
    path = Path(__file__).with_name("20261205_i11f_presence_carried.py")
    spec = importlib.util.spec_from_file_location(f"hotline_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(getattr(module, name))


def upgrade() -> None:
    for statement in (*_DROP_PREVIOUS, END, ENDS, START_CARRYING, FINISH):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP:
        op.execute(statement)
    op.execute(_previous("START_CARRYING"))
    op.execute(_previous("FINISH"))
