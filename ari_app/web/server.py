"""The team panel server (aiohttp): the page, the JSON/SSE presence API, per-hotline
aggregates, /metrics and /healthz.

Privacy: every agent in every response comes from `presence_record` (agent, name,
presence); the aggregates are counts. Nothing here reads call direction, the other party,
a target or a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.config import Settings
from ari_app.domain import errors
from ari_app.domain.sounds import DEFAULT_LANGUAGE
from ari_app.services import reports
from ari_app.services.hotline_stats import hotline_stats, panel_snapshot
from ari_app.services.presence import (
    DEFAULT_TICK_S,
    HubClosed,
    PresenceHub,
    agent_presences,
    read_presence,
)
from ari_app.web.auth import PanelAccess, access_middleware, check_listen, client_key, is_loopback
from ari_app.web.i18n import PANEL_LANGUAGES, pick_language, render_page
from ari_app.web.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]
DbPing = Callable[[], Awaitable[bool]]

HEARTBEAT_S = 15.0  # SSE comment line: proxies keep the stream, dead clients are noticed
GONE_CHECK_S = 1.0
RETRY_MS = 1000  # EventSource reconnect delay after a server restart
MAX_STREAMS = 100
DB_TIMEOUT_S = 2.0

# Scripts and styles only from this server; no framing, no other origin at all.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
}
STATIC = {
    "/": ("panel.html", "text/html"),
    "/static/panel.js": ("panel.js", "text/javascript"),
    "/static/panel.css": ("panel.css", "text/css"),
}
PANEL_PAGE = "panel.html"


@dataclass
class PanelContext:
    sessions: Sessions
    hub: PresenceHub
    metrics: Metrics
    ari_connected: Callable[[], bool]
    db_ping: DbPing
    access: PanelAccess = field(default_factory=PanelAccess)
    streams: dict[str, int] = field(default_factory=dict)  # open event streams per client


CTX = web.AppKey("panel", PanelContext)
STATIC_KEY = web.AppKey("static", dict[str, bytes])
# The page rendered once per language (web/i18n.py), and the language for other browsers.
PAGES_KEY = web.AppKey("pages", dict[str, bytes])
PANEL_LANGUAGE_KEY = web.AppKey("panel_language", str)


def sessions_ping(sessions: Sessions) -> DbPing:
    """A DB ping for /healthz: SELECT 1 within DB_TIMEOUT_S."""

    async def ping() -> bool:
        async def query() -> None:
            async with sessions() as session:
                await session.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(query(), DB_TIMEOUT_S)
        except Exception as exc:
            log.warning("healthz: database unreachable: %s", exc)
            return False
        return True

    return ping


class PathAccessLogger(AbstractAccessLogger):
    """Access log without query strings, so a `?token=` never lands in a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %s %d %.3fs",
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


def _static(name: str) -> bytes:
    return (resources.files("ari_app.web") / "static" / name).read_bytes()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


# The web edge's one table of domain errors (DESIGN.md, convention 5): code -> HTTP status.
# Bodies are {"error": <message>, "code": <the error's stable code>}, as the CLI's --json.
HTTP_STATUS = {
    errors.NotFound.code: 404,
    errors.InvalidValue.code: 400,
    errors.Conflict.code: 409,
    errors.Refused.code: 403,
    errors.Unavailable.code: 503,
}


def _error(exc: errors.HotlineError, status: int | None = None) -> web.Response:
    """A domain error as the API answers it; `status` only where HTTP has a more precise
    one than the table's (429 for a limit per client)."""
    return _json(
        {"error": exc.message, "code": exc.code},
        status=status or HTTP_STATUS.get(exc.code, 500),
    )


def _db_error(exc: Exception) -> web.Response:
    log.warning("panel: database unavailable: %s", exc)
    return _error(errors.Unavailable("database unavailable"))


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405: raised by the router
        _harden(exc)
        raise
    if not response.prepared:  # SSE sets its own before streaming
        _harden(response)
    return response


