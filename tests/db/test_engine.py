"""The app's engine without pool pre-ping: a pooled connection the server closed (as in a
database restart) is replaced at checkout instead of failing the next unit of work."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ari_app.db.session import (
    DriverStatement,
    make_engine,
    make_sessionmaker,
    make_statement_engine,
)

pytestmark = pytest.mark.db


async def test_a_connection_the_server_closed_is_replaced(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            pid = (await session.execute(text("select pg_backend_pid()"))).scalar()
            raw = await (await session.connection()).get_raw_connection()
            driver = raw.driver_connection
        assert driver is not None
        closed = asyncio.Event()
        driver.add_termination_listener(lambda _conn: closed.set())
        admin = make_engine(database_url, poolclass=NullPool)
        async with admin.connect() as conn:
            await conn.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        await admin.dispose()
        await asyncio.wait_for(closed.wait(), 5)  # asyncpg saw the server close it
        assert driver.is_closed()
        async with sessions() as session, session.begin():
            assert (await session.execute(text("select pg_backend_pid()"))).scalar() != pid
    finally:
        await engine.dispose()


async def test_a_driver_statements_error_is_sqlalchemys_and_the_connection_stays(
    database_url: str,
) -> None:
    """The call path's statements go out by asyncpg itself (DriverStatement on a
    connection): a statement's error reaches the flows as SQLAlchemy's, which they catch,
    and the connection, which is fine, serves the next statement."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    divide = DriverStatement.compile(text("SELECT 6 / CAST(:n AS integer)"))
    try:
        async with make_statement_engine(engine).connect() as connection:
            with pytest.raises(DBAPIError) as raised:
                await divide.rows(connection, {"n": 0})
            assert not raised.value.connection_invalidated
            assert "division by zero" in str(raised.value)
            assert [tuple(row) for row in await divide.rows(connection, {"n": 3})] == [(2,)]
    finally:
        await engine.dispose()


async def test_a_driver_statement_on_a_broken_connection_invalidates_it(
    database_url: str,
) -> None:
    """A connection that broke under a driver statement (the server closed it) is
    invalidated as SQLAlchemy would: the pool opens a new one for the next unit of work."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    backend = DriverStatement.compile(text("SELECT pg_backend_pid()"))
    admin = make_engine(database_url, poolclass=NullPool)
    try:
        async with make_statement_engine(engine).connect() as connection:
            ((pid,),) = await backend.rows(connection, {})
            async with admin.connect() as conn:
                await conn.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as raised:
                async with asyncio.timeout(5):
                    while True:  # until asyncpg has seen the server close it
                        await backend.rows(connection, {})
            assert raised.value.connection_invalidated
        async with make_statement_engine(engine).connect() as connection:
            ((fresh,),) = await backend.rows(connection, {})
        assert fresh != pid
    finally:
        await admin.dispose()
        await engine.dispose()


async def test_a_driver_statement_cancelled_half_way_leaves_no_busy_connection(
    database_url: str,
) -> None:
    """A statement cancelled while the server runs it (a flow stopped): its connection may
    still be busy in the driver, so it is invalidated; the pool's next connection serves
    the next unit of work at once."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    sleep = DriverStatement.compile(text("SELECT pg_sleep(CAST(:s AS float))"))
    try:
        async with make_statement_engine(engine).connect() as connection:
            task = asyncio.create_task(sleep.rows(connection, {"s": 5}))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert connection.invalidated
        async with asyncio.timeout(2):
            async with make_statement_engine(engine).connect() as connection:
                assert [tuple(row) for row in await sleep.rows(connection, {"s": 0})] == [(None,)]
    finally:
        await engine.dispose()
