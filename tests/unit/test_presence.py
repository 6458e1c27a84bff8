import itertools
import json

import pytest

from ari_app.domain.presence import (
    ACTIVITIES,
    PRESENCE_LABELS,
    InternalState,
    Presence,
    device_state_busy,
    exposed_presence,
    internal_state,
    presence_record,
)

ALL_INPUTS = [
    {"logged_in": li, "paused": p, "activity": a, "device_busy": d}
    for li, p, a, d in itertools.product(
        (False, True), (False, True), sorted(ACTIVITIES), (False, True)
    )
]
FORBIDDEN = (
    "reason",
    "direction",
    "peer",
    "device",
    "external",
    "internal",
    "caller",
    "inbound",
    "outbound",
    "paused",
    "pause",
    "wrapup",
    "logged",
    "sick",
    "target",
    "number_called",
)


def test_exactly_three_presence_values() -> None:
    assert {p.value for p in Presence} == {"available", "on_call", "unavailable"}
    assert set(PRESENCE_LABELS) == set(Presence)
    assert PRESENCE_LABELS[Presence.UNAVAILABLE] == "not available"


def test_internal_states() -> None:
    assert {s.value for s in InternalState} == {
        "logged_out",
        "available",
        "ringing",
        "on_call",
        "wrapup",
        "paused",
    }


def test_activities_match_the_database_enum() -> None:
    assert {"idle", "ringing", "on_call", "wrapup"} == ACTIVITIES


@pytest.mark.parametrize("inputs", ALL_INPUTS, ids=lambda i: "-".join(map(str, i.values())))
def test_every_combination_maps_to_one_of_three_and_a_clean_record(
    inputs: dict[str, object],
) -> None:
    presence = exposed_presence(**inputs)  # type: ignore[arg-type]
    assert presence in set(Presence)
    record = presence_record("1001", "Anna Schmidt", presence)
    assert set(record) == {"agent", "name", "presence"}
    assert record["presence"] in {"available", "on_call", "unavailable"}
    text = json.dumps(record).lower()
    for word in FORBIDDEN:
        assert word not in text
    # The internal state is defined for every combination too.
    assert internal_state(**inputs) in set(InternalState)  # type: ignore[arg-type]


@pytest.mark.parametrize("inputs", ALL_INPUTS, ids=lambda i: "-".join(map(str, i.values())))
def test_rules(inputs: dict[str, object]) -> None:
    presence = exposed_presence(**inputs)  # type: ignore[arg-type]
    busy = inputs["device_busy"] or inputs["activity"] == "on_call"
    if busy:
        expected = Presence.ON_CALL  # any call, even logged out or paused
    elif not inputs["logged_in"] or inputs["paused"] or inputs["activity"] == "wrapup":
        expected = Presence.UNAVAILABLE
    elif inputs["activity"] == "ringing":
        expected = Presence.ON_CALL
    else:
        expected = Presence.AVAILABLE
    assert presence is expected


def test_only_logged_in_idle_unpaused_free_device_is_available() -> None:
    available = [
        i
        for i in ALL_INPUTS
        if exposed_presence(**i) is Presence.AVAILABLE  # type: ignore[arg-type]
    ]
    assert available == [
        {"logged_in": True, "paused": False, "activity": "idle", "device_busy": False}
    ]


def test_absence_kinds_are_indistinguishable() -> None:
    logged_out = exposed_presence(logged_in=False, paused=False, activity="idle", device_busy=False)
    paused = exposed_presence(logged_in=True, paused=True, activity="idle", device_busy=False)
    wrapup = exposed_presence(logged_in=True, paused=False, activity="wrapup", device_busy=False)
    assert logged_out is paused is wrapup is Presence.UNAVAILABLE
    records = {json.dumps(presence_record("1001", "Anna", p)) for p in (logged_out, paused, wrapup)}
    assert len(records) == 1


def test_private_call_while_logged_out_shows_on_call() -> None:
    p = exposed_presence(logged_in=False, paused=True, activity="idle", device_busy=True)
    assert p is Presence.ON_CALL


def test_ringing_shows_on_call() -> None:
    p = exposed_presence(logged_in=True, paused=False, activity="ringing", device_busy=False)
    assert p is Presence.ON_CALL


def test_activity_accepts_str_enum_values() -> None:
    import enum

    class Activity(enum.StrEnum):
        IDLE = "idle"

    p = exposed_presence(logged_in=True, paused=False, activity=Activity.IDLE, device_busy=False)
    assert p is Presence.AVAILABLE


def test_unknown_activity_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown agent activity"):
        exposed_presence(logged_in=True, paused=False, activity="sick", device_busy=False)
    with pytest.raises(ValueError):
        internal_state(logged_in=True, paused=False, activity="lunch")


@pytest.mark.parametrize(
    ("logged_in", "paused", "activity", "device_busy", "state"),
    [
        (False, False, "idle", False, InternalState.LOGGED_OUT),
        (False, True, "on_call", True, InternalState.LOGGED_OUT),
        (True, False, "idle", False, InternalState.AVAILABLE),
        (True, True, "idle", False, InternalState.PAUSED),
        (True, False, "ringing", False, InternalState.RINGING),
        (True, False, "on_call", False, InternalState.ON_CALL),
        (True, False, "idle", True, InternalState.ON_CALL),
        (True, True, "on_call", False, InternalState.ON_CALL),
        (True, False, "wrapup", False, InternalState.WRAPUP),
        (True, True, "wrapup", False, InternalState.WRAPUP),
    ],
)
def test_internal_state(
    logged_in: bool, paused: bool, activity: str, device_busy: bool, state: InternalState
) -> None:
    assert (
        internal_state(
            logged_in=logged_in, paused=paused, activity=activity, device_busy=device_busy
        )
        is state
    )


def test_record_shape_and_values() -> None:
    assert presence_record("1001", "Anna", Presence.ON_CALL) == {
        "agent": "1001",
        "name": "Anna",
        "presence": "on_call",
    }
    assert presence_record("1001", "Anna", "available")["presence"] == "available"
    assert type(presence_record("1", "A", Presence.ON_CALL)["presence"]) is str


def test_record_refuses_internal_states() -> None:
    for bad in ("paused", "wrapup", "logged_out", "ringing"):
        with pytest.raises(ValueError):
            presence_record("1001", "Anna", bad)


def test_busy_device_states() -> None:
    for state in ("INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "inuse"):
        assert device_state_busy(state), state
    for state in ("NOT_INUSE", "UNAVAILABLE", "UNKNOWN", "INVALID", ""):
        assert not device_state_busy(state), state
