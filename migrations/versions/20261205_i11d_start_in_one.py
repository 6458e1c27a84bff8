"""call path: a routed call's start in one statement, the strategies' choice in SQL

Revision ID: i11_start_in_one
Revises: i11_presence_notify
Create Date: 2026-12-05 15:40:00

A call's start was two statements (its hotline's facts, then the insert with the agents'
reservation), because the strategy's choice was made in Python between them. Now:

- hotline_pick: the strategy's first round (ring_all: every free agent not tried yet, or
  every tried one when all were; the others: one agent) in SQL, the one definition of
  "who is next" (ari_app/services/routing.py describes the strategies).
- hotline_reserve: chooses (hotline_pick) and reserves under the hotline's advisory lock;
  an agent taken meanwhile by another hotline's caller is passed over inside the function
  (the next choice), so a caller never has to ask again for that.
- hotline_enqueue: inserts the call (its queue place, under the same lock) and reserves.
- hotline_start: a known hotline's call in one statement: the app sends the version of the
  hotline's configuration it holds and whether that says open now; the function checks the
  version (a change by ops since makes it answer 'stale', without inserting: the app reads
  the hotline again), decides "no agents logged in" and "queue full" under the lock, and
  enqueues.
- hotlines.config_version: a new version (from a sequence) by a trigger on every change
  of the hotline or its holidays, so that no cached configuration outlives a change.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "i11_start_in_one"
down_revision: str | None = "i11_presence_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same rule as routing._free_agent_clause.
_FREE = """
    s.paused = false AND s.reserved_call_id IS NULL AND s.device_busy = false
    AND s.target IS NOT NULL
    AND (s.activity = 'idle' OR (s.activity = 'wrapup' AND s.wrapup_until <= p_now))
"""

VERSION = [
    # Versions from a sequence of their own, not owned by the table: unique across
    # hotlines and never handed out twice, even after TRUNCATE ... RESTART IDENTITY (a
    # hotline re-created under the same id and number is still a new version).
    "CREATE SEQUENCE hotline_config_versions",
    "ALTER TABLE hotlines ADD COLUMN config_version bigint NOT NULL"
    " DEFAULT nextval('hotline_config_versions')",
    """
CREATE FUNCTION hotline_config_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.config_version := nextval('hotline_config_versions');
    RETURN NEW;
END
$$
""",
    "CREATE TRIGGER hotline_config_version BEFORE UPDATE ON hotlines"
    " FOR EACH ROW EXECUTE FUNCTION hotline_config_bump()",
    """
CREATE FUNCTION hotline_holidays_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The hotline's own trigger sets the new version: any UPDATE of the row bumps it.
    IF TG_OP <> 'INSERT' THEN
        UPDATE hotlines SET config_version = 0 WHERE id = OLD.hotline_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE hotlines SET config_version = 0 WHERE id = NEW.hotline_id;
    END IF;
    RETURN NULL;
