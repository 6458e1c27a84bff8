import pytest

from ari_app.domain.errors import InvalidValue
from ari_app.domain.features import (
    Collected,
    FeatureCodes,
    FeatureRequest,
    collect,
    parse_feature,
)

CODES = FeatureCodes()


def test_defaults() -> None:
    assert (CODES.login, CODES.logout, CODES.pause, CODES.status, CODES.voicemail) == (
        "*21",
        "*22",
        "*23",
        "*24",
        "*98",
    )


@pytest.mark.parametrize(
    ("dialled", "request_"),
    [
        ("*21", FeatureRequest("login", None)),
        ("*21500", FeatureRequest("login", "500")),
        ("*22", FeatureRequest("logout", None)),
        ("*2230123", FeatureRequest("logout", "30123")),
        ("*23", FeatureRequest("pause", None)),
        ("*24500", FeatureRequest("status", "500")),
        ("*98500", FeatureRequest("voicemail", "500")),
        ("*21" + "1" * 20, FeatureRequest("login", "1" * 20)),
    ],
)
def test_parse(dialled: str, request_: FeatureRequest) -> None:
    assert parse_feature(dialled, CODES) == request_
    assert parse_feature(dialled) == request_


@pytest.mark.parametrize(
    ("dialled", "message"),
    [
        ("", "unknown ''"),
        ("*99", "unknown '*99'"),
        ("21", "unknown '21'"),
        ("500", "unknown '500'"),
        ("*2", "unknown '*2'"),
        ("*24", "*24 needs a hotline number"),
        ("*98", "*98 needs a hotline number"),
        ("*23500", "*23 takes no hotline number"),
        ("*21abc", "only digits"),
        ("*21*5", "only digits"),
        ("*21#", "only digits"),
        ("*21+49", "only digits"),
        ("*21" + "1" * 21, "more than 20 digits"),
        ("*245", "2 to 20 digits"),
    ],
)
def test_errors(dialled: str, message: str) -> None:
    with pytest.raises(InvalidValue) as err:
        parse_feature(dialled, CODES)
    assert message in err.value.message


def test_longest_prefix_wins() -> None:
    codes = FeatureCodes(login="*2", logout="*21", pause="*3", status="*4", voicemail="*5")
    assert parse_feature("*21", codes) == FeatureRequest("logout", None)
    assert parse_feature("*21500", codes) == FeatureRequest("logout", "500")
    assert parse_feature("*2500", codes) == FeatureRequest("login", "500")
    assert parse_feature("*2", codes) == FeatureRequest("login", None)


def test_custom_codes() -> None:
    codes = FeatureCodes(login="#1", logout="#2", pause="#3", status="#4", voicemail="#5")
    assert parse_feature("#1500", codes) == FeatureRequest("login", "500")
    with pytest.raises(InvalidValue):
        parse_feature("*21", codes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"login": ""}, "feature code login"),
        ({"login": "*2a"}, "keypad keys"),
        ({"pause": "*21"}, "already the code for login"),
        ({"voicemail": "*" * 11}, "keypad keys"),
    ],
)
def test_invalid_codes(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidValue) as err:
        FeatureCodes(**kwargs)
    assert message in err.value.message


# digit collection


def feed(keys: str, *, max_len: int = 6, terminator: str | None = "#") -> Collected:
    state = Collected(False, "")
    for key in keys:
        state = collect(state.value, key, max_len=max_len, terminator=terminator)
        if state.done:
            break
    return state


def test_collect_until_terminator() -> None:
    assert collect("", "1", max_len=6) == (False, "1")
    assert collect("12", "3", max_len=6) == (False, "123")
    assert collect("123", "#", max_len=6) == (True, "123")
    assert feed("1001#") == Collected(True, "1001")


def test_star_clears() -> None:
    assert collect("123", "*", max_len=6) == (False, "")
    assert feed("99*1001#") == Collected(True, "1001")


def test_empty_entry_is_returned_as_is() -> None:
    assert feed("#") == Collected(True, "")


def test_exactly_max_len_is_fine() -> None:
    assert feed("123456#") == Collected(True, "123456")


def test_too_long_is_an_error() -> None:
    with pytest.raises(InvalidValue, match="more than 6 digits"):
        feed("1234567#")


def test_other_terminator() -> None:
    assert feed("12*34A", terminator="A") == Collected(True, "34")
    with pytest.raises(InvalidValue, match="unexpected key '#'"):
        feed("12#", terminator=None)


def test_letter_keys_are_refused() -> None:
    with pytest.raises(InvalidValue, match="unexpected key 'B'"):
        collect("1", "B", max_len=6)


@pytest.mark.parametrize("key", ["", "12", "x", "+"])
def test_non_keys_are_programming_errors(key: str) -> None:
    with pytest.raises(ValueError):
        collect("", key, max_len=6)


def test_star_cannot_be_the_terminator() -> None:
    with pytest.raises(ValueError):
        collect("", "1", max_len=6, terminator="*")
