"""PostgreSQL stopped for 20 s during traffic (a private cluster of this test): the caller
in conversation and the caller in the queue are not dropped, a new caller gets the
dialplan's fallback, and once the database is back new calls are routed again without
restarting the app."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from ari_app.db import migrate
from ari_app.db.models import Outcome
from ari_app.db.session import make_engine, make_sessionmaker
from devenv.asterisk import PrivateAsterisk
from devenv.postgres import PrivatePostgres
from devenv.sipp import SippPhone

from .app_harness import ServeProcess
from .hotline_world import Sessions, calls_in_db, seed_hotline, trunk_call, wait_until

pytestmark = pytest.mark.e2e

OUTAGE_S = 20


@pytest.fixture
async def private_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[PrivatePostgres, str, Sessions]]:
    cluster = PrivatePostgres(tmp_path_factory.mktemp("pg-outage"), durable=False)
    await asyncio.to_thread(cluster.start)
    engine = None
    try:
        name = f"outage_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(cluster.create_database, name)
        url = cluster.url(name)
        await asyncio.to_thread(migrate.upgrade, url)
        engine = make_engine(url)
        yield cluster, url, make_sessionmaker(engine)
    finally:
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(cluster.remove)


async def test_database_outage_drops_nobody(
    pbx: PrivateAsterisk,
    serve_factory: Callable[..., Awaitable[ServeProcess]],
    private_db: tuple[PrivatePostgres, str, Sessions],
    sipp_dir: Path,
) -> None:
    cluster, url, sessions = private_db
    await seed_hotline(sessions, devices=("1001",), max_wait_s=300)
    serve = await serve_factory(pbx, HOTLINE_DATABASE_URL=url)
    async with SippPhone.for_phone(pbx.phone("1001"), sipp_dir, ring=0.2, hangup_after=24) as agent:
        talking = await trunk_call(pbx, sipp_dir, bye_timeout=60, name="talking")
        await agent.wait_for_invite()
        waiting = await trunk_call(pbx, sipp_dir, hangup_after=28, name="waiting")

        async def both_in() -> bool:
            return len(await calls_in_db(sessions)) == 2

        await wait_until(both_in, 10, "one call bridged and one queued")
        offset = pbx.log_offset()
        await asyncio.to_thread(cluster.stop)
        down_at = time.monotonic()

        newcomer = await (await trunk_call(pbx, sipp_dir, bye_timeout=20, name="new")).wait()
        assert newcomer.final_status == 200 and newcomer.got_bye(), newcomer.describe()
        await pbx.wait_for_log(
            r"hotline: app hotline unavailable - fallback on \S+ "
            r"flow=inbound number=500",
            offset=offset,
        )
        assert talking.running and waiting.running, "nobody was dropped during the outage"

        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        await asyncio.to_thread(cluster.start)
        up_at = time.monotonic()
        # Routed again without a restart: a new caller enters the queue (and gives up).
        later = await trunk_call(pbx, sipp_dir, hangup_after=3, name="later")
        async with talking, waiting, later:
            results = await asyncio.gather(talking.wait(), waiting.wait(), later.wait())
        assert len(agent.invites()) == 2, "the queued caller was served after the outage"

    talking_result, waiting_result, later_result = results
    assert talking_result.got_bye() and not talking_result.sent_bye()
    bye = talking_result.bye  # the conversation ended when the agent hung up, after the outage
    assert bye is not None and bye.timestamp > time.time() - (time.monotonic() - up_at)
    assert waiting_result.sent_bye() and not waiting_result.got_bye()
    assert later_result.final_status == 200

    async def settled() -> list[object] | None:
        rows = await calls_in_db(sessions)
        return rows if len(rows) == 3 and all(r.outcome for r in rows) else None

    rows = await wait_until(settled, 15, "three call records closed")
    assert [r.outcome for r in rows] == [Outcome.ANSWERED, Outcome.ANSWERED, Outcome.ABANDONED]
    assert serve.proc is not None and serve.proc.returncode is None, "no restart needed"
    async with sessions() as session:
        assert (await session.execute(text("select 1"))).scalar() == 1