END
$$
""",
    "CREATE TRIGGER holidays_config_version AFTER INSERT OR UPDATE OR DELETE ON holidays"
    " FOR EACH ROW EXECUTE FUNCTION hotline_holidays_bump()",
]

PICK = f"""
CREATE FUNCTION hotline_pick(
    p_hotline integer, p_strategy strategy, p_tried integer[], p_lost integer[],
    p_now timestamptz
) RETURNS integer[]
LANGUAGE sql STABLE AS $$
    WITH free AS (
        SELECT s.agent_id, m.position, s.last_call_end, s.calls_taken,
               s.agent_id = ANY (p_tried) AS tried
          FROM agent_states s
          JOIN agent_logins l ON l.agent_id = s.agent_id AND l.hotline_id = p_hotline
          JOIN memberships m ON m.agent_id = s.agent_id AND m.hotline_id = p_hotline
         WHERE {_FREE} AND NOT s.agent_id = ANY (p_lost)
    ), last AS (
        -- round_robin: the agent offered last on this hotline (logged in or not)
        SELECT m.position, m.agent_id FROM memberships m
         WHERE m.hotline_id = p_hotline AND m.last_offered_at IS NOT NULL
         ORDER BY m.last_offered_at DESC, m.position DESC
         LIMIT 1
    ), ordered AS (
        SELECT f.agent_id, f.tried, row_number() OVER (ORDER BY
            -- nobody is rung twice for a call while a colleague has not been rung yet
            f.tried,
            CASE WHEN p_strategy = 'fewest_calls' THEN f.calls_taken END,
            -- longest_idle (fewest_calls' ties too): never called first, then the oldest end
            CASE WHEN p_strategy IN ('longest_idle', 'fewest_calls')
                 THEN f.last_call_end IS NOT NULL END,
            CASE WHEN p_strategy IN ('longest_idle', 'fewest_calls') THEN f.last_call_end END,
            -- round_robin: the agents after the last one offered, then those up to it
            CASE WHEN p_strategy = 'round_robin' THEN COALESCE(
                (f.position, f.agent_id) <= (SELECT l.position, l.agent_id FROM last l),
                false) END,
            CASE WHEN p_strategy = 'random' THEN random() END,
            f.position, f.agent_id
        ) AS n
          FROM free f
    )
    SELECT CASE
        WHEN p_strategy = 'ring_all' THEN (
            -- one round with everybody not tried yet; the tried ones only when all were
            SELECT array_agg(o.agent_id ORDER BY o.n) FROM ordered o
             WHERE o.tried = NOT EXISTS (SELECT 1 FROM ordered u WHERE NOT u.tried))
        ELSE (SELECT ARRAY[o.agent_id] FROM ordered o ORDER BY o.n LIMIT 1)
    END
$$
"""

RESERVE = f"""
CREATE FUNCTION hotline_reserve(
    p_call uuid, p_hotline integer, p_seq integer, p_tried integer[], p_node text,
    p_now timestamptz, p_most integer
) RETURNS TABLE (o_agent integer, o_target text, o_kind target_kind)
LANGUAGE plpgsql AS $$
DECLARE
    v_ahead integer;
    v_free integer;
    v_strategy strategy;
    v_pick integer[];
    v_lost integer[] := '{{}}';
BEGIN
    PERFORM pg_advisory_xact_lock(11, p_hotline);
    SELECT count(*) INTO v_ahead FROM calls c
     WHERE c.hotline_id = p_hotline AND c.status = 'waiting' AND c.queue_seq < p_seq
       AND NOT EXISTS (SELECT 1 FROM agent_states r WHERE r.reserved_call_id = c.id);
    -- Callbacks ahead that are due and have no attempt in flight wait for an agent too.
    v_ahead := v_ahead + (
        SELECT count(*) FROM callbacks b
         WHERE b.hotline_id = p_hotline AND b.state = 'pending'
           AND b.next_attempt_at <= p_now AND b.queue_seq < p_seq);
    SELECT count(*) INTO v_free FROM agent_states s
      JOIN agent_logins l ON l.agent_id = s.agent_id AND l.hotline_id = p_hotline
      JOIN memberships m ON m.agent_id = s.agent_id AND m.hotline_id = p_hotline
     WHERE {_FREE};
    IF v_free <= v_ahead THEN
        RETURN;  -- callers ahead of this one get the free agents first
    END IF;
    SELECT h.strategy INTO v_strategy FROM hotlines h WHERE h.id = p_hotline;
    LOOP
        v_pick := hotline_pick(p_hotline, v_strategy, p_tried, v_lost, p_now);
        IF p_most IS NOT NULL THEN
            v_pick := v_pick[1:p_most];
        END IF;
        IF coalesce(cardinality(v_pick), 0) = 0 THEN
            RETURN;
        END IF;
        RETURN QUERY
        WITH taken AS (
            UPDATE agent_states s
               SET reserved_call_id = p_call, reserved_by_node = p_node,
                   activity = 'ringing', updated_at = now()
             WHERE s.agent_id = ANY (v_pick) AND {_FREE}
            RETURNING s.agent_id, s.target, s.target_kind
        ), first_ring AS (
            UPDATE calls SET first_ring_at = p_now
             WHERE id = p_call AND first_ring_at IS NULL AND EXISTS (SELECT 1 FROM taken)
        ), ring AS (
            INSERT INTO call_events (call_id, event, agent_id, data)
            SELECT p_call, 'RING', t.agent_id, '{{}}'::jsonb FROM taken t
        ), offered AS (
            UPDATE memberships m SET last_offered_at = p_now
             WHERE v_strategy = 'round_robin' AND m.hotline_id = p_hotline
               AND m.agent_id IN (SELECT t.agent_id FROM taken t)
        )
        SELECT t.agent_id, t.target::text, t.target_kind FROM taken t;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Taken meanwhile by a caller of another hotline (not under this lock): the next.
        v_lost := v_lost || v_pick;
    END LOOP;
END
$$
"""

ENQUEUE = """
CREATE FUNCTION hotline_enqueue(
    p_call uuid, p_channel text, p_dialled text, p_caller text, p_hotline integer,
    p_node text, p_waiting boolean, p_now timestamptz
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
        RETURN QUERY
        SELECT v_seq, v_entered, r.o_agent, r.o_target, r.o_kind
          FROM hotline_reserve(p_call, p_hotline, v_seq, '{}', p_node, p_now, NULL) r;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_seq, v_entered, NULL::integer, NULL::text, NULL::target_kind;
END
$$
"""

START = """
CREATE FUNCTION hotline_start(
    p_number text, p_hotline integer, p_version bigint, p_open boolean,
    p_call uuid, p_channel text, p_dialled text, p_caller text, p_node text,
    p_now timestamptz
) RETURNS TABLE (
    o_reason text, o_seq integer, o_entered timestamptz, o_agent integer, o_target text,
    o_kind target_kind
)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
    v_max integer;
    v_reason text;
BEGIN
    SELECT h.config_version, h.max_queue_len INTO v_version, v_max
      FROM hotlines h WHERE h.number = p_number AND h.id = p_hotline;
    IF v_version IS DISTINCT FROM p_version THEN
        -- Changed (or renamed, or removed) since the app read it: nothing inserted.
        RETURN QUERY SELECT 'stale', NULL::integer, NULL::timestamptz, NULL::integer,
                            NULL::text, NULL::target_kind;
        RETURN;
    END IF;
    -- The one place of this rule (services/routing.py start_call): closed, no agents, full.
    PERFORM pg_advisory_xact_lock(11, p_hotline);
    IF NOT p_open THEN
        v_reason := 'closed';
    ELSIF NOT EXISTS (SELECT 1 FROM agent_logins l WHERE l.hotline_id = p_hotline) THEN
        v_reason := 'no_agents';
    ELSIF (SELECT count(*) FROM calls c
            WHERE c.hotline_id = p_hotline AND c.status = 'waiting') >= v_max THEN
        v_reason := 'timeout';
    END IF;
    RETURN QUERY
    SELECT coalesce(v_reason, 'queued'), e.o_seq, e.o_entered, e.o_agent, e.o_target, e.o_kind
      FROM hotline_enqueue(p_call, p_channel, p_dialled, p_caller, p_hotline, p_node,
                           v_reason IS NULL, p_now) e;
END
$$
"""


def _previous(filename: str, name: str) -> str:
    """A function as an earlier migration created it (for the downgrade)."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"hotline_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name == "RESERVE":
        return (
            str(module._fast_path_reserve())
            .replace(module._LIVE_AHEAD, module._CALLBACKS_AHEAD)
            .replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION", 1)
        )
    return str(getattr(module, name))


_DROP_OLD = (
    "DROP FUNCTION hotline_enqueue(uuid, text, text, text, integer, text, boolean, integer[],"
    " timestamptz, boolean)",
    "DROP FUNCTION hotline_reserve(uuid, integer, integer, integer[], text, timestamptz, boolean)",
)
_DROP_NEW = (
    "DROP FUNCTION hotline_start(text, integer, bigint, boolean, uuid, text, text, text, text,"
    " timestamptz)",
    "DROP FUNCTION hotline_enqueue(uuid, text, text, text, integer, text, boolean, timestamptz)",
    "DROP FUNCTION hotline_reserve(uuid, integer, integer, integer[], text, timestamptz, integer)",
    "DROP FUNCTION hotline_pick(integer, strategy, integer[], integer[], timestamptz)",
    "DROP TRIGGER holidays_config_version ON holidays",
    "DROP TRIGGER hotline_config_version ON hotlines",
    "DROP FUNCTION hotline_holidays_bump()",
    "DROP FUNCTION hotline_config_bump()",
    "ALTER TABLE hotlines DROP COLUMN config_version",
    "DROP SEQUENCE hotline_config_versions",
)


def upgrade() -> None:
    for statement in (*_DROP_OLD, *VERSION, PICK, RESERVE, ENQUEUE, START):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP_NEW:
        op.execute(statement)
    op.execute(_previous("20261204_i15b_callback_routing.py", "RESERVE"))
    op.execute(_previous("20261204_0003_fast_call_path.py", "ENQUEUE"))
