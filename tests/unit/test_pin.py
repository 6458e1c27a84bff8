from datetime import UTC, datetime, timedelta

import pytest

from ari_app.domain import pin as pinmod
from ari_app.domain.errors import InvalidValue
from ari_app.domain.pin import (
    LockoutPolicy,
    LockoutState,
    check_pin_policy,
    hash_pin,
    needs_rehash,
    verify_pin,
)

# policy


@pytest.mark.parametrize("pin", ["482915", "739204", "1357924680", "480480480481", "902817"])
def test_good_pins(pin: str) -> None:
    check_pin_policy(pin)


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ("", "empty"),
        ("48291a", "only digits"),
        ("4829 15", "only digits"),
        ("٤٨٢٩١٥", "only digits"),  # non-ASCII digits
        ("48291", "at least 6"),
        ("4829150372819", "at most 12"),
        ("000000", "one digit repeated"),
        ("777777777", "one digit repeated"),
        ("123456", "in a row"),
        ("654321", "in a row"),
        ("0123456789", "in a row"),
        ("890123", "in a row"),
        ("210987", "in a row"),
        ("121212", "repeated pattern"),
        ("123123", "repeated pattern"),
        ("90909090", "repeated pattern"),
        ("12341234", "repeated pattern"),
    ],
)
def test_refused_pins(pin: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^PIN: ") as err:
        check_pin_policy(pin)
    assert message in err.value.message


def test_agent_number_is_refused() -> None:
    check_pin_policy("482915", agent_number="1001")
    with pytest.raises(InvalidValue, match="agent number"):
        check_pin_policy("100100", agent_number="100100")
    with pytest.raises(InvalidValue, match="agent number"):
        check_pin_policy("100175", agent_number="1001")
    with pytest.raises(InvalidValue, match="agent number"):
        check_pin_policy("751001", agent_number="1001")


def test_min_length_configurable() -> None:
    check_pin_policy("4829", min_length=4)
    with pytest.raises(InvalidValue, match="at least 8"):
        check_pin_policy("4829157", min_length=8)
    for bad in (3, 13):
        with pytest.raises(ValueError):
            check_pin_policy("482915", min_length=bad)


def test_refusal_messages_do_not_echo_the_pin() -> None:
    for bad in ("48291", "345678", "343434", "48291a", "100175"):
        with pytest.raises(InvalidValue) as err:
            check_pin_policy(bad, agent_number="1001")
        assert bad not in err.value.message


# hashing


def test_hash_and_verify() -> None:
    stored = hash_pin("482915")
    assert verify_pin("482915", stored)
    assert not verify_pin("482916", stored)
    assert not verify_pin("", stored)
    assert "482915" not in stored


def test_hash_is_self_describing_and_salted() -> None:
    a, b = hash_pin("482915"), hash_pin("482915")
    assert a != b
    scheme, n, r, p, salt, key = a.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", pinmod.SCRYPT_N, 8, 1)
    assert salt and key
    assert not needs_rehash(a)


def test_verify_cost_stays_bounded() -> None:
    # A PIN check must stay cheap enough to run on the call path (about 35 ms on a current
    # core): bounded by the stored cost parameters, not by a wall-clock assertion that a
    # loaded CI machine would fail.
    stored = hash_pin("482915")
    _, n, r, p, *_ = stored.split("$")
    assert int(n) * int(r) * 128 <= 16 * 2**20, "at most 16 MiB of scrypt memory"
    assert int(p) == 1
    assert verify_pin("482915", stored)


def test_verify_uses_the_stored_parameters() -> None:
    old = pinmod._scrypt("482915", b"salt" * 4, 2**10, 8, 1)
    stored = f"scrypt$1024$8$1${pinmod._b64(b'salt' * 4)}${pinmod._b64(old)}"
    assert verify_pin("482915", stored)
    assert needs_rehash(stored)


def test_verify_pbkdf2_hashes() -> None:
    key = pinmod._pbkdf2("482915", b"s" * 16, 1000)
    stored = f"pbkdf2_sha256$1000${pinmod._b64(b's' * 16)}${pinmod._b64(key)}"
    assert verify_pin("482915", stored)
    assert not verify_pin("482916", stored)
    assert needs_rehash(stored)


def test_pbkdf2_fallback_without_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pinmod, "_have_scrypt", lambda: False)
    monkeypatch.setattr(pinmod, "PBKDF2_ITERATIONS", 1000)
    stored = hash_pin("482915")
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert verify_pin("482915", stored)
    assert not needs_rehash(stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain482915",
        "md5$abc$def",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$not base64!$AAAA",
        "scrypt$3$8$1$AAAA$AAAA",  # n not a power of two
        "scrypt$1073741824$8$1$AAAA$AAAA",  # needs far more memory than allowed
        "pbkdf2_sha256$0$AAAA$AAAA",
    ],
)
def test_unreadable_hash_is_no_match(stored: str, caplog: pytest.LogCaptureFixture) -> None:
    assert verify_pin("482915", stored) is False
    assert "unreadable PIN hash" in caplog.text
    assert "482915" not in caplog.text


