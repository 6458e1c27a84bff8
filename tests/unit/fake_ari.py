"""An in-process fake ARI server (aiohttp.web on 127.0.0.1, random port) for unit tests.

It keeps a small in-memory model of channels, bridges, playbacks, recordings,
device states and subscriptions, records every request, lets a test inject
errors or make a call hang, and serves `/ari/events` so a test can push events,
drop the WebSocket or stop answering pings.

    async with FakeAri() as fake:
        async with fake.client() as ari:
            ...
            await fake.send_event(event_json("StasisStart", channel=channel_json("c1"),
                                             args=["inbound", "100"]))

Errors look like Asterisk's: JSON `{"message": ...}` with the status Asterisk uses.
React to requests (e.g. emit events) with `fake.on_request = async_callback`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from ari_app.ari import AriClient

__all__ = [
    "FakeAri",
    "RecordedRequest",
    "bridge_json",
    "channel_json",
    "event_json",
]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def channel_json(
    channel_id: str,
    *,
    name: str | None = None,
    state: str = "Up",
    caller_number: str = "",
    caller_name: str = "",
    connected_number: str = "",
    connected_name: str = "",
    context: str = "hotline-inbound",
    exten: str = "s",
    priority: int = 1,
) -> dict[str, Any]:
    """An ARI Channel object as Asterisk 16 sends it."""
    return {
        "id": channel_id,
        "name": name or f"PJSIP/{channel_id}-00000001",
        "state": state,
        "caller": {"name": caller_name, "number": caller_number},
        "connected": {"name": connected_name, "number": connected_number},
        "accountcode": "",
        "dialplan": {
            "context": context,
            "exten": exten,
            "priority": priority,
            "app_name": "Stasis",
            "app_data": "hotline",
        },
        "creationtime": _now(),
        "language": "en",
    }


def bridge_json(
    bridge_id: str,
    *,
    bridge_type: str = "mixing",
    channels: list[str] | None = None,
    name: str = "",
) -> dict[str, Any]:
    return {
        "id": bridge_id,
        "technology": "holding_bridge" if bridge_type == "holding" else "simple_bridge",
        "bridge_type": bridge_type,
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": name,
        "channels": list(channels or []),
        "video_mode": "talker",
    }


def event_json(event_type: str, *, application: str = "hotline", **fields: Any) -> dict[str, Any]:
    """An ARI event; `fields` are the event's own fields (channel=..., args=...)."""
    return {
        "type": event_type,
        "application": application,
        "timestamp": _now(),
        "asterisk_id": "02:fc:00:00:00:01",
        **fields,
    }


@dataclass
class RecordedRequest:
    method: str
    path: str  # below /ari, segments decoded: "/channels/c1/play"
    query: dict[str, str]
    body: Any  # decoded JSON body or None
    raw_path: str = ""  # as sent, still percent-encoded


@dataclass
class _Injected:
    method: str
    pattern: re.Pattern[str]
    status: int | None  # None: hang until the server closes
    body: Any
    times: int | None  # None: forever


