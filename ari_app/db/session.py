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
    return create_async_engine(normalise_database_url(url), pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without a lazy load.
    return async_sessionmaker(engine, expire_on_commit=False)
