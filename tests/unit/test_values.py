from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ari_app.domain import values
from ari_app.domain.errors import InvalidValue


@pytest.mark.parametrize("fn", [values.phone_number, values.hotline_number])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+4930123456", "+4930123456"),
        (" +49 30 123 456 ", "+4930123456"),
        ("030123", "030123"),
        ("12", "12"),
        ("1" * 20, "1" * 20),
        ("+" + "1" * 20, "+" + "1" * 20),
    ],
)
def test_numbers(fn: object, text: str, expected: str) -> None:
    assert callable(fn)
    assert fn(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "phone number: empty"),
        ("  ", "phone number: empty"),
        ("1", "2 to 20 digits"),
        ("1" * 21, "2 to 20 digits"),
        ("+", "only digits"),
        ("++49", "only digits"),
        ("49+1", "only digits"),
        ("030-123", "only digits"),
        ("100&PJSIP/200", "only digits"),
        ("12,3", "only digits"),
        ("١٢٣", "only digits"),  # non-ASCII digits
        ("12\n34", None),  # newline is whitespace: stripped, value 1234 is fine
    ],
)
def test_phone_number_errors(text: str, message: str | None) -> None:
    if message is None:
        assert values.phone_number(text) == "1234"
        return
    with pytest.raises(InvalidValue) as err:
        values.phone_number(text)
    assert message in err.value.message


def test_hotline_number_error_names_hotline() -> None:
    with pytest.raises(InvalidValue, match=r"^hotline number: "):
        values.hotline_number("x1")


@pytest.mark.parametrize("text", ["10", "1001", " 1001 ", "1234567890"])
def test_agent_number(text: str) -> None:
    assert values.agent_number(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("1", "2 to 10 digits"),
        ("12345678901", "2 to 10 digits"),
        ("+1001", "only digits"),
        ("10 01", "only digits"),
        ("abc", "only digits"),
    ],
)
def test_agent_number_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^agent number: ") as err:
        values.agent_number(text)
    assert message in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "PJSIP/1001",
        "SIP/alice",
        "IAX2/peer/100",
        "Local/1001@hotline-agents",
        "PJSIP/1001@office-trunk",
        "PJSIP/+4930123@trunk",
        "PJSIP/sip:alice@example.org:5060",
        "DAHDI/g1/030123",
        "PJSIP/a_b.c-d",
    ],
)
def test_dial_string(text: str) -> None:
    assert values.dial_string(f"  {text} ") == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("1001", "TECH/resource"),
        ("PJSIP/", "no resource"),
        ("/1001", "no technology"),
        ("1PJSIP/1001", "no technology"),
        ("PJSIP/1001&PJSIP/1002", "'&'"),
        ("PJSIP/1001,30,tT", "','"),
        ("PJSIP/1001)", "')'"),
        ("PJSIP/(1001", "'('"),
        ("PJSIP/10 01", "' '"),
        ("PJSIP/1001\nexten", "'\\n'"),
        ("PJSIP/${EXTEN}", "'$'"),
        ("PJSIP/1001;x", "';'"),
        ("PJSIP/" + "a" * 200, "longer than 160"),
    ],
)
def test_dial_string_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^dial string: ") as err:
        values.dial_string(text)
    assert message in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize(
    "text", ["custom/welcome", "vm-intro", "hotline/closed_today", "a", "dir/sub/file-2"]
)
def test_sound_name(text: str) -> None:
    assert values.sound_name(f" {text} ") == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("../secret", "'..'"),
        ("custom/../../x", "'..'"),
        ("sound:custom/x", "scheme"),
        ("recording:x", "scheme"),
        ("http://evil/x", "scheme"),
        ("/etc/passwd", "not absolute"),
        ("custom/x.gsm", "file extension"),
        ("custom/", "empty path part"),
        ("custom//x", "empty path part"),
        ("custom x", "only letters"),
        ("custom&x", "only letters"),
        ("a" * 201, "longer than 200"),
    ],
)
def test_sound_name_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^sound name: ") as err:
        values.sound_name(text)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("45", 45),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("2d", 172800),
        ("90d", 90 * 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("2m30s", 150),
        (" 1H 30M ", 5400),
        ("90m", 5400),
    ],
)
def test_duration(text: str, seconds: int) -> None:
    assert values.duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("-5", "not a duration"),
        ("5x", "not a duration"),
        ("m", "not a duration"),
        ("1.5h", "not a duration"),
        ("5 minutes", "not a duration"),
        ("h1", "not a duration"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("5m5", "not a duration"),
    ],
)
def test_duration_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^duration: ") as err:
        values.duration(text)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (5400, "1h30m"), (86400, "1d"), (93784, "1d2h3m4s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert values.format_duration(seconds) == text


def test_format_duration_negative() -> None:
    with pytest.raises(ValueError):
        values.format_duration(-1)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip(seconds: int) -> None:
    assert values.duration(values.format_duration(seconds)) == seconds


def test_parse_date() -> None:
    assert values.parse_date(" 2025-12-24 ") == date(2025, 12, 24)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24.12.2025", "not a date"),
        ("2025-2-1", "not a date"),
        ("20251224", "not a date"),
        ("2025-02-30", "does not exist"),
        ("", "not a date"),
    ],
)
def test_parse_date_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^date: ") as err:
        values.parse_date(text)
    assert message in err.value.message


def test_report_day() -> None:
    friday = date(2026, 12, 4)
    assert friday.weekday() == 4
    assert values.report_day("today", friday) == friday
    assert values.report_day(" Yesterday ", friday) == date(2026, 12, 3)
    assert values.report_day("7d", friday) == date(2026, 11, 27)
    assert values.report_day("0d", friday) == friday
    assert values.report_day("monday", friday) == date(2026, 11, 30)
    assert values.report_day("mon", friday) == date(2026, 11, 30)
    assert values.report_day("friday", friday) == friday, "this week's, today included"
    assert values.report_day("sat", friday) == date(2026, 11, 28)
    assert values.report_day("2026-11-01", friday) == date(2026, 11, 1)
    for bad in ("mo", "7w", "", "soon", "1.12."):
        with pytest.raises(InvalidValue, match="is not a day"):
            values.report_day(bad, friday)
    with pytest.raises(InvalidValue, match="does not exist"):
        values.report_day("2026-02-30", friday)
