"""Who may read the panel: loopback by default, a token everywhere else, no CORS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_support import seed_team

from ari_app.config import load_settings
from ari_app.domain.errors import ConfigError
from ari_app.web.auth import COOKIE, PanelAccess, check_listen, cookie_value
from ari_app.web.server import CTX, PanelServer

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
TOKEN = "s3cret-panel-token-0123"
PROTECTED = (
    "/",
    "/static/panel.js",
    "/static/panel.css",
    "/api/presence",
    "/api/hotlines",
    "/api/presence/stream",
    "/metrics",
)


@pytest.fixture
async def exposed(sessions: Sessions) -> AsyncIterator[PanelServer]:
    """Bound to all addresses (not loopback) with a token; reached through 127.0.0.1."""
    await seed_team(sessions)
    server = PanelServer(sessions, host="0.0.0.0", port=0, token=TOKEN, ari_connected=lambda: True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def status_of(url: str, **headers: str) -> tuple[int, aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "panel.example", ""])
def test_non_loopback_bind_without_token_refuses_to_start(sessions: Sessions, host: str) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_PANEL_TOKEN"):
        PanelServer(sessions, host=host, port=0)


def test_settings_decide_the_bind(sessions: Sessions) -> None:
    env = {"HOTLINE_DATABASE_URL": "postgresql://x@127.0.0.1/db"}
    PanelServer.from_settings(load_settings(env, need_ari=False), sessions)  # loopback default
    wide = {**env, "HOTLINE_PANEL_LISTEN": "0.0.0.0:8080"}
    with pytest.raises(ConfigError):
        PanelServer.from_settings(load_settings(wide, need_ari=False), sessions)
    PanelServer.from_settings(
        load_settings({**wide, "HOTLINE_PANEL_TOKEN": TOKEN}, need_ari=False), sessions
    )


def test_short_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least"):
        check_listen("0.0.0.0", "short")
    check_listen("127.0.0.1", "")
    check_listen("localhost", "")
    check_listen("::1", "")


async def test_without_token_everything_but_healthz_is_401(exposed: PanelServer) -> None:
    for path in PROTECTED:
        status, headers = await status_of(exposed.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic"), "browsers prompt for it"
    status, _ = await status_of(exposed.url + "/healthz")
    assert status == 200


async def test_wrong_token_is_401(exposed: PanelServer) -> None:
    wrong = base64.b64encode(b"panel:nope").decode()
    for auth in ("Bearer nope", f"Basic {wrong}", "Basic !!!", TOKEN):
        status, _ = await status_of(exposed.url + "/api/presence", Authorization=auth)
        assert status == 401, auth
    status, _ = await status_of(exposed.url + "/api/presence?token=nope")
    assert status == 401


async def test_with_token_everything_is_200(exposed: PanelServer) -> None:
    basic = base64.b64encode(f"wallscreen:{TOKEN}".encode()).decode()
    for auth in (f"Bearer {TOKEN}", f"Basic {basic}"):
        for path in PROTECTED:
            if path.endswith("/stream"):
                continue  # endless; checked below
            status, _ = await status_of(exposed.url + path, Authorization=auth)
            assert status == 200, (auth, path)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        http.get(exposed.url + "/api/presence/stream") as resp,
    ):
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"retry:")


async def test_token_in_url_becomes_a_cookie_for_the_page_and_its_stream(
    exposed: PanelServer,
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{exposed.url}/?token={TOKEN}", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/", "the token leaves the address bar"
            cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert TOKEN not in cookie, "the cookie holds a MAC, not the token"
        for path in ("/", "/api/presence", "/api/hotlines", "/metrics"):
            async with http.get(exposed.url + path) as resp:
                assert resp.status == 200, path
        async with http.get(exposed.url + "/api/presence/stream") as resp:
            assert resp.status == 200


async def test_no_cors_headers_for_any_origin(exposed: PanelServer) -> None:
    for path in (*PROTECTED[:-2], "/healthz"):
        _, headers = await status_of(
            exposed.url + path, Origin="http://evil.example", Authorization=f"Bearer {TOKEN}"
        )
        assert not [h for h in headers if h.lower().startswith("access-control-")], path
    async with (
        aiohttp.ClientSession() as http,
        http.options(
            exposed.url + "/api/presence",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        ) as resp,
    ):
        assert resp.status in (401, 405)
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_loopback_panel_answers_only_to_loopback_host_names(sessions: Sessions) -> None:
    """DNS rebinding: a foreign site's name resolving to 127.0.0.1 must not read presence."""
    server = PanelServer(sessions, port=0)
    await server.start()
    try:
        port = server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            status, _ = await status_of(server.url + "/api/presence", Host=host)
            assert status == 200, host
        status, _ = await status_of(server.url + "/api/presence", Host=f"evil.example:{port}")
        assert status == 421
        status, _ = await status_of(server.url + "/healthz", Host="evil.example")
        assert status in (200, 503)
    finally:
        await server.stop()


