"""Security properties that cut across modules (SECURITY.md): the ARI password never shows
in a log line, an error or a repr; `hotline serve` refuses an ARI URL that would send it in
clear; SQL is only ever built with bound parameters; the dialplan never dials what a caller
typed. (PIN hashing and lockouts: test_pin.py, db/test_auth.py; the panel's token:
db/test_web_access.py; the ARI client's own secrecy: test_ari_client.py.)"""

from __future__ import annotations

import ast
import asyncio
import base64
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_ari import FakeAri

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.config import load_settings
from ari_app.domain.errors import ConfigError
from devenv.ports import free_port

REPO = Path(__file__).resolve().parents[2]
HOTLINE = str(Path(sys.executable).with_name("hotline"))
SECRET = "Zq8-very-secret-ari-pw"
TOKEN = base64.b64encode(f"hotline:{SECRET}".encode()).decode()  # the Basic auth header
DB_URL = "postgresql://nobody@127.0.0.1:1/none"


def _leaks(text: str) -> bool:
    return SECRET in text or TOKEN in text


# --- hotline serve and the ARI URL ----------------------------------------------------------


def _serve(ari_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOTLINE_DATABASE_URL": DB_URL,
        "HOTLINE_ARI_URL": ari_url,
        "HOTLINE_ARI_USER": "hotline",
        "HOTLINE_ARI_PASSWORD": SECRET,
        "HOTLINE_PANEL_LISTEN": "127.0.0.1:0",
    }
    return subprocess.run(
        [HOTLINE, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.5:8088", "loopback or https"),
        (f"ftp://hotline:{SECRET}@pbx.example/", "must not contain credentials"),
        (f"http://hotline:{SECRET}@127.0.0.1:8088", "must not contain credentials"),
    ],
)
def test_serve_refuses_an_ari_url_that_exposes_the_credentials(url: str, why: str) -> None:
    done = _serve(url)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not _leaks(done.stdout + done.stderr), done.stderr


def _settings(url: str) -> None:
    load_settings(
        {
            "HOTLINE_DATABASE_URL": DB_URL,
            "HOTLINE_ARI_URL": url,
            "HOTLINE_ARI_USER": "hotline",
            "HOTLINE_ARI_PASSWORD": SECRET,
        }
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://pbx.example:8088", "loopback or https"),
        ("http://localhost.attacker.example:8088", "loopback or https"),
        ("http://127.0.0.1.nip.io:8088", "loopback or https"),
        ("http://0.0.0.0:8088", "loopback or https"),
        ("http://[::ffff:10.0.0.5]:8088", "loopback or https"),
        ("ws://127.0.0.1:8088", "http(s)://host:port"),
        ("wss://pbx.example:8089", "http(s)://host:port"),
        (f"https://hotline:{SECRET}@pbx.example:8089", "must not contain credentials"),
        (f"ws://hotline:{SECRET}@127.0.0.1:1", "must not contain credentials"),
        (f"http://:{SECRET}@127.0.0.1:1", "must not contain credentials"),
    ],
)
def test_ari_urls_refused_without_echoing_a_password(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(url)
    assert why in caught.value.message
    assert not _leaks(str(caught.value)) and not _leaks(repr(caught.value))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8088",
        "http://127.3.4.5:8088",
        "http://localhost:8088",
        "http://[::1]:8088",
        "https://pbx.example:8089",
    ],
)
def test_loopback_or_tls_ari_urls_are_accepted(url: str) -> None:
    settings = load_settings(
        {
            "HOTLINE_DATABASE_URL": DB_URL,
            "HOTLINE_ARI_URL": url,
            "HOTLINE_ARI_USER": "hotline",
            "HOTLINE_ARI_PASSWORD": SECRET,
        }
    )
    assert settings.ari_url == url


