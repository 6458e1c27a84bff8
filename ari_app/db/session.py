"""Engine and session factory. Callers own sessions: one `async with session.begin()` per
unit of work, never shared between tasks (DESIGN.md, convention 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DisconnectionError
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
    """A text() statement compiled once, at import, for asyncpg and sent with
    `exec_driver_sql`: no compilation, cache lookup or ORM layer per execution, but
    SQLAlchemy's pool, errors and invalidation of broken connections stay (a third of the
    client CPU of a session's execute, benchmarks/NOTES.md). Result rows are the driver's
    values: meant for text() statements, whose columns have no types to process."""

    sql: str
    names: tuple[str, ...]  # the parameters in the order of $1, $2, ...

    @classmethod
    def compile(cls, statement: TextClause) -> DriverStatement:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    async def rows(self, db: Db, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        connection = db if isinstance(db, AsyncConnection) else await db.connection()
        result = await connection.exec_driver_sql(
            self.sql, tuple(params[name] for name in self.names)
        )
        return result.all() if result.returns_rows else ()
