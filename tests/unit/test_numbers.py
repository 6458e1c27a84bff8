"""The app's edge for numbers (finding 3 of issue 13): caller IDs and dialled numbers."""

from __future__ import annotations

import pytest

from ari_app.domain import numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("030123", "030123"),
        ("+4930123456", "+4930123456"),
        (" 030123 ", "030123"),
        ("", "anonymous"),
        (None, "anonymous"),
        ("anonymous", "anonymous"),
        ("Anonymous", "anonymous"),
        ("0301,sound:vm-nomore", "anonymous"),  # a media list when spoken
        ("0301&0302", "anonymous"),
        ("++4930", "anonymous"),
        ("49+30", "anonymous"),
        ("+", "anonymous"),
        ("030 123", "anonymous"),
        ("٠٣٠١٢٣", "anonymous"),  # digits, but not ASCII ones
        ("1" * 32, "1" * 32),
        ("+" + "1" * 31, "+" + "1" * 31),
        ("1" * 33, "anonymous"),  # longer than the bound, never cut
        ("1" * 500, "anonymous"),
    ],
)
def test_caller_number(raw: str | None, expected: str) -> None:
    assert numbers.caller_number(raw) == expected


@pytest.mark.parametrize(
    ("value", "spoken"),
    [("030123", True), ("+4930", True), ("anonymous", False), (None, False), ("", False)],
)
def test_only_a_number_is_a_caller_number(value: str | None, spoken: bool) -> None:
    assert numbers.is_caller_number(value) is spoken
    assert numbers.is_caller_number("0301,sound:vm-nomore") is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("500", "500"),
        ("+4930500", "+4930500"),
        ("*21500", "*21500"),
        ("5" * 32, "5" * 32),
        ("5" * 33, None),  # longer than any hotline number can be
        ("5" * 200, None),
        ("", None),
        ("500,x", None),
    ],
)
def test_dialled_number(raw: str, expected: str | None) -> None:
    assert numbers.dialled_number(raw) == expected


def test_dialled_record_is_bounded_to_its_column() -> None:
    assert numbers.dialled_record("5" * 200) == "5" * numbers.DIALLED_RECORD_MAX
    assert numbers.dialled_record("500") == "500"
