from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ari_app.domain.errors import InvalidValue
from ari_app.domain.hours import OpeningHours, normalise_hours, validate_timezone

BERLIN = ZoneInfo("Europe/Berlin")
TZ = "Europe/Berlin"
OFFICE = OpeningHours.parse("mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00")


def local(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN)


# 2025-03-03 is a Monday.
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2025, 3, 3, 7, 59, 59), False),
        (local(2025, 3, 3, 8, 0), True),
        (local(2025, 3, 3, 11, 59, 59), True),
        (local(2025, 3, 3, 12, 0), False),  # end is exclusive
        (local(2025, 3, 3, 12, 30), False),  # lunch break
        (local(2025, 3, 3, 13, 0), True),
        (local(2025, 3, 7, 15, 59), True),  # Friday
        (local(2025, 3, 7, 16, 0), False),
        (local(2025, 3, 8, 9, 0), True),  # Saturday
        (local(2025, 3, 8, 13, 0), False),
        (local(2025, 3, 9, 10, 0), False),  # Sunday
    ],
)
def test_is_open_office_hours(when: datetime, expected: bool) -> None:
    assert OFFICE.is_open(when, TZ, ()) is expected


def test_instant_is_converted_to_the_hotline_zone() -> None:
    # 07:30 UTC on a Monday in winter is 08:30 in Berlin: open there, not in London.
    instant = datetime(2025, 3, 3, 7, 30, tzinfo=UTC)
    assert OFFICE.is_open(instant, "Europe/Berlin", ())
    assert not OFFICE.is_open(instant, "Europe/London", ())
    assert OFFICE.is_open(instant.astimezone(ZoneInfo("Asia/Tokyo")), "Europe/Berlin", ())


def test_dst_start_keeps_wall_clock_hours() -> None:
    # Saturday 2024-03-30 Berlin is UTC+1; Sunday 03-31 switches to UTC+2 at 02:00.
    # Use a schedule open every day from 08:00.
    hours = OpeningHours.parse("mo-su 08:00-12:00")
    assert not hours.is_open(datetime(2024, 3, 30, 6, 30, tzinfo=UTC), TZ)  # 07:30 CET
    assert hours.is_open(datetime(2024, 3, 30, 7, 0, tzinfo=UTC), TZ)  # 08:00 CET
    assert hours.is_open(datetime(2024, 3, 31, 6, 0, tzinfo=UTC), TZ)  # 08:00 CEST
    assert not hours.is_open(datetime(2024, 3, 31, 5, 59, tzinfo=UTC), TZ)  # 07:59 CEST
    assert not hours.is_open(datetime(2024, 3, 31, 10, 0, tzinfo=UTC), TZ)  # 12:00 CEST


def test_dst_end_repeated_hour() -> None:
    # 2024-10-27 Berlin: 02:00-03:00 happens twice; both are inside 02:00-03:00.
    hours = OpeningHours.parse("su 02:00-03:00")
    assert hours.is_open(datetime(2024, 10, 27, 0, 30, tzinfo=UTC), TZ)  # 02:30 CEST
    assert hours.is_open(datetime(2024, 10, 27, 1, 30, tzinfo=UTC), TZ)  # 02:30 CET
    assert not hours.is_open(datetime(2024, 10, 27, 2, 0, tzinfo=UTC), TZ)  # 03:00 CET


def test_dst_gap_hour_never_open() -> None:
    # 02:00-03:00 does not exist on 2024-03-31 in Berlin.
    hours = OpeningHours.parse("su 02:00-03:00")
    start = datetime(2024, 3, 30, 22, 0, tzinfo=UTC)
    assert not any(hours.is_open(start + timedelta(minutes=m), TZ) for m in range(0, 600, 5))


def test_holiday_closes_the_whole_local_day() -> None:
    monday = date(2025, 3, 3)
    assert not OFFICE.is_open(local(2025, 3, 3, 9, 0), TZ, {monday})
    assert OFFICE.is_open(local(2025, 3, 4, 9, 0), TZ, {monday})


def test_holiday_uses_the_local_date() -> None:
    # 2025-03-03 23:30 UTC is already Tuesday 00:30 in Berlin.
    hours = OpeningHours.parse("mo-su 00:00-24:00")
    instant = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
    assert not hours.is_open(instant, TZ, [date(2025, 3, 4)])
    assert hours.is_open(instant, TZ, [date(2025, 3, 3)])


@pytest.mark.parametrize("text", [None, "", "   ", ";", " ; ; "])
def test_no_spec_is_always_open(text: str | None) -> None:
    hours = OpeningHours.parse(text)
    assert hours.always_open
    assert str(hours) == ""
    assert normalise_hours(text) is None
    for h in range(0, 24 * 7, 5):
        assert hours.is_open(local(2025, 3, 3, 0) + timedelta(hours=h), TZ, ())


def test_always_open_still_closes_on_holidays() -> None:
    hours = OpeningHours.parse(None)
    assert not hours.is_open(local(2025, 12, 25, 10), TZ, {date(2025, 12, 25)})


def test_24_00_end_covers_the_last_second() -> None:
    hours = OpeningHours.parse("mo 20:00-24:00")
    assert hours.is_open(local(2025, 3, 3, 23, 59, 59), TZ)
    assert not hours.is_open(local(2025, 3, 4, 0, 0), TZ)


