import time
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


def test_verify_is_fast_enough() -> None:
    stored = hash_pin("482915")
    start = time.perf_counter()
    assert verify_pin("482915", stored)
    assert time.perf_counter() - start < 0.1


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


def test_success_resets() -> None:
    assert POLICY.register(2, None, NOW, success=True) == LockoutState(0, None, False)


def test_third_failure_locks() -> None:
    state = POLICY.register(0, None, NOW, success=False)
    assert tuple(state) == (1, None, False)
    state = POLICY.register(state.failures, state.locked_until, NOW, success=False)
    assert tuple(state) == (2, None, False)
    state = POLICY.register(state.failures, state.locked_until, NOW, success=False)
    assert state == (3, NOW + timedelta(minutes=15), True)


def test_right_pin_refused_while_locked() -> None:
    until = NOW + timedelta(minutes=5)
    failures, locked_until, locked = POLICY.register(3, until, NOW, success=True)
    assert (failures, locked_until, locked) == (3, until, True)


def test_wrong_pin_while_locked_does_not_extend() -> None:
    until = NOW + timedelta(minutes=5)
    assert POLICY.register(3, until, NOW, success=False) == (3, until, True)


def test_lock_expires_exactly_at_locked_until() -> None:
    until = NOW
    assert POLICY.register(3, until, NOW, success=True) == (0, None, False)
    assert not LockoutPolicy.is_locked(until, NOW)
    assert LockoutPolicy.is_locked(until, NOW - timedelta(seconds=1))
    assert not LockoutPolicy.is_locked(None, NOW)


def test_failure_after_expired_lock_starts_a_fresh_count() -> None:
    expired = NOW - timedelta(minutes=1)
    assert POLICY.register(3, expired, NOW, success=False) == (1, None, False)


def test_custom_policy() -> None:
    policy = LockoutPolicy(max_failures=1, lock_for=timedelta(hours=1))
    assert policy.register(0, None, NOW, success=False) == (1, NOW + timedelta(hours=1), True)
    with pytest.raises(ValueError):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError):
        LockoutPolicy(lock_for=timedelta(0))
