"""Engine and session factory. Callers own sessions: one `async with session.begin()` per
unit of work, never shared between tasks (DESIGN.md, convention 6)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Select, event
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import TextClause

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


def make_statement_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, but each statement commits on its own: no BEGIN and COMMIT round
    trips. Only for units of work that are one statement."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


# Where a unit of work runs: the caller's session (in its transaction), or a connection
# (the call path's single statements, FlowContext.statement).
Db = AsyncSession | AsyncConnection


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled once, at import, for asyncpg: no compilation, cache lookup or
    ORM layer per execution. On a connection (the call path's, FlowContext.statement)
    asyncpg sends it itself (`_fetch`), in a session `exec_driver_sql`; SQLAlchemy's pool
    and errors stay either way (less than half the client CPU of a session's execute,
    benchmarks/NOTES.md). Values of a Core select's columns are converted as SQLAlchemy
    would (their result processors: an enum column's text to the Python enum); a text()
    statement's columns have no types: the driver's values."""

    sql: str
    names: tuple[str, ...]  # the parameters in the order of $1, $2, ...
    # Values the statement binds itself (a Core select's literals), ready for the driver.
    literals: Mapping[str, Any] = field(default_factory=dict)
    processors: tuple[Callable[[Any], Any] | None, ...] = ()  # per result column

    @classmethod
    def compile(cls, statement: TextClause | Select[Any]) -> DriverStatement:
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        literals = {
            name: value.value if isinstance(value, enum.Enum) else value
            for name, value in compiled.params.items()
            if value is not None
        }
        processors: tuple[Callable[[Any], Any] | None, ...] = ()
        if isinstance(statement, Select):
            processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in statement.selected_columns
            )
        return cls(compiled.string, tuple(compiled.positiontup or ()), literals, processors)

    async def rows(self, db: Db, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        args = tuple(params[name] if name in params else self.literals[name] for name in self.names)
        if isinstance(db, AsyncConnection):
            rows: Sequence[Sequence[Any]] = await _fetch(db, self.sql, args)
        else:
            result = await (await db.connection()).exec_driver_sql(self.sql, args)
            rows = result.all() if result.returns_rows else ()
        if not any(self.processors):
            return rows
        return [
            tuple(
                value if convert is None else convert(value)
                for convert, value in zip(self.processors, row, strict=True)
            )
            for row in rows
        ]


# The server is gone or going: the connection will not serve another statement.
_SERVER_GONE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


async def _fetch(connection: AsyncConnection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """The statement sent by asyncpg itself on the pooled connection: a third less client
    CPU than exec_driver_sql (SQLAlchemy's cursor adapter and result; benchmarks/NOTES.md).
    What SQLAlchemy's adapter would do is done here: every error of the driver becomes a
    DBAPIError (the flows catch SQLAlchemy's errors and keep the caller), and a connection
    that may be broken or busy (the server closing it; a statement cancelled half-way) is
    invalidated, so that the pool never hands it out again. The connection is the
    caller's alone; meant for AUTOCOMMIT ones (FlowContext.statement)."""
    # The checked-out connection's driver, without get_raw_connection's greenlet (only a
    # connection invalidated meanwhile needs that: it reconnects).
    sync = connection.sync_connection
    pooled = (
        sync.connection
        if sync is not None and not sync.invalidated
        else await connection.get_raw_connection()
    )
    driver = pooled.driver_connection
    assert driver is not None, "a checked-out connection has its driver's"
    try:
        rows: list[Any] = await driver.fetch(sql, *args)
        return rows
    except asyncio.CancelledError:
        await connection.invalidate()  # asyncpg may still be busy with the statement
        raise
    except Exception as exc:
        # E.g. InternalClientError ("another operation is in progress") on a connection
        # whose server sent its FATAL but has not closed the socket yet: seen in
        # tests/e2e/test_database_outage.py, where it dropped a caller while unmapped.
        broken = (
            not isinstance(exc, asyncpg.PostgresError)
            or isinstance(exc, _SERVER_GONE)
            or driver.is_closed()
        )
        if broken:
            await connection.invalidate(exc)
        raise DBAPIError(sql, args, exc, connection_invalidated=broken) from exc
