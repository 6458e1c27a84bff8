"""Frozen dataclasses for the ARI resources the app uses, parsed from ARI JSON.

Parsing is strict about the fields a caller relies on (ids, names, states) and
lenient about optional ones (defaults), so a newer Asterisk adding fields never
breaks us. A required field missing or of the wrong type raises `MalformedError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Application",
    "AsteriskInfo",
    "Bridge",
    "CallerId",
    "Channel",
    "DeviceState",
    "DialplanLocation",
    "Endpoint",
    "LiveRecording",
    "MalformedError",
    "Playback",
    "StoredRecording",
    "target_bridge_id",
    "target_channel_id",
]


class MalformedError(ValueError):
    """ARI JSON lacks a required field or has one of the wrong type."""


# --- small typed accessors over untrusted JSON -------------------------------------------


def as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def req_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise MalformedError(f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def opt_str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise MalformedError(f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def opt_str_or_none(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedError(f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def _to_int(value: Any, key: str) -> int:
    # bool is an int subclass; a JSON true is never a valid number here.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Some Asterisk versions send numbers as strings (e.g. dialplan priority).
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MalformedError(f"field {key!r}: expected an integer, got {type(value).__name__}")


def req_int(data: Mapping[str, Any], key: str) -> int:
    return _to_int(data.get(key), key)


def opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if value is None else _to_int(value, key)


def opt_bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MalformedError(f"field {key!r}: expected a boolean, got {type(value).__name__}")
    return value


def str_tuple(data: Mapping[str, Any], key: str, *, required: bool = False) -> tuple[str, ...]:
    value = data.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise MalformedError(f"field {key!r}: expected a list of strings")
    return tuple(value)


def target_channel_id(target_uri: str) -> str | None:
    """`channel:<id>` -> `<id>`; None for any other target (bridge, endpoint...)."""
    kind, sep, ident = target_uri.partition(":")
    return ident if sep and kind == "channel" and ident else None


def target_bridge_id(target_uri: str) -> str | None:
    kind, sep, ident = target_uri.partition(":")
    return ident if sep and kind == "bridge" and ident else None


# --- resources ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerId:
    number: str = ""
    name: str = ""

    @classmethod
    def from_json(cls, data: Any, what: str = "caller") -> CallerId:
        if data is None:
            return cls()
        m = as_mapping(data, what)
        return cls(number=opt_str(m, "number"), name=opt_str(m, "name"))


@dataclass(frozen=True, slots=True)
class DialplanLocation:
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""

    @classmethod
    def from_json(cls, data: Any) -> DialplanLocation:
        if data is None:
            return cls()
        m = as_mapping(data, "dialplan")
        return cls(
            context=opt_str(m, "context"),
            exten=opt_str(m, "exten"),
            priority=opt_int(m, "priority") or 0,
            app_name=opt_str(m, "app_name"),
            app_data=opt_str(m, "app_data"),
        )


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str
    caller: CallerId = CallerId()
    connected: CallerId = CallerId()
    dialplan: DialplanLocation = DialplanLocation()
    creationtime: str = ""
    language: str = ""
    accountcode: str = ""

    @classmethod
    def from_json(cls, data: Any) -> Channel:
        m = as_mapping(data, "channel")
        return cls(
            id=req_str(m, "id"),
            name=req_str(m, "name"),
            state=req_str(m, "state"),
            caller=CallerId.from_json(m.get("caller"), "caller"),
            connected=CallerId.from_json(m.get("connected"), "connected"),
            dialplan=DialplanLocation.from_json(m.get("dialplan")),
            creationtime=opt_str(m, "creationtime"),
            language=opt_str(m, "language"),
            accountcode=opt_str(m, "accountcode"),
        )


@dataclass(frozen=True, slots=True)
class Bridge:
    id: str
    technology: str = ""
    bridge_type: str = ""
    channels: tuple[str, ...] = ()
    name: str = ""
    bridge_class: str = ""
    creator: str = ""

    @classmethod
    def from_json(cls, data: Any) -> Bridge:
        m = as_mapping(data, "bridge")
        return cls(
            id=req_str(m, "id"),
            technology=opt_str(m, "technology"),
            bridge_type=opt_str(m, "bridge_type"),
            channels=str_tuple(m, "channels"),
            name=opt_str(m, "name"),
            bridge_class=opt_str(m, "bridge_class"),
            creator=opt_str(m, "creator"),
        )


@dataclass(frozen=True, slots=True)
class Playback:
    id: str
    media_uri: str
    target_uri: str
    state: str
    language: str = ""
    next_media_uri: str | None = None

    @property
    def channel_id(self) -> str | None:
        return target_channel_id(self.target_uri)

    @property
    def bridge_id(self) -> str | None:
        return target_bridge_id(self.target_uri)

    @classmethod
    def from_json(cls, data: Any) -> Playback:
        m = as_mapping(data, "playback")
        return cls(
            id=req_str(m, "id"),
            media_uri=opt_str(m, "media_uri"),
            target_uri=req_str(m, "target_uri"),
            state=req_str(m, "state"),
            language=opt_str(m, "language"),
            next_media_uri=opt_str_or_none(m, "next_media_uri"),
        )


@dataclass(frozen=True, slots=True)
class LiveRecording:
    name: str
    format: str
    state: str
    target_uri: str
    duration: int | None = None
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None

    @property
    def channel_id(self) -> str | None:
        return target_channel_id(self.target_uri)

    @property
    def bridge_id(self) -> str | None:
        return target_bridge_id(self.target_uri)

    @classmethod
    def from_json(cls, data: Any) -> LiveRecording:
        m = as_mapping(data, "recording")
        return cls(
            name=req_str(m, "name"),
            format=opt_str(m, "format"),
            state=req_str(m, "state"),
            target_uri=opt_str(m, "target_uri"),
            duration=opt_int(m, "duration"),
            talking_duration=opt_int(m, "talking_duration"),
            silence_duration=opt_int(m, "silence_duration"),
            cause=opt_str_or_none(m, "cause"),
        )


@dataclass(frozen=True, slots=True)
class StoredRecording:
    name: str
    format: str

    @classmethod
    def from_json(cls, data: Any) -> StoredRecording:
        m = as_mapping(data, "stored recording")
        return cls(name=req_str(m, "name"), format=opt_str(m, "format"))


@dataclass(frozen=True, slots=True)
class DeviceState:
    name: str
    state: str

    @classmethod
    def from_json(cls, data: Any) -> DeviceState:
        m = as_mapping(data, "device_state")
        return cls(name=req_str(m, "name"), state=req_str(m, "state"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    technology: str
    resource: str
    state: str = ""
    channel_ids: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """`PJSIP/1001`: the form used in dial strings and device names."""
        return f"{self.technology}/{self.resource}"

    @classmethod
    def from_json(cls, data: Any) -> Endpoint:
        m = as_mapping(data, "endpoint")
        return cls(
            technology=req_str(m, "technology"),
            resource=req_str(m, "resource"),
            state=opt_str(m, "state"),
            channel_ids=str_tuple(m, "channel_ids"),
        )


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    channel_ids: tuple[str, ...] = ()
    bridge_ids: tuple[str, ...] = ()
    device_names: tuple[str, ...] = ()
    endpoint_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Application:
        m = as_mapping(data, "application")
        return cls(
            name=req_str(m, "name"),
            channel_ids=str_tuple(m, "channel_ids"),
            bridge_ids=str_tuple(m, "bridge_ids"),
            device_names=str_tuple(m, "device_names"),
            endpoint_ids=str_tuple(m, "endpoint_ids"),
        )


@dataclass(frozen=True, slots=True)
class AsteriskInfo:
    """The parts of `GET /asterisk/info` the app shows or logs."""

    version: str = ""
    entity_id: str = ""
    system_name: str = ""
    default_language: str = ""
    startup_time: str = ""
    last_reload_time: str = ""

    @classmethod
    def from_json(cls, data: Any) -> AsteriskInfo:
        m = as_mapping(data, "asterisk info")
        system = as_mapping(m.get("system") or {}, "system")
        config = as_mapping(m.get("config") or {}, "config")
        status = as_mapping(m.get("status") or {}, "status")
        return cls(
            version=opt_str(system, "version"),
            entity_id=opt_str(system, "entity_id"),
            system_name=opt_str(config, "name"),
            default_language=opt_str(config, "default_language"),
            startup_time=opt_str(status, "startup_time"),
            last_reload_time=opt_str(status, "last_reload_time"),
        )
