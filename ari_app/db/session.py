"""Engine and session factory. Callers own sessions: one `async with session.begin()` per
unit of work, never shared between tasks (DESIGN.md, convention 6)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ari_app.config import normalise_database_url


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # No pre-ping: for asyncpg it costs every checkout three round trips (BEGIN, an empty
    # query, ROLLBACK), about a third of a call's statements. Instead a checkout looks at
    # what the driver already knows: a connection the server closed (a database restart)
    # is replaced before use. The pool is large enough that busy moments do not open
    # connections.
    if "poolclass" not in kwargs:
        kwargs = {"pool_size": 20, "max_overflow": 10} | kwargs
    engine = create_async_engine(normalise_database_url(url), **kwargs)
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout hook: DisconnectionError makes the pool open a fresh connection."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("connection closed by the server")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without a lazy load.
    return async_sessionmaker(engine, expire_on_commit=False)


def make_statement_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same pool whose statements each commit on their own: no BEGIN and
    COMMIT round trips. Only for units of work that are one statement."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