def test_no_stored_hash_is_no_match() -> None:
    assert verify_pin("482915", None) is False


# lockout

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
POLICY = LockoutPolicy()


def test_defaults() -> None:
    assert POLICY.max_failures == 3
    assert POLICY.lock_for == timedelta(minutes=15)


FRESH = LockoutState(0, None, False)


def _fails(
    policy: LockoutPolicy, n: int, now: datetime, state: LockoutState = FRESH
) -> LockoutState:
    for _ in range(n):
        state = policy.fail(state, now)
    return state


def test_third_failure_locks() -> None:
    state = POLICY.fail(FRESH, NOW)
    assert tuple(state)[:3] == (1, None, False)
    state = POLICY.fail(state, NOW)
    assert tuple(state)[:3] == (2, None, False)
    state = POLICY.fail(state, NOW)
    assert tuple(state)[:4] == (3, NOW + timedelta(minutes=15), True, 1)


def test_wrong_pin_while_locked_does_not_extend() -> None:
    state = _fails(POLICY, 3, NOW)
    later = NOW + timedelta(minutes=5)
    assert POLICY.fail(state, later) == state._replace(locked=True)
    assert POLICY.settle(state, later).locked


def test_lock_expires_exactly_at_locked_until() -> None:
    until = NOW
    assert not LockoutPolicy.is_locked(until, NOW)
    assert LockoutPolicy.is_locked(until, NOW - timedelta(seconds=1))
    assert not LockoutPolicy.is_locked(None, NOW)


def test_failure_after_expired_lock_starts_a_fresh_count_but_keeps_the_streak() -> None:
    state = _fails(POLICY, 3, NOW)
    after = NOW + timedelta(minutes=16)
    state = POLICY.fail(state, after)
    assert (state.failures, state.locked, state.lockouts) == (1, False, 1)


def test_repeated_lockouts_double_up_to_a_day() -> None:
    """Issue 13, finding 5: each lock of a streak lasts twice as long as the one before."""
    now, state, lengths = NOW, FRESH, []
    for _ in range(9):
        state = _fails(POLICY, 3, now, state)
        assert state.locked and state.locked_until is not None
        lengths.append(state.locked_until - now)
        now = state.locked_until  # the guesser tries again the moment the lock ends
    minutes = [int(d.total_seconds() // 60) for d in lengths]
    assert minutes == [15, 30, 60, 120, 240, 480, 960, 1440, 1440]


def test_guesses_per_agent_per_day_are_few() -> None:
    """A guesser who retries the moment each lock ends: ~21 guesses the first day, 3 a day
    afterwards (instead of 288 a day with a fixed 15-minute lock)."""
    start, now, state = NOW, NOW, FRESH
    per_day: dict[int, int] = {}
    while now < start + timedelta(days=5):
        state = POLICY.settle(state, now)
        if state.locked:
            assert state.locked_until is not None
            now = state.locked_until
            continue
        state = POLICY.fail(state, now)
        day = int((now - start).total_seconds() // 86400)
        per_day[day] = per_day.get(day, 0) + 1
    assert per_day[0] <= 24
    assert all(n <= 6 for d, n in per_day.items() if d > 0), per_day


def test_a_quiet_day_or_success_forgets_the_streak() -> None:
    state = _fails(POLICY, 3, NOW)
    state = _fails(POLICY, 3, NOW + timedelta(minutes=15), state)
    assert state.lockouts == 2
    assert state.locked_until is not None
    # a day without failures after the lock ended: the next lock is short again
    quiet = state.locked_until + timedelta(days=1)
    assert POLICY.settle(state, quiet) == FRESH._replace(lockouts=0)
    again = _fails(POLICY, 3, quiet, state)
    assert again.locked_until == quiet + timedelta(minutes=15)
    # less than a day is not enough
    almost = state.locked_until + timedelta(hours=23)
    assert POLICY.settle(state, almost).lockouts == 2


def test_custom_policy() -> None:
    policy = LockoutPolicy(max_failures=1, lock_for=timedelta(hours=1), max_lock=timedelta(hours=3))
    state = policy.fail(FRESH, NOW)
    assert tuple(state)[:3] == (1, NOW + timedelta(hours=1), True)
    assert policy.lock_duration(5) == timedelta(hours=3)
    assert policy.lock_duration(1000) == timedelta(hours=3)
    with pytest.raises(ValueError):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError):
        LockoutPolicy(lock_for=timedelta(0))
    with pytest.raises(ValueError):
        LockoutPolicy(lock_for=timedelta(hours=2), max_lock=timedelta(hours=1))
