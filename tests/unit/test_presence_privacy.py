"""Privacy of presence (issue 4, item 6): walk every internal agent state, through the domain
functions and through the service functions that build the records the panel and the
presence API send, and check that only the three exposed values ever come out, in records
with no field that could reveal a reason, a call direction, the other party or the kind of
device or call."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ari_app.db.models import AgentActivity, AgentState, TargetKind
from ari_app.device_presence import compute_busy
from ari_app.domain.presence import InternalState, Presence, exposed_presence, internal_state
from ari_app.services import presence
from ari_app.services.device_states import AgentDevices

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
EXPOSED = {"available", "on_call", "unavailable"}
RECORD_KEYS = {"agent", "name", "presence"}
# Values the records must never contain: targets, reasons, directions, kinds, states.
SECRETS = ("PJSIP/1001", "01701234567", "030999888")
FORBIDDEN_WORDS = (
    "reason",
    "direction",
    "inbound",
    "outbound",
    "internal",
    "external",
    "device",
    "mobile",
    "peer",
    "caller",
    "target",
    "pause",
    "wrapup",
    "ringing",
    "logged",
    "idle",
    "sick",
    "hotline",
    "private",
)

TARGETS = [(None, None), ("PJSIP/1001", TargetKind.DEVICE), ("01701234567", TargetKind.EXTERNAL)]
WRAPUP_ENDS = [None, NOW - timedelta(seconds=5), NOW + timedelta(seconds=30)]
# When the last call on the device ended: never, within the hold (HOLD_S), long ago.
CALL_ENDS = [None, NOW - timedelta(seconds=3), NOW - timedelta(minutes=5)]
HOLD_S = 10  # the longest wrap-up of the agent's hotlines (from the query)


def _states() -> list[tuple[bool, AgentState | None]]:
    """(logged in, state row) for every combination of every field that could leak."""
    combos: list[tuple[bool, AgentState | None]] = [(False, None), (True, None)]
    for logged_in, paused, activity, busy, (
        target,
        kind,
    ), wrapup_until, reserved, idle_at in itertools.product(
        (False, True),
        (False, True),
        list(AgentActivity),
        (False, True),
        TARGETS,
        WRAPUP_ENDS,
        (None, uuid.uuid4()),
        CALL_ENDS,
    ):
        state = AgentState(
            agent_id=1,
            target=target,
            target_kind=kind,
            paused=paused,
            activity=activity,
            reserved_call_id=reserved,
            reserved_by_node="node-a" if reserved else None,
            wrapup_until=wrapup_until,
            last_call_end=NOW - timedelta(minutes=3),
            calls_taken=7,
            unanswered_streak=2,
            device_busy=busy,
            device_idle_at=idle_at,
        )
        combos.append((logged_in, state))
    return combos


STATES = _states()


class FakeSession:
    """Answers the one query `agent_presences` makes with prepared rows: (id, number, name,
    state, logged in, hold seconds)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    async def execute(self, _query: Any) -> list[tuple[Any, ...]]:
        return self.rows


def _rows() -> list[tuple[Any, ...]]:
    return [
        (
            index + 1,
            f"{1000 + index}",
            f"Agent {index}",
            state,
            logged_in,
            HOLD_S if logged_in else None,
        )
        for index, (logged_in, state) in enumerate(STATES)
    ]


def _check_record(record: dict[str, str]) -> None:
    assert set(record) == RECORD_KEYS
    assert record["presence"] in EXPOSED
    text = json.dumps(record)
    for secret in SECRETS:
        assert secret not in text
    words = json.dumps({k: v for k, v in record.items() if k != "presence"}).lower()
    for word in FORBIDDEN_WORDS:
        assert word not in words, word
        assert word not in set(record)


def _internal(logged_in: bool, state: AgentState | None) -> InternalState:
    if state is None:
        return internal_state(logged_in=logged_in, paused=False, activity="idle")
    return internal_state(
        logged_in=logged_in,
        paused=state.paused,
        activity=AgentActivity(state.activity).value,
        device_busy=state.device_busy,
    )


def test_the_walk_covers_every_internal_state() -> None:
    assert {_internal(li, st) for li, st in STATES} == set(InternalState)