def test_naive_datetime_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.is_open(datetime(2025, 3, 3, 9, 0), TZ)


def test_unknown_zone_in_is_open() -> None:
    with pytest.raises(InvalidValue, match="time zone"):
        OFFICE.is_open(local(2025, 3, 3, 9), "Mars/Olympus")


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        (
            "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00",
            "mo-fr 08:00-12:00,13:00-16:00; sa 09:00-12:00",
        ),
        ("Mo-Fr 8:00-12:00 , 13:00-16:00;", "mo-fr 08:00-12:00,13:00-16:00"),
        ("mo,we 08:00-12:00", "mo,we 08:00-12:00"),
        ("we,mo 08:00-12:00", "mo,we 08:00-12:00"),
        ("mo 08:00-10:00; tu 08:00-10:00; we 08:00-10:00", "mo-we 08:00-10:00"),
        ("mo-fr 08:00-10:00,09:00-12:00", "mo-fr 08:00-12:00"),  # overlap merged
        ("mo 08:00-10:00,10:00-12:00", "mo 08:00-12:00"),  # adjacent merged
        ("mo-fr 13:00-16:00; mo-fr 08:00-12:00", "mo-fr 08:00-12:00,13:00-16:00"),
        ("sa-mo 10:00-11:00", "mo,sa-su 10:00-11:00"),  # wraps over the weekend
        ("mo-su 00:00-24:00", "mo-su 00:00-24:00"),
        (
            "mo-we 08:00-12:00; th 08:00-11:00; fr 08:00-12:00",
            "mo-we,fr 08:00-12:00; th 08:00-11:00",
        ),
        ("fr 08:00-09:00; mo 08:00-09:00", "mo,fr 08:00-09:00"),
    ],
)
def test_normalised_form(text: str, normal: str) -> None:
    hours = OpeningHours.parse(text)
    assert str(hours) == normal
    assert normalise_hours(text) == normal
    assert OpeningHours.parse(normal) == hours


def test_wrapping_range_is_same_as_list() -> None:
    assert OpeningHours.parse("fr-mo 10:00-11:00") == OpeningHours.parse("fr,sa,su,mo 10:00-11:00")
    assert OpeningHours.parse("mo-mo 10:00-11:00") == OpeningHours.parse("mo 10:00-11:00")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xy 08:00-12:00", "opening hours: unknown day 'xy' in 'xy 08:00-12:00'"),
        ("mo-xy 08:00-12:00", "unknown day 'xy'"),
        ("monday 08:00-12:00", "unknown day 'monday'"),
        ("mo 12:00-08:00", "opening hours: 12:00-08:00 ends before it starts"),
        ("mo 08:00-08:00", "08:00-08:00 is empty"),
        ("mo 22:00-06:00", "22:00-06:00 ends before it starts"),
        ("mo", "no times in 'mo'"),
        ("08:00-12:00", "no days in '08:00-12:00'"),
        ("mo 08:00", "needs a start and an end"),
        ("mo 8-12", "bad time '8' in 'mo 8-12'"),
        ("mo 08:00-25:00", "bad time '25:00'"),
        ("mo 08:60-09:00", "bad time '08:60'"),
        ("mo 08:00-24:01", "bad time '24:01'"),
        ("mo 24:00-24:00", "cannot start at 24:00"),
        ("mo 08:00-12:00,", "empty time range"),
        ("mo,,tu 08:00-12:00", "empty day"),
        ("mo 08:00-12:00 tu 13:00-14:00", "separate groups with ';'"),
        ("mo 08:00-12:00; xx", "no times in 'xx'"),
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=r"^opening hours: ") as err:
        OpeningHours.parse(text)
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_validate_timezone() -> None:
    assert validate_timezone(" Europe/Berlin ") == "Europe/Berlin"
    assert validate_timezone("UTC") == "UTC"


@pytest.mark.parametrize("name", ["", "Europe/Atlantis", "../../etc/passwd", "/etc/localtime"])
def test_validate_timezone_refuses(name: str) -> None:
    with pytest.raises(InvalidValue, match=r"^time zone: "):
        validate_timezone(name)


_ranges = st.lists(
    st.tuples(st.integers(0, 24 * 60 - 1), st.integers(1, 24 * 60)).filter(lambda r: r[0] < r[1]),
    min_size=1,
    max_size=4,
)


def _fmt(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


@given(st.lists(st.tuples(st.sets(st.integers(0, 6), min_size=1), _ranges), max_size=5))
def test_normal_form_is_stable_and_means_the_same(
    groups: list[tuple[set[int], list[tuple[int, int]]]],
) -> None:
    days = ("mo", "tu", "we", "th", "fr", "sa", "su")
    text = "; ".join(
        ",".join(days[d] for d in sorted(ds))
        + " "
        + ",".join(f"{_fmt(s)}-{_fmt(e)}" for s, e in rs)
        for ds, rs in groups
    )
    hours = OpeningHours.parse(text)
    again = OpeningHours.parse(str(hours))
    assert again == hours
    assert str(again) == str(hours)
    # Same meaning: compare minute by minute over one week (2025-03-03 is a Monday).
    for ds, rs in groups:
        for d in ds:
            for s, e in rs:
                assert hours.is_open(local(2025, 3, 3 + d, s // 60, s % 60), TZ)
                last = e - 1
                assert hours.is_open(local(2025, 3, 3 + d, last // 60, last % 60), TZ)