async def test_page_sends_security_headers(exposed: PanelServer) -> None:
    status, headers = await status_of(exposed.url + "/", Authorization=f"Bearer {TOKEN}")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers = await status_of(exposed.url + "/nope", Authorization=f"Bearer {TOKEN}")
    assert status == 404 and "Content-Security-Policy" in headers


# --- issue 13, finding 9: token only once on /, bounded cookie, proxies, stream limit ------


async def test_token_in_the_query_works_only_on_the_page(exposed: PanelServer) -> None:
    """Anywhere but `/` a `?token=` would land in proxy and scraper logs: it opens nothing."""
    for path in PROTECTED:
        if path == "/":
            continue
        status, _ = await status_of(f"{exposed.url}{path}?token={TOKEN}")
        assert status == 401, path
    status, headers = await status_of(f"{exposed.url}/?token={TOKEN}")
    assert status == 303 and "token" not in headers["Location"]
    status, headers = await status_of(f"{exposed.url}/?token=wrong-token-0123456")
    assert status == 401 and "Set-Cookie" not in headers


async def test_the_cookie_expires_after_the_configured_time(sessions: Sessions) -> None:
    access = PanelAccess(token=TOKEN, cookie_max_age_s=3600)
    server = PanelServer(sessions, host="0.0.0.0", port=0, access=access)
    await server.start()
    try:
        status, headers = await status_of(f"{server.url}/?token={TOKEN}")
        assert status == 303
        assert "Max-Age=3600" in headers["Set-Cookie"]
        value = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        expires = int(value.split(".")[0])
        assert abs(expires - (time.time() + 3600)) < 60, "the server checks the expiry itself"
        assert TOKEN not in value
        cookie = f"{COOKIE}={value}"
        status, _ = await status_of(server.url + "/api/presence", Cookie=cookie)
        assert status == 200
        # A copied cookie past its time, or with the time pushed forward, opens nothing.
        old = cookie_value(TOKEN, int(time.time()) - 1)
        status, _ = await status_of(server.url + "/api/presence", Cookie=f"{COOKIE}={old}")
        assert status == 401
        forged = f"{int(time.time()) + 10**6}.{value.split('.')[1]}"
        status, _ = await status_of(server.url + "/api/presence", Cookie=f"{COOKIE}={forged}")
        assert status == 401
    finally:
        await server.stop()


def test_cookie_lifetime_and_proxies_come_from_settings(sessions: Sessions) -> None:
    env = {"HOTLINE_DATABASE_URL": "postgresql://x@127.0.0.1/db"}
    settings = load_settings(env, need_ari=False)
    assert settings.panel_cookie_max_age_s == 12 * 3600
    assert settings.panel_trusted_proxies == frozenset()
    assert settings.panel_streams_per_client == 4
    custom = load_settings(
        {
            **env,
            "HOTLINE_PANEL_COOKIE_MAX_AGE": "8h",
            "HOTLINE_PANEL_TRUSTED_PROXY": "127.0.0.1, ::1",
            "HOTLINE_PANEL_STREAMS_PER_CLIENT": "2",
        },
        need_ari=False,
    )
    assert custom.panel_cookie_max_age_s == 8 * 3600
    assert {str(a) for a in custom.panel_trusted_proxies} == {"127.0.0.1", "::1"}
    assert custom.panel_streams_per_client == 2
    for name, bad in (
        ("HOTLINE_PANEL_COOKIE_MAX_AGE", "400d"),
        ("HOTLINE_PANEL_COOKIE_MAX_AGE", "soon"),
        ("HOTLINE_PANEL_TRUSTED_PROXY", "proxy.example"),
        ("HOTLINE_PANEL_STREAMS_PER_CLIENT", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings({**env, name: bad}, need_ari=False)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.7"},
        {"Forwarded": "for=203.0.113.7;proto=https"},
        {"X-Real-IP": "203.0.113.7"},
        {"X-Forwarded-Host": "panel.example"},
        # A forged loopback entry does not help: without a trusted proxy nothing counts.
        {"X-Forwarded-For": "127.0.0.1"},
    ],
)
async def test_a_reverse_proxy_on_this_host_is_not_loopback(
    sessions: Sessions, headers: dict[str, str]
) -> None:
    server = PanelServer(sessions, port=0)
    await server.start()
    try:
        for path in ("/", "/api/presence", "/api/presence/stream", "/metrics"):
            status, _ = await status_of(server.url + path, **headers)
            assert status == 403, (path, headers)
        status, _ = await status_of(server.url + "/api/presence")
        assert status == 200, "the local browser still gets in"
    finally:
        await server.stop()


