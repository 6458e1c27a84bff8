"""Pure parts of the phone dialogues: what is said for status and voicemail, and the
HOTLINE_FEATURE_CODES / HOTLINE_PIN_* settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ari_app.config import load_settings
from ari_app.domain.errors import ConfigError
from ari_app.domain.features import FeatureCodes
from ari_app.flows.feature import status_media
from ari_app.flows.mailbox import count_media, header_media, time_media
from ari_app.services.mailbox import Message

ENV = {"HOTLINE_DATABASE_URL": "postgresql://x@localhost/x"}
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday; 16:00 in Berlin


def test_status_never_names_anyone() -> None:
    assert status_media(True, True, 2, 0) == [
        "sound:agent-loginok",
        "sound:do-not-disturb",
        "sound:activated",
        "sound:queue-thereare",
        "number:2",
        "sound:agent-loginok",
        "sound:queue-thereare",
        "number:0",
        "sound:queue-callswaiting",
    ]
    assert status_media(False, True, 0, 3)[0] == "sound:agent-loggedoff"
    assert "sound:do-not-disturb" not in status_media(False, True, 0, 3)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (NOW - timedelta(minutes=5), ["sound:digits/today", "number:15", "number:55"]),
        (NOW - timedelta(days=1), ["sound:digits/yesterday", "number:16", "sound:digits/oclock"]),
        (
            NOW - timedelta(days=3, minutes=57),
            ["sound:digits/day-0", "number:15", "sound:digits/oh", "number:3"],
        ),
        (
            NOW - timedelta(days=30),
            ["sound:digits/mon-9", "number:26", "number:16", "sound:digits/oclock"],
        ),
    ],
)
def test_time_is_read_in_the_hotline_time_zone(at: datetime, expected: list[str]) -> None:
    assert time_media(at, "Europe/Berlin", NOW) == expected


def test_unknown_time_zone_falls_back_to_utc() -> None:
    assert time_media(NOW, "Mars/Olympus", NOW) == [
        "sound:digits/today",
        "number:15",
        "sound:digits/oclock",
    ]


def test_count_and_header() -> None:
    assert count_media(0) == ["sound:vm-youhave", "sound:vm-no", "sound:vm-messages"]
    assert count_media(1)[1:] == ["number:1", "sound:vm-message"]
    message = Message(7, 1, "500", "UTC", "+4930123", NOW, "vm-7")
    assert header_media(2, message, with_hotline=True, now=NOW)[:6] == [
        "sound:vm-message",
        "number:2",
        "sound:for",
        "digits:500",
        "sound:vm-from-phonenumber",
        "digits:4930123",
    ]
    anonymous = Message(8, 1, "500", "UTC", None, NOW, "vm-8")
    assert "sound:vm-unknown-caller" in header_media(1, anonymous, with_hotline=False, now=NOW)


def test_phone_settings_defaults() -> None:
    settings = load_settings(ENV, need_ari=False)
    assert settings.feature_codes == FeatureCodes()
    assert settings.pin_min_length == 6
    assert settings.pin_lockout.max_failures == 3
    assert settings.pin_lockout.lock_for == timedelta(minutes=15)


def test_phone_settings_from_the_environment() -> None:
    settings = load_settings(
        {
            **ENV,
            "HOTLINE_FEATURE_CODES": "login=*31, logout=*32",
            "HOTLINE_PIN_MIN_LENGTH": "8",
            "HOTLINE_PIN_MAX_FAILURES": "5",
            "HOTLINE_PIN_LOCKOUT": "1h",
        },
        need_ari=False,
    )
    assert (settings.feature_codes.login, settings.feature_codes.logout) == ("*31", "*32")
    assert settings.feature_codes.pause == "*23"
    assert settings.pin_min_length == 8
    assert settings.pin_lockout.max_failures == 5
    assert settings.pin_lockout.lock_for == timedelta(hours=1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOTLINE_FEATURE_CODES", "login"),
        ("HOTLINE_FEATURE_CODES", "dance=*99"),
        ("HOTLINE_FEATURE_CODES", "login=*21,logout=*21"),
        ("HOTLINE_FEATURE_CODES", "login=abc"),
        ("HOTLINE_PIN_MIN_LENGTH", "3"),
        ("HOTLINE_PIN_MIN_LENGTH", "six"),
        ("HOTLINE_PIN_MAX_FAILURES", "0"),
        ("HOTLINE_PIN_LOCKOUT", "soon"),
        ("HOTLINE_PIN_LOCKOUT", "0"),
    ],
)
def test_bad_phone_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({**ENV, name: value}, need_ari=False)
