import traceback

import pytest

from ari_app.config import load_settings
from ari_app.domain.errors import ConfigError

BASE = {
    "HOTLINE_DATABASE_URL": "postgresql://hotline@127.0.0.1/hotline",
    "HOTLINE_ARI_URL": "http://127.0.0.1:8088",
    "HOTLINE_ARI_USER": "hotline",
    "HOTLINE_ARI_PASSWORD": "s3cret",
}


def test_defaults_and_normalised_url() -> None:
    s = load_settings(BASE)
    assert s.database_url == "postgresql+asyncpg://hotline@127.0.0.1/hotline"
    assert s.ari_app == "hotline"
    assert (s.panel_host, s.panel_port) == ("127.0.0.1", 8080)
    assert s.log_level == "INFO"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize("missing", sorted(BASE))
def test_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HOTLINE_ARI_URL", "http://10.0.0.5:8088", "loopback or https"),
        ("HOTLINE_ARI_URL", "ftp://127.0.0.1", "HOTLINE_ARI_URL"),
        ("HOTLINE_DATABASE_URL", "mysql://x/y", "HOTLINE_DATABASE_URL"),
        ("HOTLINE_PANEL_LISTEN", "127.0.0.1", "HOTLINE_PANEL_LISTEN"),
        ("HOTLINE_PANEL_LISTEN", "127.0.0.1:99999", "HOTLINE_PANEL_LISTEN"),
        ("HOTLINE_PANEL_LISTEN", "127.0.0.1:-1", "HOTLINE_PANEL_LISTEN"),
        ("HOTLINE_LOG_LEVEL", "chatty", "HOTLINE_LOG_LEVEL"),
        ("HOTLINE_EXTERNAL_DIAL", "PJSIP/trunk", "HOTLINE_EXTERNAL_DIAL"),
        ("HOTLINE_ARI_APP", "bad name;", "HOTLINE_ARI_APP"),
    ],
)
def test_invalid_values_are_named(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings({**BASE, name: value})


def test_https_ari_elsewhere_is_fine_and_external_dial_formats() -> None:
    s = load_settings(
        {
            **BASE,
            "HOTLINE_ARI_URL": "https://pbx.example:8089/",
            "HOTLINE_EXTERNAL_DIAL": "PJSIP/{number}@trunk",
        }
    )
    assert s.ari_url == "https://pbx.example:8089"
    assert s.dial_external("+4930123") == "PJSIP/+4930123@trunk"


def test_db_only_commands_need_no_ari() -> None:
    s = load_settings({"HOTLINE_DATABASE_URL": "postgres://u@h/d"}, need_ari=False)
    assert s.ari_url == ""


def test_smtp_settings() -> None:
    assert load_settings(BASE).smtp is None  # no mail server: notices wait in the outbox
    local = load_settings(
        {**BASE, "HOTLINE_SMTP_HOST": "127.0.0.1", "HOTLINE_SMTP_FROM": "hotline@example.org"}
    ).smtp
    assert local is not None and (local.port, local.starttls) == (25, False)
    remote = load_settings(
        {
            **BASE,
            "HOTLINE_SMTP_HOST": "mail.example.org",
            "HOTLINE_SMTP_FROM": "hotline@example.org",
            "HOTLINE_SMTP_USER": "hotline",
            "HOTLINE_SMTP_PASSWORD": "secret",
        }
    ).smtp
    assert remote is not None and (remote.port, remote.starttls) == (587, True)
    assert "secret" not in repr(remote)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({}, "HOTLINE_SMTP_FROM"),
        ({"HOTLINE_SMTP_FROM": "a@b, c@d"}, "HOTLINE_SMTP_FROM"),
        ({"HOTLINE_SMTP_FROM": "a@b.org", "HOTLINE_SMTP_PORT": "x"}, "HOTLINE_SMTP_PORT"),
        ({"HOTLINE_SMTP_FROM": "a@b.org", "HOTLINE_SMTP_STARTTLS": "maybe"}, "STARTTLS"),
        ({"HOTLINE_SMTP_FROM": "a@b.org", "HOTLINE_SMTP_USER": "u"}, "go together"),
        (
            {
                "HOTLINE_SMTP_FROM": "a@b.org",
                "HOTLINE_SMTP_USER": "u",
                "HOTLINE_SMTP_PASSWORD": "p",
                "HOTLINE_SMTP_STARTTLS": "no",
            },
            "STARTTLS=yes",
        ),
    ],
)
def test_smtp_errors_are_named(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings({**BASE, "HOTLINE_SMTP_HOST": "mail.example.org", **extra})


def test_vm_link_url_needs_id() -> None:
    with pytest.raises(ConfigError, match="HOTLINE_VM_LINK_URL"):
        load_settings({**BASE, "HOTLINE_VM_LINK_URL": "https://intranet/vm"})


def test_languages() -> None:
    s = load_settings(BASE)
    assert (s.language, s.panel_language) == ("de", "de")  # the shipped default: German
    s = load_settings({**BASE, "HOTLINE_LANGUAGE": "EN", "HOTLINE_PANEL_LANGUAGE": "en"})
    assert (s.language, s.panel_language) == ("en", "en")
    for name in ("HOTLINE_LANGUAGE", "HOTLINE_PANEL_LANGUAGE"):
        with pytest.raises(ConfigError, match=name):
            load_settings({**BASE, name: "fr"})


@pytest.mark.parametrize(
    "url",
    [
        "hotline:Secr3tPw@127.0.0.1:8088",  # no scheme: urlsplit takes "hotline" for one
        "http:/hotline:Secr3tPw@127.0.0.1:8088",
        "http://hotline:Secr3tPw@[127.0.0.1:8088",  # urlsplit raises
        "ftp://hotline:Secr3tPw@127.0.0.1",
        "http://[::1:Secr3tPw",
        "Secr3tPw",  # a password pasted into the wrong variable
    ],
)
def test_a_malformed_ari_url_is_never_echoed(url: str) -> None:
    """Finding 10: whatever is wrong with HOTLINE_ARI_URL, the error does not repeat it."""
    with pytest.raises(ConfigError, match="HOTLINE_ARI_URL") as caught:
        load_settings({**BASE, "HOTLINE_ARI_URL": url})
    # nor does a chained exception (what a traceback would print)
    assert "Secr3tPw" not in "".join(traceback.format_exception(caught.value))
