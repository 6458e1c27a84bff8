"""The agent state machine (domain/agent_state.py): the table, and the call path's SQL
setting the same activities."""

from __future__ import annotations

from pathlib import Path

import pytest

from ari_app.domain.agent_state import (
    BUSY,
    TRANSITIONS,
    AgentEvent,
    InvalidTransition,
    after,
    allowed,
    finished,
    sources,
)
from ari_app.domain.enums import AgentActivity

IDLE, RINGING, ON_CALL, WRAPUP = (
    AgentActivity.IDLE,
    AgentActivity.RINGING,
    AgentActivity.ON_CALL,
    AgentActivity.WRAPUP,
)


def test_a_hotline_call_from_reservation_to_wrapup_and_back() -> None:
    activity = IDLE
    for event, expected in [
        (AgentEvent.RESERVED, RINGING),
        (AgentEvent.CONNECTED, ON_CALL),
        (AgentEvent.FINISHED, WRAPUP),
        (AgentEvent.WRAPUP_OVER, IDLE),
    ]:
        activity = after(activity, event)
        assert activity is expected


def test_an_unanswered_ring_frees_the_agent_at_once() -> None:
    assert after(RINGING, AgentEvent.RELEASED) is IDLE


def test_no_wrapup_time_means_idle_after_the_call() -> None:
    assert finished(0) is IDLE
    assert finished(10) is WRAPUP
    assert after(ON_CALL, AgentEvent.FINISHED, wrapup_s=0) is IDLE


def test_an_agent_in_wrapup_may_be_reserved_and_leaving_ends_the_wrapup() -> None:
    assert after(WRAPUP, AgentEvent.RESERVED) is RINGING
    assert after(WRAPUP, AgentEvent.LEFT) is IDLE
    assert not allowed(ON_CALL, AgentEvent.LEFT)  # logging out does not end a call


@pytest.mark.parametrize(
    ("activity", "event"),
    [
        (RINGING, AgentEvent.RESERVED),  # never rung for two calls
        (ON_CALL, AgentEvent.RESERVED),
        (IDLE, AgentEvent.CONNECTED),  # only a rung agent answers
        (IDLE, AgentEvent.FINISHED),
        (IDLE, AgentEvent.WRAPUP_OVER),
    ],
)
def test_events_the_activity_does_not_allow_are_refused(
    activity: AgentActivity, event: AgentEvent
) -> None:
    assert not allowed(activity, event)
    with pytest.raises(InvalidTransition, match=event.value):
        after(activity, event)


def test_every_activity_is_reached_and_left() -> None:
    reached = {IDLE} | set(TRANSITIONS.values())
    left = {activity for activity, _ in TRANSITIONS}
    assert reached == left == set(AgentActivity)
    # From every activity the agent gets back to idle (no state to be stuck in).
    for activity in AgentActivity:
        seen, todo = {activity}, [activity]
        while todo:
            current = todo.pop()
            for (source, _), target in TRANSITIONS.items():
                if source is current and target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert IDLE in seen, activity


def test_sources_and_busy() -> None:
    assert sources(AgentEvent.RESERVED) == {IDLE, WRAPUP}
    assert sources(AgentEvent.WRAPUP_OVER) == {WRAPUP}
    assert {RINGING, ON_CALL} == BUSY
    assert not BUSY & sources(AgentEvent.RESERVED)  # a busy agent is never reserved


def test_the_call_paths_sql_sets_the_activities_of_the_table() -> None:
    """The connection's and the end's SQL functions (migrations i11_connects_carried,
    i11_ends_carried) set the activities this table says."""
    versions = Path(__file__).resolve().parents[2] / "migrations/versions"
    migration = (versions / "20261205_i11e_connects_carried.py").read_text()
    connect = migration.split('CONNECT = """', 1)[1].split('"""', 1)[0]
    migration = (versions / "20261206_i11g_ends_carried.py").read_text()
    finish = migration.split('END = """', 1)[1].split('"""', 1)[0]
    assert f"activity = '{after(RINGING, AgentEvent.CONNECTED).value}'" in connect
    assert f"THEN '{finished(1).value}' ELSE '{finished(0).value}'" in finish
