"""Settings from HOTLINE_* environment variables (DESIGN.md, "Configuration").

A missing or invalid value raises ConfigError naming the variable; the CLI turns it into
one line on stderr and exit code 1.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from ari_app.domain import values
from ari_app.domain.errors import ConfigError, InvalidValue
from ari_app.domain.features import FeatureCodes
from ari_app.domain.pin import PIN_MAX_LENGTH, PIN_MIN_LENGTH, LockoutPolicy
from ari_app.domain.sounds import DEFAULT_LANGUAGE
from ari_app.domain.sounds import language as _language

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_RETENTION = "90d"
MIN_RETENTION_S = 86400  # a shorter period would purge today's voicemails: surely a typo
DEFAULT_MAX_CALL = "4h"
# The dialplan context a redirect (302) of a leg the app originates would be dialled in:
# it has no extensions, so Asterisk dials nothing (extensions_hotline.conf reserves it).
NO_REDIRECT_CONTEXT = "hotline-no-redirect"


@dataclass(frozen=True)
class SmtpSettings:
    """HOTLINE_SMTP_*: the mail server for voicemail notifications (issue 16)."""

    host: str
    port: int = 25
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    starttls: bool = True


@dataclass(frozen=True)
class Settings:
    database_url: str
    ari_url: str = ""
    ari_user: str = ""
    ari_password: str = field(default="", repr=False)
    ari_app: str = "hotline"
    external_dial: str = ""
    panel_host: str = "127.0.0.1"
    panel_port: int = 8080
    panel_token: str = field(default="", repr=False)
    # HOTLINE_PANEL_COOKIE_MAX_AGE, _TRUSTED_PROXY, _STREAMS_PER_CLIENT (web/auth.py)
    panel_cookie_max_age_s: int = 12 * 3600
    panel_trusted_proxies: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()
    panel_streams_per_client: int = 4
    log_level: str = "INFO"
    node: str = "node1"
    retention_s: int = 90 * 86400
    # Feature codes and PIN rules (HOTLINE_FEATURE_CODES, HOTLINE_PIN_*): phone edges only.
    feature_codes: FeatureCodes = field(default_factory=FeatureCodes)
    pin_min_length: int = PIN_MIN_LENGTH
    pin_lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    # Voicemail notification: None = no mail server configured (nothing is sent; queued
    # messages wait in the outbox until one is). The link template names {id}.
    smtp: SmtpSettings | None = None
    vm_link_url: str = ""
    # HOTLINE_LANGUAGE: what callers and agents hear unless their hotline / agent says;
    # HOTLINE_PANEL_LANGUAGE: the panel's language for browsers asking for neither.
    language: str = DEFAULT_LANGUAGE
    panel_language: str = DEFAULT_LANGUAGE
    # HOTLINE_MAX_CALL_DURATION: no leg the app originates lives longer (ring time included)
    max_call_s: int = 4 * 3600

    def dial_external(self, number: str) -> str:
        """Dial string for an external number ops configured (never caller-typed digits)."""
        return self.external_dial.format(number=number)

    def leg_variables(self) -> dict[str, str]:
        """Channel variables for every leg the app originates (agents, forward targets,
        escalation numbers, handover colleagues):
        - an absolute timeout, so no leg (a forward to a number that pumps traffic, a
          bridge nobody ends) outlives HOTLINE_MAX_CALL_DURATION;
        - a forward context without extensions: a device answering `302 Moved` makes
          Asterisk's dialler call the Contact's user in FORWARD_CONTEXT, i.e. nowhere,
          instead of in the endpoint's own context (where a premium number would dial).
        """
        return {
            "TIMEOUT(absolute)": str(self.max_call_s),
            "FORWARD_CONTEXT": NO_REDIRECT_CONTEXT,
        }


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def normalise_database_url(url: str) -> str:
    """Accept postgresql:// and postgres:// URLs; the app always speaks asyncpg."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("HOTLINE_DATABASE_URL is not a URL (postgresql://user@host/db)")
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ConfigError(f"HOTLINE_DATABASE_URL: unsupported scheme {scheme!r} (use postgresql://)")


