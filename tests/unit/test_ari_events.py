"""Event parsing (every type, malformed and unknown ones) and the EventStream against the
fake ARI: dispatch, reconnect with backoff, on_connect after every connect, heartbeat."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_ari import FakeAri, bridge_json, channel_json, event_json
from hypothesis import given, settings
from hypothesis import strategies as st

from ari_app.ari import (
    ApplicationReplaced,
    AriClient,
    BridgeCreated,
    BridgeDestroyed,
    ChannelConnectedLine,
    ChannelCreated,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    ChannelVarset,
    DeviceStateChanged,
    Dial,
    EndpointStateChange,
    Event,
    EventStream,
    PlaybackContinuing,
    PlaybackFinished,
    PlaybackStarted,
    RecordingFailed,
    RecordingFinished,
    RecordingStarted,
    StasisEnd,
    StasisStart,
    parse_event,
)
from ari_app.ari.events import KNOWN_EVENT_TYPES

CH = channel_json("1700000000.1", caller_number="0301234", caller_name="Citizen", exten="100")
PEER = channel_json("1700000000.2", name="PJSIP/1001-00000002", state="Ringing")
BRIDGE = bridge_json("call-1", channels=["1700000000.1"])


def playback(target: str = "channel:1700000000.1", state: str = "playing") -> dict[str, Any]:
    return {
        "id": "pb-1",
        "media_uri": "sound:hello-world",
        "target_uri": target,
        "language": "en",
        "state": state,
    }


def recording(target: str = "channel:1700000000.1", **extra: Any) -> dict[str, Any]:
    return {"name": "vm/1", "format": "wav", "state": "recording", "target_uri": target, **extra}


# --- parsing: every type ------------------------------------------------------------------------


def test_base_fields() -> None:
    event = parse_event(event_json("StasisEnd", channel=CH))
    assert isinstance(event, StasisEnd)
    assert event.type == "StasisEnd"
    assert event.application == "hotline"
    assert event.timestamp.endswith("+0000")
    assert event.asterisk_id == "02:fc:00:00:00:01"
    assert event.channel_ids == ("1700000000.1",)
    assert event.bridge_id is None
    # asterisk_id and timestamp are optional (older Asterisk, hand-made events)
    bare = parse_event({"type": "StasisEnd", "application": "hotline", "channel": CH})
    assert bare is not None and bare.asterisk_id == "" and bare.timestamp == ""


def test_stasis_start() -> None:
    event = parse_event(event_json("StasisStart", channel=CH, args=["inbound", "100"]))
    assert isinstance(event, StasisStart)
    assert event.args == ("inbound", "100")
    assert event.replace_channel is None
    assert event.channel.caller.number == "0301234"
    assert event.channel.caller.name == "Citizen"
    assert event.channel.dialplan.exten == "100"
    assert event.channel_ids == ("1700000000.1",)

    replaced = parse_event(event_json("StasisStart", channel=CH, args=[], replace_channel=PEER))
    assert isinstance(replaced, StasisStart)
    assert replaced.replace_channel is not None
    assert replaced.channel_ids == ("1700000000.1", "1700000000.2")


@pytest.mark.parametrize(
    "cls", [StasisEnd, ChannelCreated, ChannelStateChange, ChannelConnectedLine]
)
def test_plain_channel_events(cls: type[Event]) -> None:
    event = parse_event(event_json(cls.__name__, channel=CH))
    assert type(event) is cls
    assert event.channel_ids == ("1700000000.1",)


def test_dtmf() -> None:
    event = parse_event(event_json("ChannelDtmfReceived", channel=CH, digit="#", duration_ms=120))
    assert isinstance(event, ChannelDtmfReceived)
    assert (event.digit, event.duration_ms) == ("#", 120)


def test_hangup_request_and_destroyed() -> None:
    req = parse_event(event_json("ChannelHangupRequest", channel=CH, cause=16, soft=True))
    assert isinstance(req, ChannelHangupRequest)
    assert (req.cause, req.soft) == (16, True)
    bare = parse_event(event_json("ChannelHangupRequest", channel=CH))
    assert isinstance(bare, ChannelHangupRequest) and bare.cause is None and not bare.soft
    gone = parse_event(
        event_json("ChannelDestroyed", channel=CH, cause=16, cause_txt="Normal Clearing")
    )
    assert isinstance(gone, ChannelDestroyed)
    assert (gone.cause, gone.cause_txt) == (16, "Normal Clearing")
    assert gone.channel_ids == ("1700000000.1",)


@pytest.mark.parametrize("cls", [ChannelEnteredBridge, ChannelLeftBridge])
def test_bridge_membership(cls: type[ChannelEnteredBridge | ChannelLeftBridge]) -> None:
    event = parse_event(event_json(cls.__name__, bridge=BRIDGE, channel=CH))
    assert type(event) is cls
    assert event.bridge.channels == ("1700000000.1",)
    assert event.bridge.technology == "simple_bridge"
    assert event.channel_ids == ("1700000000.1",)
    assert event.bridge_id == "call-1"


def test_bridge_lifecycle_events_concern_no_channel() -> None:
    for cls in (BridgeCreated, BridgeDestroyed):
        event = parse_event(event_json(cls.__name__, bridge=BRIDGE))
        assert type(event) is cls
        assert event.channel_ids == ()
        assert event.bridge_id == "call-1"


def test_varset() -> None:
    event = parse_event(event_json("ChannelVarset", channel=CH, variable="X", value="1"))
    assert isinstance(event, ChannelVarset)
    assert (event.variable, event.value, event.channel_ids) == ("X", "1", ("1700000000.1",))
    global_var = parse_event(event_json("ChannelVarset", variable="G", value="2"))
    assert isinstance(global_var, ChannelVarset)
    assert global_var.channel is None and global_var.channel_ids == ()


@pytest.mark.parametrize("cls", [PlaybackStarted, PlaybackContinuing, PlaybackFinished])
def test_playback_events(cls: type[PlaybackStarted]) -> None:
    event = parse_event(event_json(cls.__name__, playback=playback()))
    assert type(event) is cls
    assert event.playback.id == "pb-1"
    assert event.playback.media_uri == "sound:hello-world"
    assert event.playback.target_uri == "channel:1700000000.1"
    assert event.playback.state == "playing"
    assert event.channel_ids == ("1700000000.1",)
    assert event.bridge_id is None

    on_bridge = parse_event(event_json(cls.__name__, playback=playback("bridge:call-1")))
    assert on_bridge is not None
    assert on_bridge.channel_ids == ()
    assert on_bridge.bridge_id == "call-1"


@pytest.mark.parametrize("cls", [RecordingStarted, RecordingFinished, RecordingFailed])
def test_recording_events(cls: type[RecordingStarted]) -> None:
    event = parse_event(
        event_json(cls.__name__, recording=recording(duration=7, cause="Disk full"))
    )
    assert type(event) is cls
    rec = event.recording
    assert (rec.name, rec.format, rec.state, rec.duration, rec.cause) == (
        "vm/1",
        "wav",
        "recording",
        7,
        "Disk full",
    )
    assert event.channel_ids == ("1700000000.1",)
    started = parse_event(event_json(cls.__name__, recording=recording("bridge:call-1")))
    assert started is not None and started.channel_ids == () and started.bridge_id == "call-1"
    assert started.recording.duration is None and started.recording.cause is None


def test_dial() -> None:
    event = parse_event(
        event_json("Dial", caller=CH, peer=PEER, dialstatus="ANSWER", dialstring="1001")
    )
    assert isinstance(event, Dial)
    assert event.caller is not None and event.caller.id == "1700000000.1"
    assert (event.peer.id, event.dialstatus, event.dialstring) == (
        "1700000000.2",
        "ANSWER",
        "1001",
    )
    assert event.channel_ids == ("1700000000.2", "1700000000.1")
    no_caller = parse_event(event_json("Dial", peer=PEER, dialstatus=""))
    assert isinstance(no_caller, Dial) and no_caller.caller is None
    assert no_caller.channel_ids == ("1700000000.2",)


def test_device_and_endpoint_events() -> None:
    dev = parse_event(
        event_json("DeviceStateChanged", device_state={"name": "PJSIP/1001", "state": "INUSE"})
    )
    assert isinstance(dev, DeviceStateChanged)
    assert (dev.device_state.name, dev.device_state.state) == ("PJSIP/1001", "INUSE")
    assert dev.channel_ids == ()
    ep = parse_event(
        event_json(
            "EndpointStateChange",
            endpoint={
                "technology": "PJSIP",
                "resource": "1001",
                "state": "offline",
                "channel_ids": ["c1"],
            },
        )
    )
    assert isinstance(ep, EndpointStateChange)
    assert (ep.endpoint.name, ep.endpoint.state, ep.endpoint.channel_ids) == (
        "PJSIP/1001",
        "offline",
        ("c1",),
    )
    assert ep.channel_ids == ()
    replaced = parse_event(event_json("ApplicationReplaced"))
    assert isinstance(replaced, ApplicationReplaced) and replaced.channel_ids == ()


def test_events_are_frozen() -> None:
    event = parse_event(event_json("StasisEnd", channel=CH))
    assert event is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "x"  # type: ignore[misc]
    assert isinstance(event, StasisEnd)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.channel.id = "x"  # type: ignore[misc]


def test_every_known_type_has_a_class() -> None:
    import ari_app.ari as ari

    assert all(hasattr(ari, name) for name in KNOWN_EVENT_TYPES)


# --- parsing: unknown and malformed -------------------------------------------------------------


def test_unknown_type_is_dropped_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ari_app.ari.events")
    assert parse_event(event_json("ChannelTalkingStarted", channel=CH)) is None
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "ChannelTalkingStarted" in record.getMessage()


@pytest.mark.parametrize(
    "data",
    [
        event_json("StasisStart", args=["x"]),  # no channel
        event_json("StasisStart", channel=CH, args="inbound"),  # args not a list
        event_json("StasisStart", channel=CH, args=[1, 2]),
        event_json("StasisStart", channel={**CH, "id": 17}, args=[]),
        event_json("StasisStart", channel="1700000000.1", args=[]),
        event_json("StasisEnd", channel={"name": "x", "state": "Up"}),
        event_json("StasisEnd", channel={**CH, "caller": "0301234"}),
        event_json("ChannelDtmfReceived", channel=CH),  # no digit
        event_json("ChannelDtmfReceived", channel=CH, digit="1", duration_ms="long"),
        event_json("ChannelDestroyed", channel=CH, cause_txt="x"),  # no cause
        event_json("ChannelHangupRequest", channel=CH, soft="yes"),
        event_json("ChannelEnteredBridge", channel=CH),  # no bridge
        event_json("ChannelLeftBridge", bridge={"technology": "x"}, channel=CH),
        event_json("ChannelVarset", channel=CH, value="1"),  # no variable
        event_json("BridgeDestroyed", bridge=None),
        event_json("PlaybackStarted", playback={"id": "p", "state": "playing"}),
        event_json("PlaybackFinished"),
        event_json("RecordingFinished", recording={**recording(), "duration": "n/a"}),
        event_json("Dial", caller=CH, dialstatus="ANSWER"),  # no peer
        event_json("Dial", peer=PEER),  # no dialstatus
        event_json("DeviceStateChanged", device_state={"name": "PJSIP/1001"}),
        event_json("EndpointStateChange", endpoint={"technology": "PJSIP"}),
        {"type": "StasisEnd", "channel": CH},  # no application
        {"type": "StasisEnd", "application": ["hotline"], "channel": CH},
        {"application": "hotline"},  # no type
        {"type": 5, "application": "hotline"},
        ["not", "an", "object"],
        None,
        "StasisStart",
    ],
)
def test_malformed_events_are_dropped_at_warning(
    data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ari_app.ari.events")
    assert parse_event(data) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_keys = st.sampled_from(
    [
        "channel",
        "bridge",
        "args",
        "digit",
        "cause",
        "playback",
        "recording",
        "peer",
        "caller",
        "variable",
        "value",
        "device_state",
        "endpoint",
        "application",
        "timestamp",
        "id",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(sorted(KNOWN_EVENT_TYPES)),
    fields=st.dictionaries(_keys, _json | st.just(CH) | st.just(BRIDGE), max_size=6),
)
def test_parse_event_never_raises(event_type: str, fields: dict[str, Any]) -> None:
    result = parse_event({"type": event_type, **fields})
    assert result is None or isinstance(result, Event)


# --- the stream ---------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as server:
        yield server


@pytest.fixture
async def ari(fake: FakeAri) -> AsyncIterator[AriClient]:
    async with fake.client(timeout=2.0) as client:
        yield client


class Recorder:
    """Collects events; `wait(n)` waits (bounded) until n have arrived."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    async def wait(self, count: int, timeout: float = 5.0) -> list[Event]:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: len(self.events) >= count)
        return self.events


