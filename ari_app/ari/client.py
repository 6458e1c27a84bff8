"""Typed async ARI REST client on aiohttp: the only code that talks HTTP to Asterisk.

One `ClientSession` per client, basic auth in a header (so credentials never sit in
a URL, a log line or an exception). Methods map one-to-one to the ARI resources the
app uses and return frozen dataclasses from `models`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from ari_app.ari.errors import AriConnectionError, AriError, AriNotFound, error_for_status
from ari_app.ari.models import (
    Application,
    AsteriskInfo,
    Bridge,
    Channel,
    DeviceState,
    LiveRecording,
    MalformedError,
    Playback,
    StoredRecording,
    as_mapping,
    req_str,
)
from ari_app.ari.stream import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_HEARTBEAT,
    ConnectHook,
    EventHandler,
    EventStream,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT", "AriClient", "normalise_base_url"]

DEFAULT_TIMEOUT = 5.0
# Asterisk serves at most 100 HTTP sessions at once by default (http.conf `sessionlimit`)
# and closes the connections beyond unanswered ("Server disconnected"), whoever opened
# them: a client that opened connections freely under a burst would fail its own requests
# and everyone else's. Requests beyond this many connections wait for a free one (within
# their timeout). The event WebSocket holds one of them.
DEFAULT_MAX_CONNECTIONS = 32

ParamValue = str | int | float | bool | Sequence[str] | None
_T = TypeVar("_T")
_Expect = Literal["json", "bytes", "none"]


def normalise_base_url(base_url: str) -> str:
    """`http://host:8088`, `http://host:8088/`, `http://host:8088/ari/` -> `http://host:8088/ari`."""
    url = URL(base_url.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("ARI URL must be http(s)://host[:port][/ari]")
    if url.user is not None or url.password is not None:
        # Never echo the URL here: it holds a secret.
        raise ValueError("ARI URL must not contain credentials; pass user and password")
    path = url.path.rstrip("/")
    if not path.endswith("/ari"):
        path += "/ari"
    return str(url.with_path(path).with_query(None).with_fragment(None))


def _seg(value: str) -> str:
    """Quote one path segment (ids and names may contain `/`, `:` or spaces)."""
    if not value:
        raise ValueError("empty ARI resource id")
    return quote(value, safe="")


def _param(value: ParamValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    # A list: ARI takes allowMultiple parameters comma-separated in one value.
    return ",".join(value)


def _params(**kwargs: ParamValue) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in kwargs.items():
        text = _param(value)
        if text is not None:
            out[key] = text
    return out


def _decode_json(raw: bytes, method: str, shown: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        message = f"{method} {shown}: invalid JSON in answer"
        raise AriError(message, method=method, path=shown) from exc


def _unexpected(method: str, path: str, exc: MalformedError) -> AriError:
    shown = f"/{path}"
    return AriError(f"{method} {shown}: unexpected answer: {exc}", method=method, path=shown)


def _list_of(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise MalformedError(f"{what}: expected a list, got {type(data).__name__}")
    return data


class AriClient:
    """Async ARI client; use as `async with AriClient(...) as ari:` or call `close()`."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not app:
            raise ValueError("ARI application name must not be empty")
        if timeout <= 0:
            raise ValueError("ARI timeout must be positive")
        if max_connections < 2:
            raise ValueError("ARI needs at least 2 connections (the event WebSocket holds one)")
        self._base = normalise_base_url(base_url)
        # Built by hand: aiohttp.BasicAuth is deprecated in recent aiohttp releases.
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._app = app
        self._timeout = timeout
        self._max_connections = max_connections
        self._session = session
        self._own_session = session is None
        self._closed = False
        self.requests = 0  # REST requests sent (a metric; the benchmark counts them per call)

    def __repr__(self) -> str:
        # Deliberately without the auth header: it encodes the password.
        return f"AriClient({self._base!r}, app={self._app!r})"

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def app(self) -> str:
        return self._app

    @property
    def base_url(self) -> str:
        """Normalised REST base, e.g. `http://127.0.0.1:8088/ari` (no credentials)."""
        return self._base

    @property
    def events_url(self) -> str:
        """`ws(s)://host:port/ari/events` (no query, no credentials)."""
        url = URL(self._base)
        scheme = "wss" if url.scheme == "https" else "ws"
        return str(url.with_scheme(scheme).with_path(url.path + "/events"))

    @property
    def timeout(self) -> float:
        return self._timeout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it (idempotent)."""
        self._closed = True
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def drop_connections(self) -> None:
        """Forget the pooled keep-alive connections (the event stream lost its link, so they
        may be just as dead: reusing one would hang until the timeout). Requests in flight
        fail with AriConnectionError; the next request opens a fresh connection."""
        session = self._session
        if self._own_session and session is not None and not self._closed:
            self._session = None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise AriConnectionError("ARI client is closed")
        if self._session is None:
            # No session-wide timeout: REST calls pass their own, the event
            # WebSocket must live for days.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
            )
        return self._session

    # --- transport -----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        expect: _Expect = "json",
        timeout: float | None = None,
    ) -> Any:
        """One REST call; raises an `AriError` subclass for every failure."""
        self.requests += 1  # exported as hotline_ari_requests_total (the benchmark's count)
        session = self._get_session()
        url = URL(f"{self._base}/{path}", encoded=True)
        shown = f"/{path}"  # for messages: no host, no query, no credentials
        limit = timeout if timeout is not None else self._timeout
        started = time.monotonic()
        try:
            async with session.request(
                method,
                url,
                params=params or None,
                json=json_body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as resp:
                if resp.status >= 400:
                    text = await resp.text(errors="replace")
                    log.debug("ARI %s %s -> %d %s", method, shown, resp.status, text[:200])
                    raise error_for_status(resp.status, text, method=method, path=shown)
                if expect == "bytes":
                    body: Any = await resp.read()
                elif expect == "none" or resp.status == 204:
                    body = None
                else:
                    body = _decode_json(await resp.read(), method, shown)
        except AriError:
            raise
        except TimeoutError as exc:
            raise AriConnectionError(
                f"{method} {shown}: no answer within {limit:g}s", method=method, path=shown
            ) from exc
        except aiohttp.ClientError as exc:
            raise AriConnectionError(
                f"{method} {shown}: {type(exc).__name__}: {exc}", method=method, path=shown
            ) from exc
        log.debug(
            "ARI %s %s -> %d (%.1f ms)",
            method,
            shown,
            resp.status,
            (time.monotonic() - started) * 1000,
        )
        return body

    async def _get_model(
        self, factory: Callable[[Any], _T], method: str, path: str, **kwargs: Any
    ) -> _T:
        """A REST call whose answer is one ARI object, parsed by `factory`."""
        data = await self._request(method, path, **kwargs)
        try:
            return factory(data)
        except MalformedError as exc:
            raise _unexpected(method, path, exc) from exc

    async def _get_list(self, factory: Callable[[Any], _T], path: str) -> list[_T]:
        data = await self._request("GET", path)
        try:
            return [factory(item) for item in _list_of(data, path)]
        except MalformedError as exc:
            raise _unexpected("GET", path, exc) from exc

    async def _ignore_missing(self, call: Awaitable[Any], missing_ok: bool) -> bool:
        try:
            await call
        except AriNotFound:
            if not missing_ok:
                raise
            return False
        return True

    # --- channels ------------------------------------------------------------------------

    async def originate(
        self,
        endpoint: str,
        *,
        app: str | None = None,
        app_args: str | Sequence[str] | None = None,
        extension: str | None = None,
        context: str | None = None,
        priority: int | None = None,
        label: str | None = None,
        caller_id: str | None = None,
        timeout: int | None = None,
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        originator: str | None = None,
        formats: str | Sequence[str] | None = None,
    ) -> Channel:
        """`POST /channels`. Without a dialplan target the channel enters our Stasis app.

        `timeout` is the ring timeout in seconds; `app_args` are joined with commas
        (so an argument must not contain one).
        """
        if app is None and extension is None and context is None and label is None:
            app = self._app
        params = _params(
            endpoint=endpoint,
            app=app,
            appArgs=app_args,
            extension=extension,
            context=context,
            priority=priority,
            label=label,
            callerId=caller_id,
            timeout=timeout,
            channelId=channel_id,
            otherChannelId=other_channel_id,
            originator=originator,
            formats=formats,
        )
        body = {"variables": dict(variables)} if variables else None
        return await self._get_model(
            Channel.from_json, "POST", "channels", params=params, json_body=body
        )

    async def list_channels(self) -> list[Channel]:
        return await self._get_list(Channel.from_json, "channels")

    async def answer(self, channel_id: str) -> None:
        await self._request("POST", f"channels/{_seg(channel_id)}/answer", expect="none")

    async def hangup(
        self, channel_id: str, reason: str | None = None, *, missing_ok: bool = True
    ) -> bool:
        """`DELETE /channels/{id}`; False if the channel was already gone (and missing_ok)."""
        call = self._request(
            "DELETE", f"channels/{_seg(channel_id)}", params=_params(reason=reason), expect="none"
        )
        return await self._ignore_missing(call, missing_ok)

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        *,
        lang: str | None = None,
        playback_id: str | None = None,
        offset_ms: int | None = None,
        skip_ms: int | None = None,
    ) -> Playback:
        """Play one media URI or a list of them in a row (`sound:`, `recording:`, `tone:`...)."""
        params = _params(
            media=media, lang=lang, playbackId=playback_id, offsetms=offset_ms, skipms=skip_ms
        )
        return await self._get_model(
            Playback.from_json, "POST", f"channels/{_seg(channel_id)}/play", params=params
        )

    async def record(
        self,
        channel_id: str,
        name: str,
        *,
        format: str = "wav",
        max_duration_seconds: int | None = None,
        max_silence_seconds: int | None = None,
        if_exists: str | None = None,
        beep: bool | None = None,
        terminate_on: str | None = None,
    ) -> LiveRecording:
        """Record a channel. `if_exists`: fail|overwrite|append; `terminate_on`: none|any|*|#."""
        params = _params(
            name=name,
            format=format,
            maxDurationSeconds=max_duration_seconds,
            maxSilenceSeconds=max_silence_seconds,
            ifExists=if_exists,
            beep=beep,
            terminateOn=terminate_on,
        )
        return await self._get_model(
            LiveRecording.from_json, "POST", f"channels/{_seg(channel_id)}/record", params=params
        )

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel (the caller hears ringback)."""
        await self._request("POST", f"channels/{_seg(channel_id)}/ring", expect="none")

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        await self._request(
            "POST",
            f"channels/{_seg(channel_id)}/variable",
            params=_params(variable=variable, value=value),
            expect="none",
        )

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self._request(
            "POST",
            f"channels/{_seg(channel_id)}/moh",
            params=_params(mohClass=moh_class),
            expect="none",
        )

    async def stop_moh(self, channel_id: str) -> None:
        await self._request("DELETE", f"channels/{_seg(channel_id)}/moh", expect="none")

    async def continue_in_dialplan(
        self,
        channel_id: str,
        *,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        """Leave Stasis and continue in the dialplan (next priority when no target given)."""
        params = _params(context=context, extension=extension, priority=priority, label=label)
        await self._request(
            "POST", f"channels/{_seg(channel_id)}/continue", params=params, expect="none"
        )

    # --- bridges -------------------------------------------------------------------------

    async def create_bridge(
        self,
        type: str | Sequence[str] = "mixing",
        *,
        bridge_id: str | None = None,
        name: str | None = None,
    ) -> Bridge:
        """`POST /bridges`; `type` e.g. "mixing", "holding" or ["mixing", "dtmf_events"]."""
        params = _params(type=type, bridgeId=bridge_id, name=name)
        return await self._get_model(Bridge.from_json, "POST", "bridges", params=params)

    async def list_bridges(self) -> list[Bridge]:
        return await self._get_list(Bridge.from_json, "bridges")

    async def add_channel(
        self,
        bridge_id: str,
        channel: str | Sequence[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
    ) -> None:
        """Add one channel id or several to a bridge (role e.g. "announcer" in holding)."""
        params = _params(channel=channel, role=role, absorbDTMF=absorb_dtmf, mute=mute)
        await self._request(
            "POST", f"bridges/{_seg(bridge_id)}/addChannel", params=params, expect="none"
        )

    async def destroy_bridge(self, bridge_id: str, *, missing_ok: bool = True) -> bool:
        """`DELETE /bridges/{id}`; False if the bridge was already gone (and missing_ok)."""
        call = self._request("DELETE", f"bridges/{_seg(bridge_id)}", expect="none")
        return await self._ignore_missing(call, missing_ok)

    # --- playbacks -----------------------------------------------------------------------

    async def stop_playback(self, playback_id: str, *, missing_ok: bool = True) -> bool:
        """Stop a playback; False if it had already finished (and missing_ok)."""
        call = self._request("DELETE", f"playbacks/{_seg(playback_id)}", expect="none")
        return await self._ignore_missing(call, missing_ok)

    # --- recordings ----------------------------------------------------------------------

    async def list_stored_recordings(self) -> list[StoredRecording]:
        return await self._get_list(StoredRecording.from_json, "recordings/stored")

    async def get_stored_recording(self, name: str) -> StoredRecording:
        return await self._get_model(
            StoredRecording.from_json, "GET", f"recordings/stored/{_seg(name)}"
        )

    async def get_stored_recording_file(
        self,
        name: str,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """The recording's audio file (Asterisk 14+); `timeout` overrides the default."""
        data: bytes = await self._request(
            "GET", f"recordings/stored/{_seg(name)}/file", expect="bytes", timeout=timeout
        )
        return data

    async def delete_stored_recording(self, name: str, *, missing_ok: bool = False) -> bool:
        call = self._request("DELETE", f"recordings/stored/{_seg(name)}", expect="none")
        return await self._ignore_missing(call, missing_ok)

    # --- applications --------------------------------------------------------------------

    async def get_application(self, name: str | None = None) -> Application:
        return await self._get_model(
            Application.from_json, "GET", f"applications/{_seg(name or self._app)}"
        )

    async def subscribe(
        self, event_source: str | Sequence[str], *, app: str | None = None
    ) -> Application:
        """Subscribe the app to e.g. `deviceState:PJSIP/1001` or `endpoint:PJSIP`."""
        return await self._get_model(
            Application.from_json,
            "POST",
            f"applications/{_seg(app or self._app)}/subscription",
            params=_params(eventSource=event_source),
        )

    async def set_event_filter(
        self, allowed: Iterable[str], *, app: str | None = None
    ) -> Application:
        """Asterisk sends the app only events of these types (Asterisk 16.3 and later;
        an empty list: every event)."""
        return await self._get_model(
            Application.from_json,
            "PUT",
            f"applications/{_seg(app or self._app)}/eventFilter",
            json_body={"allowed": [{"type": t} for t in sorted(allowed)]},
        )

    async def unsubscribe(
        self, event_source: str | Sequence[str], *, app: str | None = None
    ) -> Application:
        return await self._get_model(
            Application.from_json,
            "DELETE",
            f"applications/{_seg(app or self._app)}/subscription",
            params=_params(eventSource=event_source),
        )

    # --- device states, sounds, asterisk --------------------------------------------------

    async def get_device_state(self, name: str) -> DeviceState:
        return await self._get_model(DeviceState.from_json, "GET", f"deviceStates/{_seg(name)}")

    async def list_sounds(self, lang: str) -> set[str]:
        """Names of the sounds Asterisk has in language `lang` (`GET /sounds?lang=`)."""
        data = await self._request("GET", "sounds", params=_params(lang=lang))
        try:
            return {req_str(as_mapping(item, "sound"), "id") for item in _list_of(data, "sounds")}
        except MalformedError as exc:
            raise _unexpected("GET", "sounds", exc) from exc

    async def set_global(self, variable: str, value: str) -> None:
        """`POST /asterisk/variable`: a dialplan global (GLOBAL(variable))."""
        await self._request(
            "POST",
            "asterisk/variable",
            params=_params(variable=variable, value=value),
            expect="none",
        )

    async def asterisk_info(self) -> AsteriskInfo:
        return await self._get_model(AsteriskInfo.from_json, "GET", "asterisk/info")

    # --- events --------------------------------------------------------------------------

    def events(
        self,
        on_event: EventHandler | None = None,
        *,
        on_connect: ConnectHook | None = None,
        on_disconnect: ConnectHook | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ) -> EventStream:
        """An `EventStream` for this client's app; start it with `run()` or `start()`."""
        return EventStream(
            self,
            on_event,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            heartbeat=heartbeat,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )

    async def connect_events(self, *, heartbeat: float | None) -> aiohttp.ClientWebSocketResponse:
        """Open the event WebSocket for our app (used by `EventStream`)."""
        session = self._get_session()
        try:
            async with asyncio.timeout(self._timeout):
                return await session.ws_connect(
                    self.events_url,
                    params={"app": self._app},
                    headers=self._headers,
                    heartbeat=heartbeat,
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status >= 400:
                # exc.message is aiohttp's, not Asterisk's: leave it out.
                raise error_for_status(exc.status, "", method="GET", path="/events") from exc
            raise AriConnectionError(
                f"GET /events: WebSocket handshake failed: HTTP {exc.status}",
                status=exc.status,
                method="GET",
                path="/events",
            ) from exc
        except TimeoutError as exc:
            raise AriConnectionError(
                f"GET /events: no answer within {self._timeout:g}s", method="GET", path="/events"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AriConnectionError(
                f"GET /events: {type(exc).__name__}: {exc}", method="GET", path="/events"
            ) from exc
