"""Malformed, unknown and unexpected ARI events through the whole receive path (WebSocket
text -> parse_event -> Dispatcher -> call task): nothing crashes, nothing is stuck, no flow
is started by an event that is not a well-formed StasisStart for a known flow.

(parse_event alone, every malformed field and a hypothesis fuzz, is in test_ari_events.py.)
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import pytest
from fake_ari import FakeAri, bridge_json, channel_json, event_json

from ari_app.ari.errors import AriConnectionError
from ari_app.ari.events import Event, StasisStart, parse_event
from ari_app.config import load_settings
from ari_app.dispatch import Dispatcher
from ari_app.flows.base import CallFlow, FlowContext, FlowEvent

SETTINGS = load_settings({"HOTLINE_DATABASE_URL": "postgresql://x@localhost/x"}, need_ari=False)
CALLER = "1700000000.1"


@dataclass
class RefusalAri:
    """What the dispatcher needs from ARI to refuse a call; can be told to fail."""

    commands: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        if self.fail:
            raise AriConnectionError("ARI down")
        self.commands.append(("set_variable", f"{channel_id} {variable}={value}"))

    async def continue_in_dialplan(self, channel_id: str, **_: Any) -> None:
        if self.fail:
            raise AriConnectionError("ARI down")
        self.commands.append(("continue", channel_id))

    async def hangup(self, channel_id: str, **_: Any) -> bool:
        if self.fail:
            raise AriConnectionError("ARI down")
        self.commands.append(("hangup", channel_id))
        return True


class Echo(enum.Enum):
    RUNNING = "running"


class RecordingFlow(CallFlow[Any]):
    """Records every event; ends on StasisEnd of its own channel; raises on demand."""

    name = "echo"
    initial = Echo.RUNNING
    instances: ClassVar[list[RecordingFlow]] = []

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        super().__init__(ctx, channel_id, args)
        self.seen: list[FlowEvent] = []
        self.cleaned_up = False
        RecordingFlow.instances.append(self)

    async def _handle(self, event: FlowEvent) -> None:
        self.seen.append(event)
        await super()._handle(event)

    async def on_ChannelDtmfReceived(self, event: Any) -> None:
        if event.digit == "X":
            raise RuntimeError("a bug in a flow handler")

    async def on_StasisEnd(self, event: Any) -> None:
        if event.channel.id == self.channel_id:
            self.finish()

    async def on_ChannelEnteredBridge(self, event: Any) -> None:
        # Claims a second channel, as flows do for agent legs.
        self.ctx.registry.claim("leg-1", self)

    async def cleanup(self) -> None:
        self.cleaned_up = True


@pytest.fixture
async def world() -> AsyncIterator[tuple[Dispatcher, RefusalAri]]:
    RecordingFlow.instances = []
    ari = RefusalAri()
    ctx = FlowContext(ari=cast(Any, ari), settings=SETTINGS, sessions=cast(Any, None))
    dispatcher = Dispatcher({"echo": RecordingFlow}, ctx)
    yield dispatcher, ari
    await dispatcher.shutdown(0.5)


def ev(event_type: str, **fields: Any) -> Event:
    parsed = parse_event(event_json(event_type, **fields))
    assert parsed is not None, (event_type, fields)
    return parsed


def start(dispatcher: Dispatcher, channel_id: str = CALLER, args: list[str] | None = None) -> None:
    dispatcher.on_event(
        ev("StasisStart", channel=channel_json(channel_id), args=["echo"] if args is None else args)
    )


async def settle(dispatcher: Dispatcher, timeout: float = 2.0) -> None:
    """Until every call task is idle (its inbox empty) or gone; bounded."""

    async def idle() -> None:
        while True:
            await asyncio.sleep(0.01)
            if all(f.inbox.empty() for f in RecordingFlow.instances if not f.finished):
                return

    await asyncio.wait_for(idle(), timeout)


async def test_events_for_unknown_channels_start_nothing(world: Any) -> None:
    dispatcher, ari = world
    for event in [
        ev("StasisEnd", channel=channel_json("nobody")),
        ev("ChannelDestroyed", channel=channel_json("nobody"), cause=16),
        ev("ChannelDtmfReceived", channel=channel_json("nobody"), digit="5"),
        ev("ChannelHangupRequest", channel=channel_json("nobody")),
        ev(
            "PlaybackFinished",
            playback={"id": "p", "media_uri": "x", "target_uri": "channel:nobody", "state": "done"},
        ),
        ev(
            "PlaybackFinished",
            playback={"id": "p", "media_uri": "x", "target_uri": "bridge:b", "state": "done"},
        ),
        ev("RecordingFinished", recording={"name": "r", "format": "wav", "state": "done"}),
        ev("Dial", peer=channel_json("nobody"), dialstatus="ANSWER"),
        ev("BridgeCreated", bridge=bridge_json("b1")),
        ev("ChannelVarset", variable="GLOBAL_X", value="1"),
        ev("ApplicationReplaced"),
        ev("DeviceStateChanged", device_state={"name": "PJSIP/1001", "state": "INUSE"}),
    ]:
        dispatcher.on_event(event)
    await asyncio.sleep(0)
    assert dispatcher.active_calls == 0 and not RecordingFlow.instances
    assert ari.commands == []


@pytest.mark.parametrize(
    "args",
    [[], [""], ["nonexistent"], ["ECHO"], ["echo\nforged log line"], ["x" * 10_000]],
    ids=["no-args", "empty", "unknown", "case", "newline", "huge"],
)
async def test_stasis_start_for_an_unknown_flow_goes_back_to_the_dialplan(
    world: Any, args: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher, ari = world
    caplog.set_level(logging.WARNING, logger="ari_app.dispatch")
    start(dispatcher, args=args)
    await _until(lambda: len(ari.commands) == 2)
    assert ari.commands == [
        ("set_variable", f"{CALLER} HOTLINE_FALLBACK=1"),
        ("continue", CALLER),
    ]
    assert not RecordingFlow.instances
    [record] = caplog.records
    # The flow name is logged with repr(): a caller-controlled value cannot forge log lines.
    assert "\n" not in record.getMessage()


@pytest.mark.parametrize("leg", ["agentleg", "forwardleg", "handoverleg", "escalationleg"])
async def test_a_leg_answered_after_its_call_ended_is_hung_up(world: Any, leg: str) -> None:
    """Never sent to the dialplan: it has none of its own, and the admin's default context
    must not run with an agent on the line."""
    dispatcher, ari = world
    start(dispatcher, channel_id="late-leg", args=[leg, "some-call"])
    await _until(lambda: ari.commands)
    assert ari.commands == [("hangup", "late-leg")]
    assert not RecordingFlow.instances


async def test_a_refusal_that_fails_is_logged_not_raised(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher, ari = world
    ari.fail = True
    start(dispatcher, args=["nonexistent"])
    await _until(lambda: dispatcher.active_calls == 0)
    assert any("could not return the channel" in r.getMessage() for r in caplog.records)


async def test_a_second_stasis_start_goes_to_the_owner_not_a_new_flow(world: Any) -> None:
    dispatcher, _ = world
    start(dispatcher)
    start(dispatcher)  # e.g. a channel that re-entered Stasis
    await settle(dispatcher)
    [flow] = RecordingFlow.instances
    assert [type(e).__name__ for e in flow.seen] == ["StasisStart", "StasisStart"]


async def test_an_event_naming_two_channels_of_one_flow_is_delivered_once(world: Any) -> None:
    dispatcher, _ = world
    start(dispatcher)
    dispatcher.on_event(
        ev("ChannelEnteredBridge", channel=channel_json(CALLER), bridge=bridge_json("b"))
    )
    await settle(dispatcher)
    dispatcher.on_event(
        ev("Dial", peer=channel_json("leg-1"), caller=channel_json(CALLER), dialstatus="RINGING")
    )
    await settle(dispatcher)
    [flow] = RecordingFlow.instances
    assert [type(e).__name__ for e in flow.seen] == ["StasisStart", "ChannelEnteredBridge", "Dial"]


async def test_a_failing_handler_ends_the_flow_cleanly_and_frees_its_channels(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher, _ = world
    start(dispatcher)
    dispatcher.on_event(
        ev("ChannelEnteredBridge", channel=channel_json(CALLER), bridge=bridge_json("b"))
    )
    dispatcher.on_event(ev("ChannelDtmfReceived", channel=channel_json(CALLER), digit="X"))
    await _until(lambda: dispatcher.active_calls == 0)
    [flow] = RecordingFlow.instances
    assert flow.cleaned_up
    assert any("failed in" in r.getMessage() for r in caplog.records)
    # Later events for its channels find no owner: dropped, no new flow, nothing stuck.
    dispatcher.on_event(ev("StasisEnd", channel=channel_json(CALLER)))
    dispatcher.on_event(ev("ChannelDestroyed", channel=channel_json("leg-1"), cause=16))
    await asyncio.sleep(0)
    assert len(RecordingFlow.instances) == 1 and dispatcher.active_calls == 0


async def test_a_dtmf_flood_is_absorbed(world: Any) -> None:
    dispatcher, _ = world
    start(dispatcher)
    digits = "0123456789*#ABCD"
    for i in range(20_000):
        dispatcher.on_event(
            ev("ChannelDtmfReceived", channel=channel_json(CALLER), digit=digits[i % len(digits)])
        )
    dispatcher.on_event(ev("StasisEnd", channel=channel_json(CALLER)))
    await _until(lambda: dispatcher.active_calls == 0, timeout=10)
    [flow] = RecordingFlow.instances
    assert len(flow.seen) == 20_002


async def test_shutdown_refuses_calls_that_arrive_meanwhile(world: Any) -> None:
    dispatcher, ari = world
    start(dispatcher)
    stopping = asyncio.create_task(dispatcher.shutdown(5))
    await asyncio.sleep(0)
    start(dispatcher, channel_id="late", args=["echo"])
    await _until(lambda: ("continue", "late") in ari.commands)
    assert len(RecordingFlow.instances) == 1
    dispatcher.on_event(ev("StasisEnd", channel=channel_json(CALLER)))
    await asyncio.wait_for(stopping, 3)
    assert dispatcher.active_calls == 0


# --- the whole receive path: WebSocket text in, dispatcher out --------------------------


GARBAGE = [
    "",
    "not json",
    "{",
    "[1, 2, 3]",
    "null",
    '"StasisStart"',
    json.dumps({"type": "StasisStart"}),
    json.dumps(event_json("StasisStart", channel={"id": None}, args=["echo"])),
    json.dumps(event_json("StasisStart", channel=channel_json("x"), args="echo")),
    json.dumps(event_json("ChannelTalkingStarted", channel=channel_json("x"))),
    json.dumps(event_json("ChannelDtmfReceived", channel=channel_json("x"))),
    json.dumps({"type": "StasisStart", "application": None, "channel": channel_json("x")}),
    "\x00\xff" * 100,
    "[" * 100_000 + "]" * 100_000,  # nesting deeper than the JSON parser's recursion limit
    json.dumps(event_json("StasisEnd", channel=channel_json("x" * 100_000))),
]


async def test_garbage_on_the_websocket_neither_kills_the_stream_nor_starts_calls(
    world: Any,
) -> None:
    dispatcher, _ = world
    async with FakeAri() as fake, fake.client(timeout=2.0) as client:
        stream = client.events(dispatcher.on_event)
        stream.start()
        try:
            await stream.wait_connected(5)
            for text in GARBAGE:
                await fake.send_event(text)
            await fake.send_event(
                event_json("StasisStart", channel=channel_json(CALLER), args=["echo"])
            )
            await _until(lambda: len(RecordingFlow.instances) == 1)
            assert stream.connected and stream.connects == 1
            await fake.send_event(event_json("StasisEnd", channel=channel_json(CALLER)))
            await _until(lambda: dispatcher.active_calls == 0)
        finally:
            await stream.close()
    [flow] = RecordingFlow.instances
    assert [type(e).__name__ for e in flow.seen] == ["StasisStart", "StasisEnd"]
    assert isinstance(flow.seen[0], StasisStart)


async def _until(check: Any, timeout: float = 3.0) -> None:
    async def loop() -> None:
        while True:
            if check():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)
