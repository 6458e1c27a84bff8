"""The app's engine without pool pre-ping: a pooled connection the server closed (as in a
database restart) is replaced at checkout instead of failing the next unit of work."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from ari_app.db.session import make_engine, make_sessionmaker

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