@pytest.fixture
async def running() -> AsyncIterator[list[EventStream]]:
    """Streams appended here are closed at teardown, also when a test fails."""
    streams: list[EventStream] = []
    yield streams
    for stream in streams:
        await stream.close()


async def test_events_reach_sync_and_async_handlers(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    recorder = Recorder()
    seen_sync: list[str] = []
    stream = ari.events(recorder)
    stream.add_handler(lambda e: seen_sync.append(e.type))
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    assert stream.connected
    assert fake.last_request("GET", "/events").query == {"app": "hotline"}

    assert await fake.send_event(event_json("StasisStart", channel=CH, args=["inbound"])) == 1
    await fake.send_event(event_json("ChannelDtmfReceived", channel=CH, digit="5"))
    events = await recorder.wait(2)
    assert [type(e) for e in events] == [StasisStart, ChannelDtmfReceived]
    assert seen_sync == ["StasisStart", "ChannelDtmfReceived"]
    assert stream.events_received == 2


async def test_bad_messages_and_failing_handlers_do_not_kill_the_stream(
    fake: FakeAri, ari: AriClient, running: list[EventStream], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    calls = 0

    def explode(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("handler bug")

    stream = ari.events(explode)
    stream.add_handler(recorder)
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    await fake.send_event("this is not json")
    await fake.send_event(event_json("SomethingNew"))
    await fake.send_event(event_json("StasisStart", args=[]))  # malformed: no channel
    await fake.send_event(event_json("StasisEnd", channel=CH))
    events = await recorder.wait(1)
    assert [e.type for e in events] == ["StasisEnd"]
    assert calls == 1
    assert stream.connected and stream.connects == 1
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


async def test_reconnect_keeps_handlers_and_calls_on_connect_again(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    recorder = Recorder()
    connects: list[int] = []
    disconnects: list[int] = []

    async def on_connect() -> None:
        # A reconciliation hook may use REST while events wait.
        connects.append(len(await ari.list_channels()))

    stream = ari.events(
        recorder,
        on_connect=on_connect,
        on_disconnect=lambda: disconnects.append(1),
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    assert connects == [0] and stream.reconnects == 0

    await fake.send_event(event_json("StasisStart", channel=CH, args=["inbound"]))
    await recorder.wait(1)

    fake.add_channel("c-live")
    await fake.drop_websockets()
    await fake.wait_ws_connects(2)
    await stream.wait_connected(5)
    assert stream.reconnects == 1
    assert connects == [0, 1]  # on_connect ran again, after the reconnect
    assert disconnects == [1]

    await fake.send_event(event_json("StasisEnd", channel=CH))
    events = await recorder.wait(2)
    assert [e.type for e in events] == ["StasisStart", "StasisEnd"]


async def test_on_connect_runs_before_events_of_that_connection(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    order: list[str] = []
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def on_connect() -> None:
        order.append("connect-start")
        entered.set()
        await gate.wait()
        order.append("connect-end")

    recorder = Recorder()

    async def on_event(event: Event) -> None:
        order.append(event.type)
        await recorder(event)

    stream = ari.events(on_event, on_connect=on_connect)
    running.append(stream)
    stream.start()
    await asyncio.wait_for(entered.wait(), 5)
    assert not stream.connected  # not before the hook finished
    await fake.send_event(event_json("StasisEnd", channel=CH))
    gate.set()
    await stream.wait_connected(5)
    await recorder.wait(1)
    assert order == ["connect-start", "connect-end", "StasisEnd"]


async def test_failing_on_connect_is_logged_and_the_stream_goes_on(
    fake: FakeAri, ari: AriClient, running: list[EventStream], caplog: pytest.LogCaptureFixture
) -> None:
    def on_connect() -> None:
        raise RuntimeError("reconcile failed")

    recorder = Recorder()
    stream = ari.events(recorder, on_connect=on_connect)
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    await fake.send_event(event_json("StasisEnd", channel=CH))
    await recorder.wait(1)
    assert any("reconcile failed" in (r.exc_text or "") for r in caplog.records)


async def test_backoff_grows_is_capped_and_resets_after_a_connect(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    stream = ari.events(lambda e: None, backoff_initial=0.01, backoff_max=0.04)
    delays: list[float] = []
    real_sleep = stream._sleep

    async def recording_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(delay)

    stream._sleep = recording_sleep  # type: ignore[method-assign]
    fake.fail("GET", "/events", 503, "not yet", times=5)
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    assert fake.ws_attempts == 6
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert stream.reconnects == 0

    await fake.drop_websockets()
    await fake.wait_ws_connects(2)
    await stream.wait_connected(5)
    assert delays[5:] == [0.01]  # reset by the successful connect
    assert stream.reconnects == 1


async def test_wait_connected_times_out_while_asterisk_is_down(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    fake.fail("GET", "/events", 503, "down")
    stream = ari.events(lambda e: None, backoff_initial=0.01, backoff_max=0.02)
    running.append(stream)
    stream.start()
    with pytest.raises(TimeoutError):
        await stream.wait_connected(0.3)
    assert not stream.connected
    assert stream.last_error is not None and "503" in stream.last_error
    fake.clear_injections()
    await stream.wait_connected(5)  # comes up by itself once Asterisk answers


async def test_heartbeat_detects_a_silent_server(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    heartbeat = 0.2
    fake.answer_pings = False
    stream = ari.events(lambda e: None, heartbeat=heartbeat, backoff_initial=0.01)
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    connected_at = time.monotonic()
    # The first connection gets pings but never answers: the client must notice alone.
    await fake.wait_for(lambda: fake.pings_received >= 1, timeout=5)
    fake.answer_pings = True
    await fake.wait_ws_connects(2, timeout=5)
    detected_after = time.monotonic() - connected_at
    # A ping after `heartbeat` of silence, then heartbeat/2 for the pong (+ scheduling slack).
    assert detected_after < heartbeat * 1.5 + 1.0
    assert stream.last_error is not None and "PONG" in stream.last_error
    await stream.wait_connected(5)


async def test_heartbeat_keeps_a_healthy_link(
    fake: FakeAri, ari: AriClient, running: list[EventStream]
) -> None:
    stream = ari.events(lambda e: None, heartbeat=0.1)
    running.append(stream)
    stream.start()
    await stream.wait_connected(5)
    await fake.wait_for(lambda: fake.pings_received >= 5, timeout=5)
    assert stream.connected
    assert stream.connects == 1 and fake.ws_connects == 1


async def test_close_stops_run_and_is_idempotent(fake: FakeAri, ari: AriClient) -> None:
    stream = ari.events(lambda e: None)
    task = stream.start()
    await stream.wait_connected(5)
    await stream.close()
    assert task.done() and task.exception() is None
    assert not stream.connected
    await stream.close()
    await fake.wait_for(lambda: fake.open_sockets == 0)
    await asyncio.wait_for(stream.run(), 1)  # closed is final: run() returns at once
    assert fake.ws_connects == 1


async def test_close_while_backing_off(fake: FakeAri, ari: AriClient) -> None:
    fake.fail("GET", "/events", 503, "down")
    stream = ari.events(lambda e: None, backoff_initial=5.0, backoff_max=5.0)
    task = stream.start()
    await fake.wait_for(lambda: fake.ws_attempts >= 1)
    started = time.monotonic()
    await stream.close()
    assert task.done()
    assert time.monotonic() - started < 2.0  # did not sit out the 5 s backoff


async def test_handler_may_close_the_stream(fake: FakeAri, ari: AriClient) -> None:
    stream: EventStream

    async def on_event(event: Event) -> None:
        await stream.close()

    stream = ari.events(on_event)
    task = stream.start()
    await stream.wait_connected(5)
    await fake.send_event(event_json("StasisEnd", channel=CH))
    await asyncio.wait_for(task, 5)
    assert not stream.connected


async def test_wrong_password_keeps_retrying_without_leaking(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fake.client(password="not-the-password") as client:
        stream = client.events(lambda e: None, backoff_initial=0.01, backoff_max=0.02)
        stream.start()
        try:
            await fake.wait_for(lambda: fake.ws_attempts >= 3)
            assert not stream.connected
            assert stream.last_error is not None and "401" in stream.last_error
        finally:
            await stream.close()
    for record in caplog.records:
        assert "not-the-password" not in record.getMessage()
