"""Engine and session factory. Callers own sessions: one `async with session.begin()` per
unit of work, never shared between tasks (DESIGN.md, convention 6)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ari_app.config import normalise_database_url


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # No pre-ping: it costs every checkout extra round trips (about half of a call's
    # statements). A connection lost in a database restart fails its first statement
    # instead, and that failure invalidates the whole pool, so the rest reconnect at once;
    # the flows already treat a failed unit of work as "database unavailable" and retry.
    # The pool is large enough that busy moments do not open connections.
    if "poolclass" not in kwargs:
        kwargs = {"pool_size": 20, "max_overflow": 10} | kwargs
    return create_async_engine(normalise_database_url(url), **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without a lazy load.
    return async_sessionmaker(engine, expire_on_commit=False)
