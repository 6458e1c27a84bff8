"""Shared fixtures: a fresh PostgreSQL database per test session, migrated with
`alembic upgrade head` (never create_all) and dropped afterwards.

HOTLINE_TEST_DATABASE_URL (a server URL, e.g. postgresql://postgres@127.0.0.1/postgres)
points the tests at an existing server; without it they start a private cluster.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ari_app.config import normalise_database_url
from ari_app.db import migrate
from ari_app.db.base import Base
from ari_app.db.session import make_engine, make_sessionmaker
from devenv.asterisk import AsteriskError, asterisk_install
from devenv.postgres import PrivatePostgres

T = TypeVar("T")


def pytest_report_header(config: pytest.Config) -> str:
    """Which Asterisk the e2e tests run (``$HOTLINE_ASTERISK`` or the one on PATH)."""
    try:
        install = asterisk_install()
        return f"asterisk: {install.version()} ({install.binary})"
    except (AsteriskError, OSError, subprocess.SubprocessError) as exc:
        return f"asterisk: none ({exc})"


def _in_thread(fn: Callable[[], T]) -> T:
    """Run blocking set-up (asyncio.run inside) in a thread: asyncio.run in the main thread
    would unset the event loop pytest-asyncio's session fixtures run on."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    _in_thread(lambda: asyncio.run(coro))


def _admin_dsn(url: str) -> str:
    return (
        make_url(normalise_database_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a server database we may create databases from."""
    configured = os.environ.get("HOTLINE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    cluster = PrivatePostgres(tmp_path_factory.mktemp("pg"), durable=False)
    cluster.start()
    try:
        yield cluster.url("postgres")
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh database migrated to head; dropped at the end of the session."""
    name = f"hotline_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_dsn(pg_server)

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(create())
    url = make_url(normalise_database_url(pg_server)).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(rendered)
        yield rendered
    finally:
        _run(drop())


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a database emptied before each test."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield make_sessionmaker(engine)


REPO = Path(__file__).resolve().parents[1]