async def test_a_trusted_proxy_passes_on_only_loopback_clients(sessions: Sessions) -> None:
    access = PanelAccess(trusted_proxies=frozenset({ipaddress.ip_address("127.0.0.1")}))
    server = PanelServer(sessions, port=0, access=access)
    await server.start()
    try:
        for headers in (
            {"X-Forwarded-For": "203.0.113.7"},
            {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"},  # the proxy's own entry is last
            {"Forwarded": 'for="[2001:db8::1]:4711"'},
            {"X-Forwarded-For": "not-an-address"},
        ):
            status, _ = await status_of(server.url + "/api/presence", **headers)
            assert status == 403, headers
        for headers in (
            {"X-Forwarded-For": "127.0.0.1"},
            {"X-Forwarded-For": "203.0.113.7, 127.0.0.1"},
            {"Forwarded": 'for="[::1]"'},
        ):
            status, _ = await status_of(server.url + "/api/presence", **headers)
            assert status == 200, headers
    finally:
        await server.stop()


async def test_event_streams_per_client_are_bounded(sessions: Sessions) -> None:
    access = PanelAccess(
        token=TOKEN,
        streams_per_client=2,
        trusted_proxies=frozenset({ipaddress.ip_address("127.0.0.1")}),
    )
    server = PanelServer(sessions, host="0.0.0.0", port=0, access=access)
    await server.start()
    url = server.url + "/api/presence/stream"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with (
            aiohttp.ClientSession(headers=auth) as http,
            contextlib.AsyncExitStack() as stack,
        ):
            for _ in range(2):
                resp = await stack.enter_async_context(http.get(url))
                assert resp.status == 200
                assert (await resp.content.readline()).startswith(b"retry:")
            async with http.get(url) as resp:
                assert resp.status == 429
            # Another client behind the trusted proxy has its own budget.
            async with http.get(url, headers={"X-Forwarded-For": "192.0.2.5"}) as resp:
                assert resp.status == 200
        # Closed streams are given back.
        async with aiohttp.ClientSession(headers=auth) as http:
            for _ in range(50):
                if not server.app[CTX].streams:
                    break
                await asyncio.sleep(0.05)
            async with http.get(url) as resp:
                assert resp.status == 200
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("accept", "lang", "label"),
    [
        ("de-DE,de;q=0.9", "de", "Teamübersicht"),
        ("en-GB,en;q=0.9", "en", "Team panel"),
        ("", "de", "Teamübersicht"),
    ],
)
async def test_page_language_from_accept_language(
    sessions: Sessions, accept: str, lang: str, label: str
) -> None:
    """German and English by Accept-Language (German for everyone else), UTF-8 declared."""
    server = PanelServer(sessions, port=0, ari_connected=lambda: True, language="de")
    await server.start()
    try:
        headers = {"Accept-Language": accept} if accept else {}
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + "/", headers=headers) as resp,
        ):
            body = await resp.read()
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            assert resp.headers["Content-Language"] == lang
            assert "Accept-Language" in resp.headers["Vary"]
    finally:
        await server.stop()
    page = body.decode("utf-8")
    assert f'<html lang="{lang}">' in page and f"<h1>{label}</h1>" in page
