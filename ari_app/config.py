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
from urllib.parse import urlsplit

from ari_app.domain.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    log_level: str = "INFO"
    node: str = "node1"

    def dial_external(self, number: str) -> str:
        """Dial string for an external number ops configured (never caller-typed digits)."""
        return self.external_dial.format(number=number)


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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"HOTLINE_ARI_URL must be http(s)://host:port, got {url!r}")
    # Credentials cross this link in clear unless it is loopback or TLS.
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError("HOTLINE_ARI_URL must be loopback or https (ARI credentials)")
    return url.rstrip("/")


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free
        raise ConfigError(f"HOTLINE_PANEL_LISTEN must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


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
        log_level=level,
        node=env.get("HOTLINE_NODE", "").strip() or os.uname().nodename,
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
