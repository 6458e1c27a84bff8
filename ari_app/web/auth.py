"""Who may see the panel.

- Bound to loopback without a token: only this machine can connect; requests must also
  name a loopback host, so a web page on another site cannot read the panel through DNS
  rebinding. A request that a reverse proxy on this host forwarded (it carries
  `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host` or `X-Real-IP`) is not a loopback
  request: it is refused unless its peer is a proxy named in
  HOTLINE_PANEL_TRUSTED_PROXY *and* the client that proxy names is itself loopback. A
  proxy that forwards without any of these headers cannot be told from a local browser,
  so a proxied panel needs a token (SECURITY.md).
- A token configured (mandatory when bound elsewhere): every path but /healthz needs it, as
  `Authorization: Bearer <token>`, as the password of basic auth (any user name; browsers
  prompt for it), or once as `?token=<token>` on `/` only, which sets an HttpOnly cookie
  and redirects to the clean URL. The cookie holds its expiry and a MAC of token and
  expiry (not the token), valid HOTLINE_PANEL_COOKIE_MAX_AGE (default 12 h): a copied
  cookie stops working then, whatever the browser does with it.
- No CORS headers at all: other origins cannot read any response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ari_app.domain.errors import ConfigError

log = logging.getLogger(__name__)

COOKIE = "hotline_panel"
OPEN_PATHS = frozenset({"/healthz"})
MIN_TOKEN_LEN = 16
REALM = 'Basic realm="Hotline panel", charset="UTF-8"'
DEFAULT_COOKIE_MAX_AGE_S = 12 * 3600  # one working day on a wall screen, then the token again
DEFAULT_STREAMS_PER_CLIENT = 4  # a few tabs; a script opening hundreds gets 429
FORWARD_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PanelAccess:
    """The access rules' settings (HOTLINE_PANEL_*)."""

    token: str = ""
    cookie_max_age_s: int = DEFAULT_COOKIE_MAX_AGE_S
    trusted_proxies: frozenset[IpAddress] = frozenset()
    streams_per_client: int = DEFAULT_STREAMS_PER_CLIENT

    def __repr__(self) -> str:  # never the token
        return (
            f"PanelAccess(token={'set' if self.token else 'none'},"
            f" cookie_max_age_s={self.cookie_max_age_s},"
            f" trusted_proxies={sorted(map(str, self.trusted_proxies))},"
            f" streams_per_client={self.streams_per_client})"
        )


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


def _ip(text: str | None) -> IpAddress | None:
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):  # "[::1]:1234"
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # "192.0.2.1:1234"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _last_forwarded_for(request: web.BaseRequest) -> IpAddress | None:
    """The client the nearest proxy names: the last hop it appended (earlier entries came
    from the client and may be forged)."""
    xff = ",".join(request.headers.getall("X-Forwarded-For", []))
    if xff.strip():
        return _ip(xff.split(",")[-1])
    forwarded = ",".join(request.headers.getall("Forwarded", []))
    if forwarded.strip():
        for pair in forwarded.split(",")[-1].split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                return _ip(value)
        return None
    return _ip(request.headers.get("X-Real-IP"))


def is_forwarded(request: web.BaseRequest) -> bool:
    return any(name in request.headers for name in FORWARD_HEADERS)


def client_address(request: web.BaseRequest, trusted: frozenset[IpAddress]) -> IpAddress | None:
    """Who is asking. Without forwarding headers: the TCP peer. Forwarded by a trusted
    proxy: the client that proxy names. Forwarded by anyone else: unknown (None), because
    the headers are whatever the sender wrote and the peer is only a relay."""
    peer = _ip(request.remote)
    if not is_forwarded(request):
        return peer
    if peer is None or peer not in trusted:
        return None
    return _last_forwarded_for(request)


def client_key(request: web.BaseRequest, trusted: frozenset[IpAddress]) -> str:
    """What per-client limits count by: the client address, else the relaying peer (all
    clients of an untrusted proxy share its budget)."""
    address = client_address(request, trusted)
    return str(address) if address is not None else f"via {request.remote or '?'}"


def cookie_value(token: str, expires: int) -> str:
    """`<expiry>.<MAC of token and expiry>`: never the token, and no good after `expires`."""
    mac = hmac.new(token.encode(), f"hotline-panel-cookie:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _cookie_ok(given: str, token: str, now: float) -> bool:
    expires, sep, _ = given.partition(".")
    if not sep or not expires.isdigit() or int(expires) <= now:
        return False
    return _same(given, cookie_value(token, int(expires)))


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


def access_middleware(
    access: PanelAccess | str, *, clock: Callable[[], float] = time.time
) -> Middleware:
    """The middleware for the rules above; no token = loopback-only mode."""
    if isinstance(access, str):
        access = PanelAccess(token=access)
    token, trusted = access.token, access.trusted_proxies

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if not token:
            if not is_loopback(request_host(request)):
                log.warning("panel: refused Host %r (loopback only)", request_host(request))
                return web.Response(status=421, text="421: use localhost\n")
            client = client_address(request, trusted)
            if client is None or not client.is_loopback:
                log.warning(
                    "panel: refused a forwarded request from %s (loopback only; a proxied"
                    " panel needs HOTLINE_PANEL_TOKEN)",
                    request.remote,
                )
                return web.Response(status=403, text="403: loopback only\n")
            return await handler(request)
        query_token = request.query.get("token", "")
        if query_token and request.path == "/" and request.method == "GET":
            if _same(query_token, token):
                return _with_cookie(request, access, int(clock()))
            return unauthorized(request)
        # Anywhere else a ?token= is ignored: it would end up in proxy and scraper logs.
        if _authorization_ok(request.headers.get("Authorization", ""), token) or _cookie_ok(
            request.cookies.get(COOKIE, ""), token, clock()
        ):
            return await handler(request)
        return unauthorized(request)

    return middleware


def _with_cookie(request: web.Request, access: PanelAccess, now: int) -> web.Response:
    """Token in the URL: remember it in a cookie and send the browser to the clean URL."""
    location = request.rel_url.without_query_params("token")
    response = web.Response(status=303, headers={"Location": str(location)})
    response.set_cookie(
        COOKIE,
        cookie_value(access.token, now + access.cookie_max_age_s),
        max_age=access.cookie_max_age_s,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response
