"""Exceptions for ARI failures, one class per kind of HTTP answer.

Messages name the method, the resource path (never the query string, never
credentials), the HTTP status and Asterisk's own message.
"""

from __future__ import annotations

import json

__all__ = [
    "AriAuthError",
    "AriBadRequest",
    "AriConflict",
    "AriConnectionError",
    "AriError",
    "AriNotFound",
    "AriServerError",
    "AriUnprocessable",
    "error_for_status",
]


class AriError(Exception):
    """Base of every ARI failure. `status` is None when no HTTP answer was received."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        text: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.text = text
        self.method = method
        self.path = path


class AriBadRequest(AriError):
    """400: invalid parameters."""


class AriAuthError(AriError):
    """401/403: wrong ARI credentials or no permission."""


class AriNotFound(AriError):
    """404: the channel/bridge/playback/recording does not (or no longer) exist."""


class AriConflict(AriError):
    """409: the resource is in the wrong state (e.g. channel not in Stasis)."""


class AriUnprocessable(AriConflict):
    """422: a referenced resource (e.g. endpoint, channel to add) is missing or unusable."""


class AriServerError(AriError):
    """5xx: Asterisk failed internally."""


class AriConnectionError(AriError):
    """No HTTP answer: connection refused/reset, DNS, TLS, or timeout."""


def _asterisk_message(text: str) -> str:
    # Asterisk answers errors with {"message": "..."}; fall back to the raw text.
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    if isinstance(data, dict):
        for key in ("message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return text.strip()[:200]


def error_for_status(status: int, text: str, *, method: str, path: str) -> AriError:
    """Build the exception matching an HTTP error status."""
    cls: type[AriError]
    if status == 400:
        cls = AriBadRequest
    elif status in (401, 403):
        cls = AriAuthError
    elif status == 404:
        cls = AriNotFound
    elif status == 409:
        cls = AriConflict
    elif status == 422:
        cls = AriUnprocessable
    elif status >= 500:
        cls = AriServerError
    else:
        cls = AriError
    detail = _asterisk_message(text)
    message = f"{method} {path}: HTTP {status}" + (f": {detail}" if detail else "")
    return cls(message, status=status, text=text, method=method, path=path)
