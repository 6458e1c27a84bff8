"""Typed ARI events: each WebSocket message is parsed once into a frozen dataclass.

`parse_event()` never raises: unknown event types give None (logged at debug),
malformed known events give None (logged at warning). Every event names the
channels it concerns in `channel_ids`, so a dispatcher can route it to a call task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ari_app.ari.models import (
    Bridge,
    Channel,
    DeviceState,
    Endpoint,
    LiveRecording,
    MalformedError,
    Playback,
    as_mapping,
    opt_bool,
    opt_int,
    opt_str,
    req_int,
    req_str,
    str_tuple,
)

log = logging.getLogger(__name__)

__all__ = [
    "ApplicationReplaced",
    "BridgeCreated",
    "BridgeDestroyed",
    "ChannelConnectedLine",
    "ChannelCreated",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelEvent",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "ChannelVarset",
    "DeviceStateChanged",
    "Dial",
    "EndpointStateChange",
    "Event",
    "PlaybackContinuing",
    "PlaybackEvent",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingEvent",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "StasisEnd",
    "StasisStart",
    "parse_event",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: str
    application: str
    timestamp: str = ""
    asterisk_id: str = ""

    @property
    def channel_ids(self) -> tuple[str, ...]:
        """Ids of the channels this event concerns (empty when none)."""
        return ()

    @property
    def bridge_id(self) -> str | None:
        """Id of the bridge this event concerns, if any."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(Event):
    """Base of the events about exactly one channel."""

    channel: Channel

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisStart(ChannelEvent):
    args: tuple[str, ...] = ()
    replace_channel: Channel | None = None

    @property
    def channel_ids(self) -> tuple[str, ...]:
        if self.replace_channel is None:
            return (self.channel.id,)
        return (self.channel.id, self.replace_channel.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisEnd(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCreated(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStateChange(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConnectedLine(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDtmfReceived(ChannelEvent):
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHangupRequest(ChannelEvent):
    cause: int | None = None
    soft: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDestroyed(ChannelEvent):
    cause: int
    cause_txt: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnteredBridge(ChannelEvent):
    bridge: Bridge

    @property
    def bridge_id(self) -> str | None:
        return self.bridge.id


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelLeftBridge(ChannelEvent):
    bridge: Bridge

    @property
    def bridge_id(self) -> str | None:
        return self.bridge.id


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelVarset(Event):
    variable: str
    value: str
    channel: Channel | None = None  # None: a global variable

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return () if self.channel is None else (self.channel.id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeCreated(Event):
    bridge: Bridge

    @property
    def bridge_id(self) -> str | None:
        return self.bridge.id


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroyed(Event):
    bridge: Bridge

    @property
    def bridge_id(self) -> str | None:
        return self.bridge.id


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackEvent(Event):
    playback: Playback

    @property
    def channel_ids(self) -> tuple[str, ...]:
        cid = self.playback.channel_id
        return () if cid is None else (cid,)

    @property
    def bridge_id(self) -> str | None:
        return self.playback.bridge_id


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackStarted(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackContinuing(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished(PlaybackEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingEvent(Event):
    recording: LiveRecording

    @property
    def channel_ids(self) -> tuple[str, ...]:
        cid = self.recording.channel_id
        return () if cid is None else (cid,)

    @property
    def bridge_id(self) -> str | None:
        return self.recording.bridge_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(RecordingEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFinished(RecordingEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFailed(RecordingEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial(Event):
    peer: Channel
    dialstatus: str
    caller: Channel | None = None
    dialstring: str = ""
    forward: str = ""

    @property
    def channel_ids(self) -> tuple[str, ...]:
        """The peer first (the leg being dialled), then the caller if any."""
        if self.caller is None:
            return (self.peer.id,)
        return (self.peer.id, self.caller.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateChanged(Event):
    device_state: DeviceState


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationReplaced(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointStateChange(Event):
    """About a device, not a call: `channel_ids` stays empty; see `endpoint.channel_ids`."""

    endpoint: Endpoint


# --- parsing ----------------------------------------------------------------------------------


def _base(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": req_str(m, "type"),
        "application": req_str(m, "application"),
        "timestamp": opt_str(m, "timestamp"),
        "asterisk_id": opt_str(m, "asterisk_id"),
    }


def _channel(m: Mapping[str, Any], key: str = "channel") -> Channel:
    if key not in m:
        raise MalformedError(f"field {key!r} missing")
    return Channel.from_json(m[key])


def _opt_channel(m: Mapping[str, Any], key: str) -> Channel | None:
    return None if m.get(key) is None else Channel.from_json(m[key])


def _bridge(m: Mapping[str, Any]) -> Bridge:
    if "bridge" not in m:
        raise MalformedError("field 'bridge' missing")
    return Bridge.from_json(m["bridge"])


def _simple_channel_event(cls: type[ChannelEvent]) -> Callable[[Mapping[str, Any]], Event]:
    def parse(m: Mapping[str, Any]) -> Event:
        return cls(**_base(m), channel=_channel(m))

    return parse


def _playback_event(cls: type[PlaybackEvent]) -> Callable[[Mapping[str, Any]], Event]:
    def parse(m: Mapping[str, Any]) -> Event:
        return cls(**_base(m), playback=Playback.from_json(m.get("playback")))

    return parse


def _recording_event(cls: type[RecordingEvent]) -> Callable[[Mapping[str, Any]], Event]:
    def parse(m: Mapping[str, Any]) -> Event:
        return cls(**_base(m), recording=LiveRecording.from_json(m.get("recording")))

    return parse


def _stasis_start(m: Mapping[str, Any]) -> Event:
    return StasisStart(
        **_base(m),
        channel=_channel(m),
        args=str_tuple(m, "args"),
        replace_channel=_opt_channel(m, "replace_channel"),
    )


def _dtmf(m: Mapping[str, Any]) -> Event:
    return ChannelDtmfReceived(
        **_base(m),
        channel=_channel(m),
        digit=req_str(m, "digit"),
        duration_ms=opt_int(m, "duration_ms") or 0,
    )


def _hangup_request(m: Mapping[str, Any]) -> Event:
    return ChannelHangupRequest(
        **_base(m), channel=_channel(m), cause=opt_int(m, "cause"), soft=opt_bool(m, "soft")
    )


def _destroyed(m: Mapping[str, Any]) -> Event:
    return ChannelDestroyed(
        **_base(m),
        channel=_channel(m),
        cause=req_int(m, "cause"),
        cause_txt=opt_str(m, "cause_txt"),
    )


def _entered_bridge(m: Mapping[str, Any]) -> Event:
    return ChannelEnteredBridge(**_base(m), channel=_channel(m), bridge=_bridge(m))


def _left_bridge(m: Mapping[str, Any]) -> Event:
    return ChannelLeftBridge(**_base(m), channel=_channel(m), bridge=_bridge(m))


def _varset(m: Mapping[str, Any]) -> Event:
    return ChannelVarset(
        **_base(m),
        variable=req_str(m, "variable"),
        value=opt_str(m, "value"),
        channel=_opt_channel(m, "channel"),
    )


def _bridge_created(m: Mapping[str, Any]) -> Event:
    return BridgeCreated(**_base(m), bridge=_bridge(m))


def _bridge_destroyed(m: Mapping[str, Any]) -> Event:
    return BridgeDestroyed(**_base(m), bridge=_bridge(m))


def _dial(m: Mapping[str, Any]) -> Event:
    return Dial(
        **_base(m),
        peer=_channel(m, "peer"),
        caller=_opt_channel(m, "caller"),
        dialstatus=req_str(m, "dialstatus"),
        dialstring=opt_str(m, "dialstring"),
        forward=opt_str(m, "forward"),
    )


def _device_state_changed(m: Mapping[str, Any]) -> Event:
    return DeviceStateChanged(**_base(m), device_state=DeviceState.from_json(m.get("device_state")))


def _application_replaced(m: Mapping[str, Any]) -> Event:
    return ApplicationReplaced(**_base(m))


def _endpoint_state_change(m: Mapping[str, Any]) -> Event:
    return EndpointStateChange(**_base(m), endpoint=Endpoint.from_json(m.get("endpoint")))


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "StasisStart": _stasis_start,
    "StasisEnd": _simple_channel_event(StasisEnd),
    "ChannelCreated": _simple_channel_event(ChannelCreated),
    "ChannelStateChange": _simple_channel_event(ChannelStateChange),
    "ChannelConnectedLine": _simple_channel_event(ChannelConnectedLine),
    "ChannelDtmfReceived": _dtmf,
    "ChannelHangupRequest": _hangup_request,
    "ChannelDestroyed": _destroyed,
    "ChannelEnteredBridge": _entered_bridge,
    "ChannelLeftBridge": _left_bridge,
    "ChannelVarset": _varset,
    "BridgeCreated": _bridge_created,
    "BridgeDestroyed": _bridge_destroyed,
    "PlaybackStarted": _playback_event(PlaybackStarted),
    "PlaybackContinuing": _playback_event(PlaybackContinuing),
    "PlaybackFinished": _playback_event(PlaybackFinished),
    "RecordingStarted": _recording_event(RecordingStarted),
    "RecordingFinished": _recording_event(RecordingFinished),
    "RecordingFailed": _recording_event(RecordingFailed),
    "Dial": _dial,
    "DeviceStateChanged": _device_state_changed,
    "ApplicationReplaced": _application_replaced,
    "EndpointStateChange": _endpoint_state_change,
}

KNOWN_EVENT_TYPES: frozenset[str] = frozenset(_PARSERS)


def parse_event(data: Any) -> Event | None:
    """Parse one decoded ARI event; None for unknown or malformed ones (never raises)."""
    try:
        m = as_mapping(data, "event")
    except MalformedError:
        log.warning("ARI event dropped: not a JSON object (%s)", type(data).__name__)
        return None
    event_type = m.get("type")
    if not isinstance(event_type, str):
        log.warning("ARI event dropped: no 'type' field")
        return None
    parser = _PARSERS.get(event_type)
    if parser is None:
        log.debug("ARI event ignored: unknown type %s", event_type)
        return None
    try:
        return parser(m)
    except (MalformedError, TypeError, ValueError, KeyError, AttributeError) as exc:
        log.warning("ARI event dropped: malformed %s: %s", event_type, exc)
        return None
