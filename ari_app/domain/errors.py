"""Domain errors with stable codes. They know nothing of HTTP or click: the CLI and the
web edge map them in one table each (DESIGN.md, convention 5)."""

from __future__ import annotations


class HotlineError(Exception):
    """Base of every error a user may see; `code` is stable, the message is one line."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HotlineError):
    code = "config"


class NotFound(HotlineError):
    code = "not_found"


class Conflict(HotlineError):
    code = "conflict"


class InvalidValue(HotlineError):
    code = "invalid"


class Refused(HotlineError):
    """A rule refuses the action (staffing minimum, lockout, unconfigured number)."""

    code = "refused"


class Unavailable(HotlineError):
    """A component the action needs (database, Asterisk) cannot be reached."""

    code = "unavailable"
