import pytest

from ari_app.domain.actions import (
    Action,
    Announce,
    Forward,
    Voicemail,
    format_action,
    normalise_action,
    parse_action,
)
from ari_app.domain.errors import InvalidValue


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("voicemail", Voicemail()),
        (" VoiceMail ", Voicemail()),
        ("forward:+4930123456", Forward("+4930123456")),
        ("forward: +49 30 123 456", Forward("+4930123456")),
        ("Forward:0301234", Forward("0301234")),
        ("announce:custom/closed", Announce("custom/closed")),
        ("announce:vm-goodbye", Announce("vm-goodbye")),
        ("announce:hotline/closed_today", Announce("hotline/closed_today")),
    ],
)
def test_parse(text: str, action: Action) -> None:
    assert parse_action(text) == action


@pytest.mark.parametrize("action", [Voicemail(), Forward("+4930123456"), Announce("custom/closed")])
def test_format_round_trip(action: Action) -> None:
    assert parse_action(format_action(action)) == action


def test_format_values() -> None:
    assert format_action(Voicemail()) == "voicemail"
    assert format_action(Forward("+491")) == "forward:+491"
    assert format_action(Announce("a/b")) == "announce:a/b"
    assert normalise_action(" Forward:+49 30 1 ") == "forward:+49301"


def test_actions_are_frozen_and_hashable() -> None:
    assert len({Voicemail(), Voicemail(), Forward("12"), Forward("12")}) == 2
    with pytest.raises(AttributeError):
        Forward("12").number = "34"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "action: empty"),
        ("hangup", "action: unknown 'hangup'"),
        ("voicemail:100", "voicemail takes no argument"),
        ("forward", "needs a number"),
        ("forward:", "needs a number"),
        ("forward:abc", "phone number: 'abc'"),
        ("forward:100&PJSIP/200", "phone number"),
        ("forward:1", "2 to 20 digits"),
        ("announce", "needs a sound name"),
        ("announce:../../etc/passwd", "must not contain '..'"),
        ("announce:sound:custom/x", "scheme"),
        ("announce:/var/lib/x", "relative"),
        ("announce:custom/x.wav", "file extension"),
        ("announce:custom x", "only letters"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidValue) as err:
        parse_action(text)
    assert message in err.value.message