def _harden(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def page(request: web.Request) -> web.Response:
    name, content_type = STATIC[request.path]
    if name == PANEL_PAGE:
        lang = pick_language(
            request.headers.get("Accept-Language"), request.app[PANEL_LANGUAGE_KEY]
        )
        return web.Response(
            body=request.app[PAGES_KEY][lang],
            content_type=content_type,
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Language": lang,
                "Vary": "Accept-Language",
            },
        )
    return web.Response(
        body=request.app[STATIC_KEY][name],
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def favicon(_: web.Request) -> web.Response:
    return web.Response(status=204)


async def api_presence(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        async with ctx.sessions() as session:
            agents = await read_presence(session)
    except Exception as exc:
        return _db_error(exc)
    return _json({"agents": agents})


async def api_hotlines(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        async with ctx.sessions() as session:
            stats = await hotline_stats(session, _now())
    except Exception as exc:
        return _db_error(exc)
    return _json({"hotlines": [s.as_dict() for s in stats]})


async def api_charts(request: web.Request) -> web.Response:
    """Today's calls per local hour by outcome and the service level through the day, for
    the panel's charts (`services.reports.day_series`, the figures of `hotline report
    --by hour`): `?hotline=500` for one hotline, `?day=YYYY-MM-DD` for another day."""
    ctx = request.app[CTX]
    number = request.query.get("hotline") or None
    try:
        day = date.fromisoformat(request.query["day"]) if "day" in request.query else None
    except ValueError:
        return _error(errors.InvalidValue("day must be YYYY-MM-DD"))
    try:
        async with ctx.sessions() as session:
            local = await reports.local_now(session, _now(), number)
            until = local.hour if day is None or day == local.date() else None
            day = day or local.date()
            series = await reports.day_series(session, day, hotline_number=number, until_hour=until)
    except errors.HotlineError as exc:
        return _error(exc)
    except Exception as exc:
        return _db_error(exc)
    return _json({"day": day.isoformat(), "hours": [p.as_dict() for p in series]})


def _now() -> datetime:
    return datetime.now(UTC)


def _sse(event: str, data: Any) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `presence` ({"agents": [...]}) and `hotlines` ({"hotlines":
    [...]}), each sent at once on connect and again whenever it changes."""
    ctx = request.app[CTX]
    if ctx.hub.subscribers >= MAX_STREAMS:
        return _error(errors.Unavailable("too many panel streams"))
    client = client_key(request, ctx.access.trusted_proxies)
    if ctx.streams.get(client, 0) >= ctx.access.streams_per_client:
        log.warning("panel: refused another event stream for %s (limit reached)", client)
        return _error(errors.Refused("too many event streams from this client"), status=429)
    ctx.streams[client] = ctx.streams.get(client, 0) + 1
    try:
        return await _stream(request, ctx)
    finally:
        ctx.streams[client] -= 1
        if not ctx.streams[client]:
            del ctx.streams[client]


async def _stream(request: web.Request, ctx: PanelContext) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not buffer the stream
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        async with ctx.hub.subscribe() as subscription:
            quiet_since = asyncio.get_running_loop().time()
            # Look at the connection every second: a closed stream gives its slot of the
            # per-client limit back at once, not only when the next heartbeat fails.
            while request.transport is not None and not request.transport.is_closing():
                changes = await subscription.next(min(HEARTBEAT_S, GONE_CHECK_S))
                now = asyncio.get_running_loop().time()
                if not changes and now - quiet_since >= HEARTBEAT_S:
                    await response.write(b": keepalive\n\n")
                    quiet_since = now
                for topic, data in changes:
                    await response.write(_sse(topic, data))
                    quiet_since = now
    except (HubClosed, ConnectionError):
        pass  # server stopping or client gone
    return response


async def metrics_endpoint(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        async with ctx.sessions() as session:
            now = _now()
            presences = await agent_presences(session, now)
            stats = await hotline_stats(session, now, presences)
    except Exception as exc:
        log.warning("metrics: database unavailable: %s", exc)
        ctx.metrics.db_unreachable()
    else:
        ctx.metrics.update_from(presences, stats)
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    """200 when ARI is connected and the database answers, else 503 (for load balancers and
    service managers; no token needed, tells nothing about anyone)."""
    ctx = request.app[CTX]
    try:
        ari = bool(ctx.ari_connected())
    except Exception:
        ari = False
    db = await ctx.db_ping()
    ok = ari and db
    return _json(
        {"status": "ok" if ok else "unavailable", "ari": ari, "db": db}, 200 if ok else 503
    )


def build_web_app(
    *,
    sessions: Sessions,
    hub: PresenceHub,
    metrics: Metrics,
    ari_connected: Callable[[], bool],
    db_ping: DbPing | None = None,
    token: str = "",
    access: PanelAccess | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> web.Application:
    """The panel application. No token (in `access`, or `token` without it) = no
    authentication (loopback binds only; the caller checks that with `check_listen`)."""
    access = access if access is not None else PanelAccess(token=token)
    app = web.Application(middlewares=[security_headers, access_middleware(access)])
    app[CTX] = PanelContext(
        sessions=sessions,
        hub=hub,
        metrics=metrics,
        ari_connected=ari_connected,
        db_ping=db_ping or sessions_ping(sessions),
        access=access,
    )
    app[STATIC_KEY] = {name: _static(name) for name, _ in STATIC.values()}
    template = app[STATIC_KEY][PANEL_PAGE].decode("utf-8")
    app[PAGES_KEY] = {lang: render_page(template, lang) for lang in PANEL_LANGUAGES}
    app[PANEL_LANGUAGE_KEY] = language
    for path in STATIC:
        app.router.add_get(path, page)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/api/presence", api_presence)
    app.router.add_get("/api/presence/stream", api_stream)
    app.router.add_get("/api/hotlines", api_hotlines)
    app.router.add_get("/api/charts", api_charts)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)

    async def end_streams(_: web.Application) -> None:
        await hub.close()  # open SSE streams return, so shutdown does not wait for them

    app.on_shutdown.append(end_streams)
    return app


class PanelServer:
    """Runs the panel app, the presence hub and the event-loop lag monitor.

    Refuses (ConfigError) to listen beyond loopback without a token.
    """

    def __init__(
        self,
        sessions: Sessions,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str = "",
        ari_connected: Callable[[], bool] = lambda: False,
        metrics: Metrics | None = None,
        hub: PresenceHub | None = None,
        db_ping: DbPing | None = None,
        tick_s: float = DEFAULT_TICK_S,
        access: PanelAccess | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        access = access if access is not None else PanelAccess(token=token)
        check_listen(host, access.token)
        self.host, self._port, self._token = host, port, bool(access.token)
        self.metrics = metrics if metrics is not None else Metrics()
        if hub is None:
            hub = PresenceHub(sessions, sources=(panel_snapshot,), tick_s=tick_s)
        self.hub = hub
        self.app = build_web_app(
            sessions=sessions,
            hub=self.hub,
            metrics=self.metrics,
            ari_connected=ari_connected,
            db_ping=db_ping,
            access=access,
            language=language,
        )
        self._runner: web.AppRunner | None = None
        self._lag_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: Sessions, **kwargs: Any) -> PanelServer:
        return cls(
            sessions,
            host=settings.panel_host,
            port=settings.panel_port,
            access=PanelAccess(
                token=settings.panel_token,
                cookie_max_age_s=settings.panel_cookie_max_age_s,
                trusted_proxies=settings.panel_trusted_proxies,
                streams_per_client=settings.panel_streams_per_client,
            ),
            language=settings.panel_language,
            **kwargs,
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple):
                    return int(address[1])
        return self._port

    @property
    def url(self) -> str:
        host = self.host if is_loopback(self.host) else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self.hub.start()
        self._lag_task = asyncio.create_task(self.metrics.monitor_loop_lag(), name="loop-lag")
        runner = web.AppRunner(self.app, access_log_class=PathAccessLogger, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host or None, self._port).start()
        except BaseException:
            await runner.cleanup()
            await self._stop_tasks()
            raise
        self._runner = runner
        log.info("team panel on %s (token %s)", self.url, "required" if self._token else "off")

    async def _stop_tasks(self) -> None:
        await self.hub.close()
        task, self._lag_task = self._lag_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        await self._stop_tasks()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
