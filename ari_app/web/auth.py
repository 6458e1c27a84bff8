"""Who may see the panel.

- Bound to loopback without a token: only this machine can connect; requests must also
  name a loopback host, so a web page on another site cannot read the panel through DNS
  rebinding.
- A token configured (mandatory when bound elsewhere): every path but /healthz needs it, as
  `Authorization: Bearer <token>`, as the password of basic auth (any user name; browsers
  prompt for it), or once as `?token=<token>` on the page, which sets an HttpOnly cookie
  so a wall screen keeps working and the token leaves the address bar.
- No CORS headers at all: other origins cannot read any response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ari_app.domain.errors import ConfigError

log = logging.getLogger(__name__)

COOKIE = "hotline_panel"
OPEN_PATHS = frozenset({"/healthz"})
MIN_TOKEN_LEN = 16
REALM = 'Basic realm="Hotline panel", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token: str) -> None:
    """Refuse a panel reachable from the network without a token (ConfigError)."""
    if token and len(token) < MIN_TOKEN_LEN:
        raise ConfigError(f"HOTLINE_PANEL_TOKEN must have at least {MIN_TOKEN_LEN} characters")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"HOTLINE_PANEL_LISTEN binds the panel to {host or 'all addresses'} (not loopback):"
            " set HOTLINE_PANEL_TOKEN so that only colleagues with the token see presence"
        )


def _cookie_value(token: str) -> str:
    # The cookie holds a MAC of the token, not the token, so a copied cookie never shows it.
    return hmac.new(token.encode(), b"hotline-panel-cookie", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _authorization_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return _same(value, token)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _user, sep, password = decoded.partition(":")
        return bool(sep) and _same(password, token)
    return False


def request_host(request: web.Request) -> str:
    """The Host header's host part, without the port ("[::1]:8080" -> "::1")."""
    host = request.headers.get("Host", "")
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def unauthorized(request: web.Request) -> web.Response:
    headers = {"WWW-Authenticate": REALM, "Cache-Control": "no-store"}
    if request.path.startswith("/api/"):
        return web.json_response({"error": "unauthorized"}, status=401, headers=headers)
    return web.Response(status=401, text="401: token required\n", headers=headers)


def access_middleware(token: str) -> Middleware:
    """The middleware for the rules above; `token` empty = loopback-only mode."""

    cookie = _cookie_value(token) if token else ""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if not token:
            if not is_loopback(request_host(request)):
                log.warning("panel: refused Host %r (loopback only)", request_host(request))
                return web.Response(status=421, text="421: use localhost\n")
            return await handler(request)
        query_token = request.query.get("token", "")
        if query_token and _same(query_token, token):
            if request.path == "/" and request.method == "GET":
                return _with_cookie(request, cookie)
            return await handler(request)
        if _authorization_ok(request.headers.get("Authorization", ""), token) or _same(
            request.cookies.get(COOKIE, ""), cookie
        ):
            return await handler(request)
        return unauthorized(request)

    return middleware


def _with_cookie(request: web.Request, cookie: str) -> web.Response:
    """Token in the URL: remember it in a cookie and send the browser to the clean URL."""
    location = request.rel_url.without_query_params("token")
    response = web.Response(status=303, headers={"Location": str(location)})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=400 * 24 * 3600,  # wall screens run for months; browsers cap at 400 days
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response