def database_url_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return normalise_database_url(_require(env, "HOTLINE_DATABASE_URL"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_ari_url(url: str) -> str:
    # No error here ever echoes the URL: a malformed one may still hold a secret
    # ("user:pass@host" without a scheme, "http:/user:pass@host", a stray "[").
    shape = "HOTLINE_ARI_URL must be http(s)://host:port"
    if "@" in url:
        raise ConfigError(
            "HOTLINE_ARI_URL must not contain credentials (use HOTLINE_ARI_USER/_PASSWORD)"
        )
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise ConfigError(shape) from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(shape)
    # Credentials cross this link in clear unless it is loopback or TLS.
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise ConfigError("HOTLINE_ARI_URL must be loopback or https (ARI credentials)")
    return url.rstrip("/")


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free
        raise ConfigError(f"HOTLINE_PANEL_LISTEN must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _feature_codes(env: Mapping[str, str]) -> FeatureCodes:
    """`login=*21,logout=*22,pause=*23,status=*24,voicemail=*98`; unnamed codes keep
    their defaults. The dialplan's [hotline-features] patterns must match the codes."""
    text = env.get("HOTLINE_FEATURE_CODES", "").strip()
    if not text:
        return FeatureCodes()
    names = ("login", "logout", "pause", "status", "voicemail")
    codes: dict[str, str] = {}
    for part in text.split(","):
        name, sep, code = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in names or name in codes:
            raise ConfigError(
                f"HOTLINE_FEATURE_CODES: {part.strip()!r} must be <feature>=<code> with a"
                f" feature out of {', '.join(names)}, each at most once"
            )
        codes[name] = code.strip()
    try:
        return FeatureCodes(**codes)
    except InvalidValue as exc:
        raise ConfigError(f"HOTLINE_FEATURE_CODES: {exc.message}") from None


def _int_between(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isdigit() and text.isascii()) or not low <= int(text) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)


def _pin_lockout(env: Mapping[str, str]) -> LockoutPolicy:
    failures = _int_between(env, "HOTLINE_PIN_MAX_FAILURES", 3, 1, 100)
    text = env.get("HOTLINE_PIN_LOCKOUT", "").strip()
    seconds = 15 * 60
    if text:
        try:
            seconds = values.duration(text)
        except InvalidValue:
            seconds = 0
        if seconds <= 0:
            raise ConfigError(f"HOTLINE_PIN_LOCKOUT must be a duration like 15m, got {text!r}")
    # Locks of a streak double up to HOTLINE_PIN_LOCKOUT_MAX (domain/pin.py, SECURITY.md).
    longest = _duration(env, "HOTLINE_PIN_LOCKOUT_MAX", max(86400, seconds), seconds, 30 * 86400)
    return LockoutPolicy(
        max_failures=failures,
        lock_for=timedelta(seconds=seconds),
        max_lock=timedelta(seconds=longest),
        alert_failures=_int_between(env, "HOTLINE_PIN_ALERT_FAILURES", 20, 1, 100_000),
        alert_window=timedelta(seconds=_duration(env, "HOTLINE_PIN_ALERT_WINDOW", 600, 60, 86400)),
    )


def _duration(env: Mapping[str, str], name: str, default_s: int, low_s: int, high_s: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default_s
    try:
        seconds = values.duration(text)
    except InvalidValue:
        seconds = -1
    if not low_s <= seconds <= high_s:
        raise ConfigError(
            f"{name} must be a duration like 12h from {low_s}s to {high_s}s, got {text!r}"
        )
    return seconds


def _trusted_proxies(
    env: Mapping[str, str],
) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    text = env.get("HOTLINE_PANEL_TRUSTED_PROXY", "")
    out = set()
    for part in text.split(","):
        part = part.strip().strip("[]")
        if not part:
            continue
        try:
            out.add(ipaddress.ip_address(part))
        except ValueError:
            raise ConfigError(
                f"HOTLINE_PANEL_TRUSTED_PROXY: {part!r} is not an IP address"
            ) from None
    return frozenset(out)


def retention_seconds(env: Mapping[str, str]) -> int:
    """HOTLINE_RETENTION: how long caller numbers and voicemails are kept (default 90d)."""
    text = env.get("HOTLINE_RETENTION", "").strip() or DEFAULT_RETENTION
    try:
        seconds = values.duration(text)
    except InvalidValue as exc:
        raise ConfigError(f"HOTLINE_RETENTION: {exc.message}") from None
    if seconds < MIN_RETENTION_S:
        raise ConfigError("HOTLINE_RETENTION: must be at least 1d (a day)")
    return seconds


def _yes_no(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise ConfigError(f"{name} must be yes or no, got {text!r}")


def smtp_settings(env: Mapping[str, str]) -> SmtpSettings | None:
    """HOTLINE_SMTP_HOST/PORT/USER/PASSWORD/FROM/STARTTLS; None without a host."""
    host = env.get("HOTLINE_SMTP_HOST", "").strip()
    if not host:
        return None
    starttls = _yes_no(env, "HOTLINE_SMTP_STARTTLS", not _is_loopback(host))
    port = _int_between(env, "HOTLINE_SMTP_PORT", 587 if starttls else 25, 1, 65535)
    sender = env.get("HOTLINE_SMTP_FROM", "").strip()
    if not sender:
        raise ConfigError("HOTLINE_SMTP_FROM is not set (the sender of voicemail notifications)")
    try:
        sender = values.email_address(sender)
    except InvalidValue as exc:
        raise ConfigError(f"HOTLINE_SMTP_FROM: {exc.message}") from None
    user = env.get("HOTLINE_SMTP_USER", "").strip()
    password = env.get("HOTLINE_SMTP_PASSWORD", "")
    if bool(user) != bool(password):
        raise ConfigError("HOTLINE_SMTP_USER and HOTLINE_SMTP_PASSWORD go together")
    # The password would cross the network in clear.
    if user and not starttls and not _is_loopback(host):
        raise ConfigError("HOTLINE_SMTP_USER needs HOTLINE_SMTP_STARTTLS=yes beyond loopback")
    return SmtpSettings(host, port, user, password, sender, starttls)


def _vm_link_url(env: Mapping[str, str]) -> str:
    url = env.get("HOTLINE_VM_LINK_URL", "").strip()
    if url and "{id}" not in url:
        raise ConfigError("HOTLINE_VM_LINK_URL must contain {id}, e.g. https://intranet/vm/{id}")
    return url


def _language_of(env: Mapping[str, str], name: str) -> str:
    text = env.get(name, "").strip()
    if not text:
        return DEFAULT_LANGUAGE
    try:
        return _language(text)
    except InvalidValue as exc:
        raise ConfigError(f"{name}: {exc.message}") from None


def max_call_seconds(env: Mapping[str, str]) -> int:
    """HOTLINE_MAX_CALL_DURATION (default 4h): from 1 minute to 1 day."""
    text = env.get("HOTLINE_MAX_CALL_DURATION", "").strip() or DEFAULT_MAX_CALL
    try:
        seconds = values.duration(text)
    except InvalidValue:
        seconds = 0
    if not 60 <= seconds <= 86400:
        raise ConfigError(
            f"HOTLINE_MAX_CALL_DURATION must be a duration from 1m to 1d like 4h, got {text!r}"
        )
    return seconds


def load_settings(env: Mapping[str, str] | None = None, *, need_ari: bool = True) -> Settings:
    """Read and validate settings; need_ari=False for DB-only commands."""
    env = os.environ if env is None else env
    database_url = database_url_from_env(env)
    ari_url = ari_user = ari_password = ""
    if need_ari:
        ari_url = _check_ari_url(_require(env, "HOTLINE_ARI_URL"))
        ari_user = _require(env, "HOTLINE_ARI_USER")
        ari_password = _require(env, "HOTLINE_ARI_PASSWORD")
    app = env.get("HOTLINE_ARI_APP", "hotline").strip() or "hotline"
    if not app.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"HOTLINE_ARI_APP must be a plain name, got {app!r}")
    external_dial = env.get("HOTLINE_EXTERNAL_DIAL", "").strip()
    if external_dial and "{number}" not in external_dial:
        raise ConfigError("HOTLINE_EXTERNAL_DIAL must contain {number}, e.g. PJSIP/{number}@trunk")
    panel_host, panel_port = _parse_listen(env.get("HOTLINE_PANEL_LISTEN", "127.0.0.1:8080"))
    level = env.get("HOTLINE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"HOTLINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return Settings(
        database_url=database_url,
        ari_url=ari_url,
        ari_user=ari_user,
        ari_password=ari_password,
        ari_app=app,
        external_dial=external_dial,
        panel_host=panel_host,
        panel_port=panel_port,
        panel_token=env.get("HOTLINE_PANEL_TOKEN", "").strip(),
        # at most 30 days: a copied cookie must stop working some day
        panel_cookie_max_age_s=_duration(
            env, "HOTLINE_PANEL_COOKIE_MAX_AGE", 12 * 3600, 60, 30 * 86400
        ),
        panel_trusted_proxies=_trusted_proxies(env),
        panel_streams_per_client=_int_between(env, "HOTLINE_PANEL_STREAMS_PER_CLIENT", 4, 1, 100),
        log_level=level,
        node=env.get("HOTLINE_NODE", "").strip() or os.uname().nodename,
        feature_codes=_feature_codes(env),
        # 4: below that, domain.pin.check_pin_policy refuses the minimum itself
        pin_min_length=_int_between(
            env, "HOTLINE_PIN_MIN_LENGTH", PIN_MIN_LENGTH, 4, PIN_MAX_LENGTH
        ),
        pin_lockout=_pin_lockout(env),
        smtp=smtp_settings(env),
        vm_link_url=_vm_link_url(env),
        language=_language_of(env, "HOTLINE_LANGUAGE"),
        panel_language=_language_of(env, "HOTLINE_PANEL_LANGUAGE"),
        max_call_s=max_call_seconds(env),
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
