"""call path: a call's connection carried by the process's next start or end

Revision ID: i11_connects_carried
Revises: i11_start_in_one
Create Date: 2026-12-05 18:20:00

A routed call was three transactions: its start, its connection (the agent answered) and
its end. The connection is now written with the next statement the process sends anyway
(another call's start, a call's end: at most services/routing.py CARRY_S later, else on
its own), so most calls cost two. Asterisk holds the bridge meanwhile: a process killed
before it wrote the connection leaves a call that reconciliation finds bridged in Asterisk
and waiting in Postgres, and adopts as bridged (ari_app/reconcile.py).

- hotline_connect(connects): the connections in a JSON array ({call, agent, bridge, kind,
  at}), in order: the call bridged with its agent (or forward target: agent null), the
  agent on the call, its CONNECT event at the time of the answer. A call that already has
  an outcome or an answer is left as it is, so a connection written twice, or after the
  call's end wrote it, is written once.
- hotline_start_carrying(connects, ...): the connections, then hotline_start.
- hotline_finish(...): the connections (the call's own first), then the call's end, as
  the statement routing.finish_call sent before: each statement of the function sees the
  ones before it, so an end never overtakes its own connection.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "i11_connects_carried"
down_revision: str | None = "i11_start_in_one"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONNECT = """
CREATE FUNCTION hotline_connect(p_connects jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
    v_call uuid;
    v_agent integer;
    v_at timestamptz;
    v_written integer := 0;
BEGIN
    FOR v IN SELECT e FROM jsonb_array_elements(coalesce(p_connects, '[]'::jsonb)) e LOOP
        v_call := (v->>'call')::uuid;
        v_agent := (v->>'agent')::integer;
        v_at := (v->>'at')::timestamptz;
        -- The row's lock orders two writers of one connection: the second finds it done.
        UPDATE calls SET status = 'bridged', answered_at = v_at, agent_id = v_agent,
                         bridge_id = v->>'bridge'
         WHERE id = v_call AND outcome IS NULL AND answered_at IS NULL;
        CONTINUE WHEN NOT FOUND;
        UPDATE agent_states SET activity = 'on_call', unanswered_streak = 0, updated_at = now()
         WHERE agent_id = v_agent AND reserved_call_id = v_call;
        INSERT INTO call_events (call_id, at, event, agent_id, data)
        VALUES (v_call, v_at, 'CONNECT', v_agent, jsonb_build_object('target_kind', v->>'kind'));
        v_written := v_written + 1;
    END LOOP;
    RETURN v_written;
END
$$
"""

START_CARRYING = """
CREATE FUNCTION hotline_start_carrying(
    p_connects jsonb, p_number text, p_hotline integer, p_version bigint, p_open boolean,
    p_call uuid, p_channel text, p_dialled text, p_caller text, p_node text,
    p_now timestamptz
) RETURNS TABLE (
    o_reason text, o_seq integer, o_entered timestamptz, o_agent integer, o_target text,
    o_kind target_kind
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hotline_connect(p_connects);
    RETURN QUERY SELECT * FROM hotline_start(p_number, p_hotline, p_version, p_open, p_call,
                                             p_channel, p_dialled, p_caller, p_node, p_now);
END
$$
"""

FINISH = """
CREATE FUNCTION hotline_finish(
    p_call uuid, p_agent integer, p_wrapup_s integer, p_outcome call_outcome, p_event text,
    p_now timestamptz, p_connects jsonb
) RETURNS void
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
END
$$
"""

_DROP = (
    "DROP FUNCTION hotline_finish(uuid, integer, integer, call_outcome, text, timestamptz, jsonb)",
    "DROP FUNCTION hotline_start_carrying(jsonb, text, integer, bigint, boolean, uuid, text,"
    " text, text, text, timestamptz)",
    "DROP FUNCTION hotline_connect(jsonb)",
)


def upgrade() -> None:
    for statement in (CONNECT, START_CARRYING, FINISH):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP:
        op.execute(statement)
