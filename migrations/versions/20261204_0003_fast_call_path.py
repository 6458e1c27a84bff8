"""fast call path: a call's queue entry and its agent reservation in one statement

Revision ID: i11_fast_path
Revises: i15_callbacks
Create Date: 2026-12-04 19:10:00

Two SQL functions (ari_app/services/routing.py calls them):

- hotline_reserve: reserves the agents the strategy chose for a waiting call, in queue
  order (a transaction-scoped advisory lock per hotline orders its callers across
  processes while the function runs; a caller reserves only while fewer unserved callers
  wait ahead of it than there are free agents), with a conditional UPDATE that re-checks
  each agent is still free (no agent rung for two calls, whichever process asks), and
  records the first ring and one RING event per agent in the same statement.
- hotline_enqueue: takes the same lock, inserts the call (and its ENTERQUEUE event when
  it is queued), then runs hotline_reserve for it: a routed call's start is one round
  trip, and callers get their queue places in the order in which they reserve.

A function body sees a new snapshot for each statement, so the counts read after the lock
include what the previous holder committed (a single CTE could not do that).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "i11_fast_path"
down_revision: str | None = "i15_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same rule as routing._free_agent_clause.
_FREE = """
    s.paused = false AND s.reserved_call_id IS NULL AND s.device_busy = false
    AND s.target IS NOT NULL
    AND (s.activity = 'idle' OR (s.activity = 'wrapup' AND s.wrapup_until <= p_now))
"""

RESERVE = f"""
CREATE FUNCTION hotline_reserve(
    p_call uuid, p_hotline integer, p_seq integer, p_agents integer[], p_node text,
    p_now timestamptz, p_round_robin boolean
) RETURNS TABLE (o_agent integer, o_target text, o_kind target_kind)
LANGUAGE plpgsql AS $$
DECLARE
    v_ahead integer;
    v_free integer;
BEGIN
    PERFORM pg_advisory_xact_lock(11, p_hotline);
    SELECT count(*) INTO v_ahead FROM calls c
     WHERE c.hotline_id = p_hotline AND c.status = 'waiting' AND c.queue_seq < p_seq
       AND NOT EXISTS (SELECT 1 FROM agent_states r WHERE r.reserved_call_id = c.id);
    SELECT count(*) INTO v_free FROM agent_states s
      JOIN agent_logins l ON l.agent_id = s.agent_id AND l.hotline_id = p_hotline
      JOIN memberships m ON m.agent_id = s.agent_id AND m.hotline_id = p_hotline
     WHERE {_FREE};
    IF v_free <= v_ahead THEN
        -- Callers ahead of this one get the free agents first: one row without an agent
        -- (no rows: the chosen agents were taken meanwhile, the caller may choose again).
        RETURN QUERY SELECT NULL::integer, NULL::text, NULL::target_kind;
        RETURN;
    END IF;
    RETURN QUERY
    WITH taken AS (
        UPDATE agent_states s
           SET reserved_call_id = p_call, reserved_by_node = p_node, activity = 'ringing',
               updated_at = now()
         WHERE s.agent_id = ANY (p_agents) AND {_FREE}
        RETURNING s.agent_id, s.target, s.target_kind
    ), first_ring AS (
        UPDATE calls SET first_ring_at = p_now
         WHERE id = p_call AND first_ring_at IS NULL AND EXISTS (SELECT 1 FROM taken)
    ), ring AS (
        INSERT INTO call_events (call_id, event, agent_id, data)
        SELECT p_call, 'RING', t.agent_id, '{{}}'::jsonb FROM taken t
    ), offered AS (
        UPDATE memberships m SET last_offered_at = p_now
         WHERE p_round_robin AND m.hotline_id = p_hotline
           AND m.agent_id IN (SELECT t.agent_id FROM taken t)
    )
    SELECT t.agent_id, t.target::text, t.target_kind FROM taken t;
END
$$
"""

ENQUEUE = """
CREATE FUNCTION hotline_enqueue(
    p_call uuid, p_channel text, p_dialled text, p_caller text, p_hotline integer,
    p_node text, p_waiting boolean, p_agents integer[], p_now timestamptz,
    p_round_robin boolean
) RETURNS TABLE (
    o_seq integer, o_entered timestamptz, o_agent integer, o_target text, o_kind target_kind
)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq integer;
    v_entered timestamptz;
BEGIN
    IF p_hotline IS NOT NULL THEN
        -- Before the insert: queue places (queue_seq) are handed out in the order in which
        -- callers reserve, so a later caller never takes the agent of an earlier one.
        PERFORM pg_advisory_xact_lock(11, p_hotline);
    END IF;
    INSERT INTO calls (id, hotline_id, dialled_number, channel_id, node, caller_number,
                       status, pseudonymised)
    VALUES (p_call, p_hotline, p_dialled, p_channel, p_node, NULLIF(p_caller, ''),
            (CASE WHEN p_waiting THEN 'waiting' ELSE 'new' END)::call_status, false)
    RETURNING queue_seq, entered_at INTO v_seq, v_entered;
    IF p_waiting THEN
        INSERT INTO call_events (call_id, event, data)
        VALUES (p_call, 'ENTERQUEUE', jsonb_build_object('caller', p_caller));
    END IF;
    IF p_waiting AND cardinality(p_agents) > 0 THEN
        RETURN QUERY
        SELECT v_seq, v_entered, r.o_agent, r.o_target, r.o_kind
          FROM hotline_reserve(p_call, p_hotline, v_seq, p_agents, p_node, p_now,
                               p_round_robin) r
         WHERE r.o_agent IS NOT NULL;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_seq, v_entered, NULL::integer, NULL::text, NULL::target_kind;
END
$$
"""


def upgrade() -> None:
    op.execute(RESERVE)
    op.execute(ENQUEUE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION hotline_enqueue(uuid, text, text, text, integer, text, boolean,"
        " integer[], timestamptz, boolean)"
    )
    op.execute(
        "DROP FUNCTION hotline_reserve(uuid, integer, integer, integer[], text, timestamptz,"
        " boolean)"
    )
