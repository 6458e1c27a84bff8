"""`make run`: the whole system on one machine with a demo hotline.

Starts PostgreSQL (a private cluster under .run/ unless HOTLINE_DATABASE_URL is set),
migrates it, seeds the demo, starts a private Asterisk with the project's configuration,
then runs `hotline serve` in this process. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from ari_app.app import HotlineApp
from ari_app.config import configure_logging, load_settings
from ari_app.db import migrate
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.services.demo import DEMO_AGENTS, DEMO_HOTLINE, DEMO_PIN, seed_demo
from devenv.asterisk import PrivateAsterisk
from devenv.postgres import PrivatePostgres

log = logging.getLogger(__name__)

RUN_DIR = Path(__file__).resolve().parents[1] / ".run"


async def _seed(url: str) -> bool:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await seed_demo(session)
    finally:
        await engine.dispose()


def _how_to_call(pbx: PrivateAsterisk) -> str:
    sip = f"{pbx.sip_address[0]}:{pbx.sip_address[1]}"
    phone = pbx.phone("1001")
    agents = ", ".join(a[0] for a in DEMO_AGENTS)
    devices = ", ".join(a[2] for a in DEMO_AGENTS)
    return f"""
Hotline {DEMO_HOTLINE} "Bürgerbüro" is up. Agents {agents} (PIN {DEMO_PIN}) are logged in
on phones {devices}.

Be agent phone 1001 (answers every call; in another terminal):
  sipp -sn uas -aa -i {phone.address} -p {phone.port} -mi {phone.address}
Call the hotline as a citizen coming in over the trunk:
  sipp -sn uac -aa -s {DEMO_HOTLINE} -i {pbx.trunk_in_address} -p 5060 -m 1 -d 10000 {sip}
Asterisk CLI: asterisk -C {pbx.config_path} -r
Press Ctrl-C to stop everything.
"""


async def main() -> int:
    configure_logging(os.environ.get("HOTLINE_LOG_LEVEL", "INFO").upper())
    RUN_DIR.mkdir(exist_ok=True)
    cluster: PrivatePostgres | None = None
    url = os.environ.get("HOTLINE_DATABASE_URL")
    if not url:
        cluster = PrivatePostgres(RUN_DIR / "postgres")
        cluster.start()
        if not cluster.database_exists("hotline"):
            cluster.create_database("hotline")
        url = cluster.url("hotline")
        print(f"PostgreSQL (private cluster): {cluster.dsn('hotline')}", flush=True)
    pbx = PrivateAsterisk(RUN_DIR / "asterisk")
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        if await _seed(url):
            print("Seeded the demo hotline.", flush=True)
        await pbx.start()
        print(pbx.describe(), flush=True)
        settings = load_settings({**os.environ, **pbx.env(), "HOTLINE_DATABASE_URL": url})
        app = HotlineApp(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, app.request_stop)
        runner = asyncio.create_task(app.run(grace_s=5))
        await app.stream.wait_connected(timeout=15)
        print(_how_to_call(pbx), flush=True)
        await runner
    finally:
        await pbx.stop()
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
