"""Agent PINs: what a PIN may be, how it is stored, and when guessing locks an agent out.

A PIN is typed on a phone keypad, so it is short and numeric; its strength comes from the
lockout (a few tries, then a pause), not from the hash. The hash still matters: a leaked
database must not hand out PINs, so it is salted and deliberately slow (scrypt), and it is
stored as a self-describing string so the parameters can be raised later without
invalidating existing hashes (`needs_rehash`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import NamedTuple

from ari_app.domain.errors import InvalidValue

log = logging.getLogger(__name__)

PIN_MAX_LENGTH = 12
PIN_MIN_LENGTH = 6
_ABSOLUTE_MIN = 4  # below this a configured minimum would make lockout the only defence

# scrypt cost: N=2**14, r=8 needs 16 MiB and about 35 ms on a current core, so verification
# stays fast for a call flow while an offline search of all 6-digit PINs per stolen hash
# costs hours. Stored per hash, so raising it later only needs `needs_rehash`.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
PBKDF2_ITERATIONS = 210_000  # only without scrypt; keeps a check near 100 ms
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAXMEM = 64 * 1024 * 1024
_SCHEMES = frozenset({"scrypt", "pbkdf2_sha256"})


def check_pin_policy(
    pin: str, *, min_length: int = PIN_MIN_LENGTH, agent_number: str | None = None
) -> None:
    """Refuse PINs that are malformed or that a guesser would try first.

    Trivial means: one digit repeated (111111), a run up or down the keypad digits (123456,
    654321, also wrapping like 890123), a repeated block (121212, 123123), or containing the
    agent's own number, which the guesser already knows (they type it right before the PIN).
    """
    if not _ABSOLUTE_MIN <= min_length <= PIN_MAX_LENGTH:
        raise ValueError(f"min_length must be {_ABSOLUTE_MIN}..{PIN_MAX_LENGTH}")
    if not pin:
        raise InvalidValue("PIN: empty")
    if not (pin.isdigit() and pin.isascii()):
        raise InvalidValue("PIN: only digits 0-9 are allowed")
    if len(pin) < min_length:
        raise InvalidValue(f"PIN: too short, use at least {min_length} digits")
    if len(pin) > PIN_MAX_LENGTH:
        raise InvalidValue(f"PIN: too long, use at most {PIN_MAX_LENGTH} digits")
    if agent_number and agent_number in pin:
        raise InvalidValue("PIN: must not contain the agent number")
    if len(set(pin)) == 1:
        raise InvalidValue("PIN: too easy to guess (one digit repeated)")
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    if steps in ({1}, {9}):
        raise InvalidValue("PIN: too easy to guess (digits in a row, like 123456)")
    for size in range(2, len(pin) // 2 + 1):
        if len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size):
            raise InvalidValue("PIN: too easy to guess (a repeated pattern, like 121212)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def _pbkdf2(pin: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations, _KEY_BYTES)


def _have_scrypt() -> bool:
    # hashlib.scrypt exists only when Python is linked against OpenSSL >= 1.1.
    return hasattr(hashlib, "scrypt")


def hash_pin(pin: str) -> str:
    """Salted slow hash: `scrypt$N$r$p$salt$hash` (or `pbkdf2_sha256$iter$salt$hash`)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    if _have_scrypt():
        key = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"
    key = _pbkdf2(pin, salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(key)}"


# Verifying against this when an agent has no PIN (or does not exist) costs the same time as a
# real check, so response time does not tell a caller which agent numbers exist.
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


def verify_pin(pin: str, stored: str | None) -> bool:
    """Whether `pin` matches the stored hash; constant-time compare, never raises.

    A missing or unreadable stored hash counts as "no match" (logged), so a damaged row
    locks one agent out instead of crashing the call flow.
    """
    if stored is None:
        if _have_scrypt():
            _check(pin, _DUMMY)
        return False
    try:
        return _check(pin, stored)
    except (ValueError, TypeError, OverflowError, MemoryError):
        # Never log the stored text itself: a damaged row might hold a PIN in clear.
        scheme = stored.split("$", 1)[0]
        log.warning("unreadable PIN hash (%s)", scheme if scheme in _SCHEMES else "unknown format")
        return False