def test_settings_never_show_secrets() -> None:
    settings = load_settings(
        {
            "HOTLINE_DATABASE_URL": DB_URL,
            "HOTLINE_ARI_URL": "http://127.0.0.1:8088",
            "HOTLINE_ARI_USER": "hotline",
            "HOTLINE_ARI_PASSWORD": SECRET,
            "HOTLINE_PANEL_TOKEN": "panel-token-0123456789abcdef",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        assert SECRET not in text and "panel-token-0123456789abcdef" not in text


# --- the ARI password in logs and errors ------------------------------------------------------


def _exception_texts(exc: BaseException) -> str:
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


async def test_no_secret_when_asterisk_is_unreachable_or_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    # Nothing listens: connection refused, for REST and for the event stream.
    async with AriClient(
        f"http://127.0.0.1:{free_port('127.0.0.1', 'tcp')}", "hotline", SECRET, "hotline", timeout=1
    ) as client:
        with pytest.raises(AriError) as refused:
            await client.list_channels()
        errors.append(refused.value)
        stream = client.events(lambda e: None, backoff_initial=0.01, backoff_max=0.02)
        stream.start()
        try:
            await _until(lambda: stream.last_error is not None)
        finally:
            await stream.close()
        assert stream.last_error is not None and not _leaks(stream.last_error)
        assert not _leaks(repr(client)) and not _leaks(repr(stream))
    # Asterisk answers but with another password: 401 on REST and on the WebSocket.
    async with FakeAri(password="the-right-one") as fake:
        async with AriClient(fake.base_url, "hotline", SECRET, "hotline", timeout=1) as client:
            with pytest.raises(AriError) as unauthorised:
                await client.list_channels()
            errors.append(unauthorised.value)
            stream = client.events(lambda e: None, backoff_initial=0.01, backoff_max=0.02)
            stream.start()
            try:
                await fake.wait_for(lambda: fake.ws_attempts >= 2)
            finally:
                await stream.close()
    assert caplog.records
    for record in caplog.records:
        assert not _leaks(record.getMessage()), record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            assert not _leaks(_exception_texts(record.exc_info[1]))
    for exc in errors:
        assert not _leaks(_exception_texts(exc))


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async def loop() -> None:
        while True:
            if check():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


# --- SQL only with bound parameters ---------------------------------------------------------

SQL_CALLS = {"text", "execute", "exec_driver_sql", "executemany", "fetch", "fetchrow", "fetchval"}


def _built_string(node: ast.expr) -> bool:
    """An f-string, % formatting, + concatenation or .format(): a string built at run time."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def _sql_built_from_strings(source: str) -> list[int]:
    """Lines where a SQL-executing call gets a string built at run time."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in SQL_CALLS and _built_string(node.args[0]):
            found.append(node.lineno)
    return sorted(found)


def test_sql_is_never_built_from_strings() -> None:
    """Queries go through SQLAlchemy expressions or text() with bound parameters; no f-string,
    % or + ever becomes SQL in the application, the CLI or the migrations. (The dev tools in
    devenv quote identifiers themselves and never see user input.)"""
    files = [
        p
        for folder in ("ari_app", "cli", "migrations")
        for p in (REPO / folder).rglob("*.py")
        if "devenv" not in p.parts
    ]
    assert len(files) > 30
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in files
        for line in _sql_built_from_strings(path.read_text())
    ]
    assert offenders == []


def test_the_sql_scan_finds_built_strings() -> None:
    source = (
        "async def f(session, name, text):\n"
        "    await session.execute(text(f\"SELECT * FROM agents WHERE name = '{name}'\"))\n"
        "    await session.execute('DELETE FROM calls WHERE id = %s' % name)\n"
        "    await session.execute(text('SELECT 1 WHERE x = :x'), {'x': name})\n"
        "    await session.execute(text('SELECT 1'))\n"
    )
    assert _sql_built_from_strings(source) == [2, 3]


# --- the dialplan never dials caller input --------------------------------------------------


def test_dialplan_dials_only_configured_globals() -> None:
    """Every Dial() in the product dialplan takes its target from a GLOBAL() ops set, never
    from ${EXTEN} or any channel variable a caller could influence."""
    text = (REPO / "dialplan" / "extensions_hotline.conf").read_text()
    code = [line.split(";", 1)[0] for line in text.splitlines()]
    dials = [line for line in code if re.search(r"\bDial\(", line)]
    assert dials, "the fallback dials HOTLINE_FALLBACK_DIAL"
    for line in dials:
        target = line.split("Dial(", 1)[1].split(",", 1)[0]
        assert target.startswith("${GLOBAL(") and "EXTEN" not in target, line
        variables = re.findall(r"\$\{([^}(]+)", line)
        assert all(v in ("GLOBAL", "IF", "LEN") for v in variables), line
    for line in code:
        if "Stasis(" in line:
            # The app receives the dialled number as an argument, which only the app reads.
            assert "Dial" not in line