class _AriHTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeAri:
    user: str = "hotline"
    password: str = "s3cr3t-pw"
    app: str = "hotline"

    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[str, dict[str, Any]] = field(default_factory=dict)
    playbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    live_recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored_recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    recording_files: dict[str, bytes] = field(default_factory=dict)
    device_states: dict[str, str] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)

    # WebSocket behaviour and counters
    answer_pings: bool = True
    ws_connects: int = 0
    ws_attempts: int = 0
    pings_received: int = 0

    on_request: Callable[[RecordedRequest], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self._server: TestServer | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        self._injected: list[_Injected] = []
        self._release = asyncio.Event()
        self._ids = itertools.count(1)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/ari/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        self._release.set()
        await self.drop_websockets()
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> FakeAri:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.port is not None, "not started"
        return self._server.port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` (no /ari: the client adds it)."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> AriClient:
        """An AriClient for this fake (kwargs override user/password/app/timeout...)."""
        params: dict[str, Any] = {"user": self.user, "password": self.password, "app": self.app}
        params.update(kwargs)
        return AriClient(
            self.base_url,
            params.pop("user"),
            params.pop("password"),
            params.pop("app"),
            **params,
        )

    # --- test controls ---------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        message: str = "injected failure",
        *,
        times: int | None = None,
        body: Any = None,
    ) -> None:
        """Answer `method path` (regex, full match, below /ari) with `status`.

        `body` (any JSON, or a str sent as is) replaces `{"message": message}`.
        """
        payload = body if body is not None else {"message": message}
        self._injected.append(_Injected(method.upper(), re.compile(path), status, payload, times))

    def respond(self, method: str, path: str, body: Any, *, status: int = 200) -> None:
        """Answer `method path` with a canned body (e.g. a malformed one) from now on."""
        self._injected.append(_Injected(method.upper(), re.compile(path), status, body, None))

    def hang(self, method: str, path: str) -> None:
        """Never answer `method path` (until close): for timeout tests."""
        self._injected.append(_Injected(method.upper(), re.compile(path), None, None, None))

    def clear_injections(self) -> None:
        self._injected.clear()

    def add_channel(self, channel_id: str, **kwargs: Any) -> dict[str, Any]:
        """Put a channel (in our Stasis app) into the fake's state."""
        channel = channel_json(channel_id, **kwargs)
        self.channels[channel_id] = channel
        return channel

    def find_requests(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests with this method and path (regex, full match)."""
        rx = re.compile(path)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    def last_request(self, method: str, path: str) -> RecordedRequest:
        found = self.find_requests(method, path)
        assert found, f"no {method} {path} among {[(r.method, r.path) for r in self.requests]}"
        return found[-1]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds; re-checked on every request/connect/ping."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_ws_connects(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.ws_connects >= count, timeout)

    async def wait_request(self, method: str, path: str, timeout: float = 5.0) -> RecordedRequest:
        await self.wait_for(lambda: bool(self.find_requests(method, path)), timeout)
        return self.last_request(method, path)

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    async def send_event(self, event: Mapping[str, Any] | str) -> int:
        """Send an event (a dict, or raw text) to every connected socket; returns how many."""
        text = event if isinstance(event, str) else json.dumps(event)
        sent = 0
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(text)
                sent += 1
        return sent

    async def drop_websockets(self, code: int = 1001) -> None:
        """Close every event socket from the server side (like an Asterisk restart)."""
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"fake ARI going away")

    # --- HTTP ------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except ValueError:
                return False
            return decoded == f"{self.user}:{self.password}"
        return request.query.get("api_key") == f"{self.user}:{self.password}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_tail = request.raw_path.split("?", 1)[0][len("/ari") :]
        segments = [unquote(s) for s in raw_tail.strip("/").split("/") if s]
        path = "/" + "/".join(segments)
        body: Any = None
        if request.can_read_body:
            text = await request.text()
            if text:
                try:
                    body = json.loads(text)
                except ValueError:
                    return _error(400, "Malformed JSON body")
        recorded = RecordedRequest(
            request.method, path, dict(request.query), body, raw_path=raw_tail
        )
        if segments == ["events"]:
            self.ws_attempts += 1
        self.requests.append(recorded)
        await self._notify()
        if not self._authorised(request):
            return _error(401, "Authentication required")
        injected = self._match_injection(request.method, path)
        if injected is not None:
            if injected.status is None:
                await self._release.wait()
                return _error(503, "fake ARI closing")
            if isinstance(injected.body, str):
                return web.Response(status=injected.status, text=injected.body)
            return web.json_response(injected.body, status=injected.status)
        if self.on_request is not None:
            await self.on_request(recorded)
        if segments == ["events"]:
            return await self._events(request)
        try:
            result = self._route(request.method, segments, dict(request.query), body)
        except _AriHTTPError as exc:
            return _error(exc.status, exc.message)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.json_response(result)

    def _match_injection(self, method: str, path: str) -> _Injected | None:
        for inj in self._injected:
            if inj.method == method and inj.pattern.fullmatch(path):
                if inj.times is not None:
                    inj.times -= 1
                    if inj.times <= 0:
                        self._injected.remove(inj)
                return inj
        return None

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("app"):
            return _error(400, "Missing param 'app'")
        # autoping off: pings are answered (or not) by hand below, and counted.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.ws_connects += 1
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    self.pings_received += 1
                    if self.answer_pings:
                        await ws.pong(msg.data)
                    await self._notify()
                elif msg.type == WSMsgType.CLOSE:
                    await ws.close()
        finally:
            self._sockets.discard(ws)
            await self._notify()
        return ws

    # --- the REST resources ------------------------------------------------------------------

    def _route(self, method: str, seg: list[str], q: dict[str, str], body: Any) -> Any:
        match (method, seg):
            case ("GET", ["asterisk", "info"]):
                return {
                    "system": {"version": "16.28.0~fake", "entity_id": "02:fc:00:00:00:01"},
                    "config": {"name": "fake", "default_language": "en"},
                    "status": {"startup_time": _now(), "last_reload_time": _now()},
                }
            case ("GET", ["channels"]):
                return list(self.channels.values())
            case ("POST", ["channels"]):
                return self._new_channel(q, body)
            case ("DELETE", ["channels", cid]):
                self._channel(cid)
                del self.channels[cid]
                return None
            case ("POST", ["channels", cid, "answer"]):
                self._channel(cid)["state"] = "Up"
                return None
            case ("POST", ["channels", cid, "play"]):
                self._channel(cid)
                return self._new_playback(f"channel:{cid}", q)
            case ("POST", ["channels", cid, "record"]):
                self._channel(cid)
                return self._new_recording(f"channel:{cid}", q)
            case ("POST" | "DELETE", ["channels", cid, "ring" | "moh" | "silence" | "hold"]):
                self._channel(cid)
                return None
            case ("POST", ["channels", cid, "variable"]):
                self._channel(cid)
                _need(q, "variable")
                return None
            case ("POST", ["channels", cid, "continue"]):
                self._channel(cid)
                return None
            case ("GET", ["bridges"]):
                return list(self.bridges.values())
            case ("POST", ["bridges"]):
                bid = q.get("bridgeId") or str(uuid.uuid4())
                types = q.get("type", "mixing").split(",")
                kind = "holding" if "holding" in types else "mixing"
                bridge = bridge_json(bid, bridge_type=kind, name=q.get("name", ""))
                self.bridges[bid] = bridge
                return bridge
            case ("DELETE", ["bridges", bid]):
                self._bridge(bid)
                del self.bridges[bid]
                return None
            case ("POST", ["bridges", bid, "addChannel"]):
                bridge = self._bridge(bid)
                for cid in _need(q, "channel").split(","):
                    if cid not in self.channels:
                        raise _AriHTTPError(400, "Channel not found")
                    if cid not in bridge["channels"]:
                        bridge["channels"].append(cid)
                return None
            case ("DELETE", ["playbacks", pid]):
                self._get(self.playbacks, pid, "Playback not found")
                del self.playbacks[pid]
                return None
            case ("GET", ["recordings", "stored"]):
                return list(self.stored_recordings.values())
            case ("GET", ["recordings", "stored", name]):
                return self._get(self.stored_recordings, name, "Recording not found")
            case ("GET", ["recordings", "stored", name, "file"]):
                self._get(self.stored_recordings, name, "Recording not found")
                return web.Response(
                    body=self.recording_files.get(name, b""), content_type="audio/wav"
                )
            case ("DELETE", ["recordings", "stored", name]):
                self._get(self.stored_recordings, name, "Recording not found")
                del self.stored_recordings[name]
                self.recording_files.pop(name, None)
                return None
            case ("GET", ["applications", name]):
                self._check_app(name)
                return self._application()
            case ("POST" | "DELETE", ["applications", name, "subscription"]):
                self._check_app(name)
                for source in _need(q, "eventSource").split(","):
                    kind, _, target = source.partition(":")
                    if kind not in ("channel", "bridge", "endpoint", "deviceState") or not target:
                        raise _AriHTTPError(400, "Invalid event source URI scheme")
                    if kind == "deviceState" and target not in self.device_states:
                        raise _AriHTTPError(422, "Event source does not exist")
                    if method == "POST":
                        self.subscriptions.add(source)
                    else:
                        self.subscriptions.discard(source)
                return self._application()
            case ("GET", ["deviceStates", name]):
                state = self._get(self.device_states, name, "Device state not found")
                return {"name": name, "state": state}
        raise _AriHTTPError(404, "Resource not found")

    def _get(self, table: Mapping[str, Any], key: str, message: str) -> Any:
        if key not in table:
            raise _AriHTTPError(404, message)
        return table[key]

    def _channel(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(self.channels, cid, "Channel not found")
        return result

    def _bridge(self, bid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(self.bridges, bid, "Bridge not found")
        return result

    def _check_app(self, name: str) -> None:
        if name != self.app:
            raise _AriHTTPError(404, "Application not found")

    def _application(self) -> dict[str, Any]:
        def sources(kind: str) -> list[str]:
            prefix = kind + ":"
            return sorted(s[len(prefix) :] for s in self.subscriptions if s.startswith(prefix))

        return {
            "name": self.app,
            "channel_ids": list(self.channels),
            "bridge_ids": list(self.bridges),
            "endpoint_ids": sources("endpoint"),
            "device_names": sources("deviceState"),
            "events_allowed": [],
            "events_disallowed": [],
        }

    def _new_channel(self, q: dict[str, str], body: Any) -> Any:
        endpoint = _need(q, "endpoint")
        if "app" not in q and "extension" not in q and "context" not in q:
            raise _AriHTTPError(400, "Application or extension must be specified")
        if body is not None and not isinstance(body, dict):
            raise _AriHTTPError(400, "Body must be an object")
        cid = q.get("channelId") or f"fake-{next(self._ids)}"
        if cid in self.channels:
            raise _AriHTTPError(409, "Channel with given unique ID already exists")
        number = ""
        name = ""
        if caller := q.get("callerId"):
            m = re.fullmatch(r'\s*"?([^"<]*)"?\s*<([^>]*)>\s*', caller)
            name, number = (m.group(1).strip(), m.group(2)) if m else ("", caller)
        channel = channel_json(
            cid,
            name=f"{endpoint}-{next(self._ids):08x}",
            state="Down",
            caller_number=number,
            caller_name=name,
        )
        self.channels[cid] = channel
        return channel

    def _new_playback(self, target: str, q: dict[str, str]) -> Any:
        media = _need(q, "media").split(",")
        pid = q.get("playbackId") or str(uuid.uuid4())
        if pid in self.playbacks:
            raise _AriHTTPError(409, "Playback with the same ID already exists")
        playback = {
            "id": pid,
            "media_uri": media[0],
            "target_uri": target,
            "language": q.get("lang", "en"),
            "state": "queued",
        }
        if len(media) > 1:
            playback["next_media_uri"] = media[1]
        self.playbacks[pid] = playback
        return web.json_response(playback, status=201)

    def _new_recording(self, target: str, q: dict[str, str]) -> Any:
        name = _need(q, "name")
        fmt = _need(q, "format")
        if name in self.live_recordings:
            raise _AriHTTPError(409, "Recording is already in progress")
        if name in self.stored_recordings and q.get("ifExists", "fail") == "fail":
            raise _AriHTTPError(422, "Recording already exists")
        recording = {"name": name, "format": fmt, "state": "queued", "target_uri": target}
        self.live_recordings[name] = recording
        return web.json_response(recording, status=201)


def _need(q: Mapping[str, str], name: str) -> str:
    value = q.get(name)
    if not value:
        raise _AriHTTPError(400, f"{name} parameter is required")
    return value


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