def _check(pin: str, stored: str) -> bool:
    scheme, *fields = stored.split("$")
    if scheme == "scrypt" and len(fields) == 5:
        n, r, p = (int(f) for f in fields[:3])
        salt, expected = _unb64(fields[3]), _unb64(fields[4])
        key = _scrypt(pin, salt, n, r, p)
    elif scheme == "pbkdf2_sha256" and len(fields) == 3:
        salt, expected = _unb64(fields[1]), _unb64(fields[2])
        key = _pbkdf2(pin, salt, int(fields[0]))
    else:
        raise ValueError("unknown PIN hash format")
    return hmac.compare_digest(key, expected)


def needs_rehash(stored: str) -> bool:
    """True when the hash was made with other parameters than `hash_pin` uses today.

    The login service may then store `hash_pin(pin)` after a successful check.
    """
    if _have_scrypt():
        return not stored.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")
    return not stored.startswith(f"pbkdf2_sha256${PBKDF2_ITERATIONS}$")


class LockoutState(NamedTuple):
    """Counters of one lockout subject after an attempt. `locked`: the subject is locked now.

    `lockouts` counts the locks of the current streak: the next lock lasts
    `lock_for * 2**lockouts` (at most `max_lock`). It returns to 0 after a right PIN or
    after a quiet day (no failure and no lock for `quiet_reset`).

    A PIN attempt is accepted only when the PIN was right *and* `locked` is False.
    """

    failures: int
    locked_until: datetime | None
    locked: bool
    lockouts: int = 0
    last_failure_at: datetime | None = None


@dataclass(frozen=True)
class LockoutPolicy:
    """Consecutive wrong PINs lock the subject (an agent number, a calling number, a
    device) a while, and each further lock of the streak lasts twice as long.

    With the defaults (3 tries, 15 min doubling to at most a day) a guesser gets about 21
    guesses on one agent in the first day and 3 a day after that (SECURITY.md).

    While locked, even the right PIN is refused: otherwise the lock would only slow down a
    guesser who keeps trying, and the last guess could still get in.

    `alert_failures` failed attempts on all agents together within `alert_window` raise an
    alert (audit row, log warning, metric): someone is guessing on many agents at once.
    """

    max_failures: int = 3
    lock_for: timedelta = timedelta(minutes=15)
    max_lock: timedelta = timedelta(days=1)
    quiet_reset: timedelta = timedelta(days=1)
    alert_failures: int = 20
    alert_window: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.lock_for <= timedelta(0):
            raise ValueError("lock_for must be positive")
        if self.max_lock < self.lock_for:
            raise ValueError("max_lock must be at least lock_for")
        if self.quiet_reset <= timedelta(0):
            raise ValueError("quiet_reset must be positive")
        if self.alert_failures < 1 or self.alert_window <= timedelta(0):
            raise ValueError("the alert needs a positive threshold and window")

    @staticmethod
    def is_locked(locked_until: datetime | None, now: datetime) -> bool:
        """Check before even asking for the PIN."""
        return locked_until is not None and locked_until > now

    def lock_duration(self, lockouts: int) -> timedelta:
        """How long the lock after `lockouts` earlier locks of the streak lasts."""
        if lockouts >= 32:  # far beyond any cap; keeps the power small
            return self.max_lock
        return min(self.lock_for * (1 << lockouts), self.max_lock)

    def settle(self, state: LockoutState, now: datetime) -> LockoutState:
        """The counters as they stand at `now`: an expired lock starts a fresh count of
        failures (the streak of locks goes on), a quiet day forgets the streak."""
        if self.is_locked(state.locked_until, now):
            return state._replace(locked=True)
        last = max(
            (t for t in (state.last_failure_at, state.locked_until) if t is not None),
            default=None,
        )
        if last is None or now - last >= self.quiet_reset:
            return LockoutState(0, None, False, 0, None)
        if state.locked_until is not None:
            # The quiet day counts from the end of the lock, not from the failure that set
            # it: otherwise a day-long lock would itself be the quiet day.
            return LockoutState(0, None, False, state.lockouts, last)
        return state._replace(locked=False)

    def fail(self, state: LockoutState, now: datetime) -> LockoutState:
        """Counters after a wrong PIN (on an unlocked subject)."""
        state = self.settle(state, now)
        if state.locked:
            return state
        failures = state.failures + 1
        if failures >= self.max_failures:
            until = now + self.lock_duration(state.lockouts)
            return LockoutState(failures, until, True, state.lockouts + 1, now)
        return LockoutState(failures, None, False, state.lockouts, now)