@pytest.mark.parametrize("internal", list(InternalState))
def test_every_internal_state_maps_to_one_of_three(internal: InternalState) -> None:
    seen = set()
    for logged_in, state in STATES:
        if state is None or _internal(logged_in, state) is not internal:
            continue
        exposed = exposed_presence(
            logged_in=logged_in,
            paused=state.paused,
            activity=AgentActivity(state.activity).value,
            device_busy=state.device_busy,
        )
        seen.add(exposed.value)
    assert seen and seen <= EXPOSED


async def test_service_records_for_every_state_carry_three_fields_only() -> None:
    session = FakeSession(_rows())
    records = await presence.read_presence(session, NOW)  # type: ignore[arg-type]
    assert len(records) == len(STATES)
    for record in records:
        _check_record(record)
    assert {r["presence"] for r in records} == EXPOSED
    snapshot = await presence.presence_snapshot(session, NOW)  # type: ignore[arg-type]
    assert set(snapshot) == {"presence"} and set(snapshot["presence"]) == {"agents"}
    for record in snapshot["presence"]["agents"]:
        _check_record(record)


async def test_absences_are_indistinguishable_in_the_service_output() -> None:
    """Logged out, paused and wrap-up (on an idle phone) give the same record."""

    def state(**fields: Any) -> AgentState:
        base: dict[str, Any] = {
            "agent_id": 1,
            "paused": False,
            "activity": AgentActivity.IDLE,
            "device_busy": False,
            "target": "PJSIP/1001",
            "target_kind": TargetKind.DEVICE,
        }
        return AgentState(**{**base, **fields})

    variants = [
        (False, state(target=None, target_kind=None)),
        (True, state(paused=True)),
        (True, state(activity=AgentActivity.WRAPUP, wrapup_until=NOW + timedelta(seconds=60))),
        (True, state(paused=True, target="01701234567", target_kind=TargetKind.EXTERNAL)),
        # right after a private call on the desk phone: like a wrap-up (issue 13, finding 8)
        (True, state(device_idle_at=NOW - timedelta(seconds=3))),
    ]
    outputs = set()
    for logged_in, st in variants:
        session = FakeSession([(1, "1001", "Anna", st, logged_in, HOLD_S)])
        (record,) = await presence.read_presence(session, NOW)  # type: ignore[arg-type]
        outputs.add(json.dumps(record, sort_keys=True))
    assert outputs == {json.dumps({"agent": "1001", "name": "Anna", "presence": "unavailable"})}


async def test_every_kind_of_call_looks_the_same() -> None:
    """A hotline call, a private call on the desk phone, a call the app placed to the
    mobile: all 'on_call', identical records (no direction, peer or device kind)."""
    devices = AgentDevices(1, "PJSIP/1001", frozenset({"01701234567"}), False)
    private_call = compute_busy(devices, {"PJSIP/1001": "INUSE"}, frozenset())
    mobile_call = compute_busy(devices, {"PJSIP/1001": "NOT_INUSE"}, frozenset({"01701234567"}))
    ringing = compute_busy(devices, {"PJSIP/1001": "RINGING"}, frozenset())
    on_hold = compute_busy(devices, {"PJSIP/1001": "ONHOLD"}, frozenset())
    assert private_call and mobile_call and ringing and on_hold
    assert not compute_busy(devices, {"PJSIP/1001": "NOT_INUSE"}, frozenset({"0301"}))
    assert not compute_busy(devices, {"PJSIP/1001": "UNAVAILABLE"}, frozenset())
    states = [
        AgentState(agent_id=1, paused=False, activity=AgentActivity.ON_CALL, device_busy=False),
        AgentState(agent_id=1, paused=False, activity=AgentActivity.IDLE, device_busy=True),
        AgentState(agent_id=1, paused=True, activity=AgentActivity.IDLE, device_busy=True),
    ]
    outputs = set()
    for logged_in in (False, True):
        for st in states:
            session = FakeSession([(1, "1001", "Anna", st, logged_in, HOLD_S)])
            (record,) = await presence.read_presence(session, NOW)  # type: ignore[arg-type]
            outputs.add(json.dumps(record, sort_keys=True))
    assert outputs == {json.dumps({"agent": "1001", "name": "Anna", "presence": "on_call"})}


def test_presence_values_are_exactly_three() -> None:
    assert {p.value for p in Presence} == EXPOSED
