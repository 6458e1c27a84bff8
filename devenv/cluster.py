"""`make run-cluster`: two Asterisk nodes behind Kamailio, one `hotline serve` per node,
one shared Postgres, the demo hotline. The e2e test tests/e2e/test_cluster.py uses it too.

Topology (all on loopback addresses of one machine)::

    trunk (sipp) --> Kamailio 127.0.0.60 (dispatcher, OPTIONS probes)
                       |--> Asterisk node1 <--ARI-- hotline serve (HOTLINE_NODE=node1) --+
                       +--> Asterisk node2 <--ARI-- hotline serve (HOTLINE_NODE=node2) --+
    agents' phones 127.0.0.11.. <-- dialled by either node directly      one PostgreSQL <-+

Agents' phones: every node has the same PJSIP endpoints with the same static contacts
(each phone's own loopback address), so any node rings any agent with no registrar and no
extra hop; the nodes identify Kamailio as the trunk by its source address. Real phones that
register would register at Kamailio (a registrar with usrloc) and the nodes would dial
agents through it; for fixed test phones static contacts give the same reachability with
one moving part less. Which node may ring an agent is decided in Postgres (atomic
reservation, device presence per node combined: ari_app/device_presence.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from ari_app.db import migrate
from ari_app.db.session import make_engine, make_sessionmaker
from ari_app.services import admin, agents
from ari_app.services.demo import DEMO_HOTLINE, DEMO_PIN, seed_demo
from devenv.asterisk import Phone, PrivateAsterisk, default_phones
from devenv.kamailio import PrivateKamailio
from devenv.ports import free_port, free_port_range
from devenv.postgres import PrivatePostgres
from devenv.procs import terminate

log = logging.getLogger(__name__)

RUN_DIR = Path(__file__).resolve().parents[1] / ".run" / "cluster"
HOTLINE_BIN = str(Path(sys.executable).with_name("hotline"))


async def seed(url: str, n_agents: int) -> None:
    """The demo hotline (agents 101, 102) plus agents up to `n_agents`, all logged in on
    phones 1001.. (idempotent: agents that exist are left alone)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session)
            hotline = await admin.get_hotline(session, DEMO_HOTLINE)
            for i in range(3, n_agents + 1):
                number = f"1{i:02d}"
                with contextlib.suppress(Exception):
                    async with session.begin_nested():
                        agent = await admin.create_agent(
                            session,
                            number,
                            f"Agent {number}",
                            pin=DEMO_PIN,
                            device=f"PJSIP/{1000 + i}",
                        )
                        await admin.add_member(session, hotline, agent)
                        await agents.login(
                            session, agent, target=None, path="system", actor="cluster-seed"
                        )
    finally:
        await engine.dispose()


@dataclass
class NodeApp:
    """`hotline serve` for one node, as a child process stopped by its PID."""

    name: str
    pbx: PrivateAsterisk
    database_url: str
    log_path: Path
    panel_port: int = field(default_factory=lambda: free_port("127.0.0.1", "tcp"))
    proc: asyncio.subprocess.Process | None = None

    @property
    def panel_url(self) -> str:
        return f"http://127.0.0.1:{self.panel_port}"

    async def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            **self.pbx.env(),
            "HOTLINE_DATABASE_URL": self.database_url,
            "HOTLINE_NODE": self.name,
            "HOTLINE_PANEL_LISTEN": f"127.0.0.1:{self.panel_port}",
            # One process per node: what the cluster measures is a node's death
            # (`hotline serve --workers N` would take the next ports for its workers).
            "HOTLINE_WORKERS": os.environ.get("HOTLINE_WORKERS", "1"),
            "HOTLINE_LOG_LEVEL": os.environ.get("HOTLINE_LOG_LEVEL", "INFO"),
        }
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                HOTLINE_BIN,
                "serve",
                "--grace",
                "5",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        await self.wait_registered(timeout)

    async def wait_registered(self, timeout: float) -> None:
        """Until the node's Asterisk lists the Stasis app (the app's WebSocket is up)."""
        deadline = time.monotonic() + timeout
        url = f"{self.pbx.ari_url}/ari/applications/{self.pbx.app_name}"
        async with aiohttp.ClientSession(headers=self.pbx.ari_headers()) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name}: hotline serve exited:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(2)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name}: hotline serve did not register:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 15.0) -> None:
        await terminate(self.proc, timeout)


class Cluster:
    """Kamailio, `nodes` Asterisk nodes with their apps, one Postgres; see the module doc.

    `database_url`: use this (migrated here) instead of a private Postgres cluster.
    `phones`: the agents' phones (default: one loopback address each, from 127.0.0.11; the
    benchmark puts every agent on one sipp UAS instead).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        nodes: int = 2,
        n_agents: int = 2,
        database_url: str | None = None,
        phones: Sequence[Phone] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.n_agents = n_agents
        self.postgres: PrivatePostgres | None = None
        self.database_url = database_url or ""
        self.phones = tuple(phones) if phones is not None else default_phones(max(6, n_agents))
        self.pbxs: list[PrivateAsterisk] = []
        rtp_start, _ = free_port_range(200 * nodes, avoid=[p.port for p in self.phones])
        self.kamailio_address = "127.0.0.60"
        for i in range(nodes):
            self.pbxs.append(
                PrivateAsterisk(
                    self.run_dir / f"node{i + 1}",
                    phones=self.phones,
                    # Calls from the PSTN reach the nodes through Kamailio: that is the trunk.
                    trunk_in_address=self.kamailio_address,
                    rtp_ports=(rtp_start + 200 * i, rtp_start + 200 * i + 199),
                )
            )
        self.kamailio = PrivateKamailio(
            self.run_dir / "kamailio",
            [p.sip_address for p in self.pbxs],
            address=self.kamailio_address,
        )
        self.apps: list[NodeApp] = []

    async def start(self) -> None:
        if not self.database_url:
            self.postgres = PrivatePostgres(self.run_dir / "postgres")
            await asyncio.to_thread(self.postgres.start)
            if not self.postgres.database_exists("hotline"):
                self.postgres.create_database("hotline")
            self.database_url = self.postgres.url("hotline")
        await asyncio.to_thread(migrate.upgrade, self.database_url)
        await seed(self.database_url, self.n_agents)
        await asyncio.gather(*(p.start() for p in self.pbxs))
        await self.kamailio.start()
        for i, pbx in enumerate(self.pbxs):
            app = NodeApp(f"node{i + 1}", pbx, self.database_url, pbx.run_dir / "serve.log")
            self.apps.append(app)
        await asyncio.gather(*(a.start() for a in self.apps))

    async def stop(self) -> None:
        """Stop everything started, each by its own handle, even after a partial start."""
        for app in self.apps:
            with contextlib.suppress(Exception):
                await app.stop()
        with contextlib.suppress(Exception):
            await self.kamailio.stop()
        for pbx in self.pbxs:
            with contextlib.suppress(Exception):
                await pbx.stop()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.postgres.stop)

    async def __aenter__(self) -> Cluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def describe(self) -> str:
        k = self.kamailio
        lines = [
            f"Kamailio (dispatcher): udp {k.address}:{k.port}  (log: {k.output_path};"
            f" nodes in {k.list_path}, reread by `kamcmd -s unix:{k.ctl_socket}"
            " dispatcher.reload`)",
            f"PostgreSQL: {self.database_url}",
        ]
        for app in self.apps:
            pbx = app.pbx
            lines.append(
                f"{app.name}: Asterisk udp {pbx.sip_address[0]}:{pbx.sip_address[1]}"
                f"  ARI {pbx.ari_url}  panel {app.panel_url}  (app log: {app.log_path})"
            )
        phone = self.phones[0]
        lines += [
            f"Hotline {DEMO_HOTLINE}, agents 101..1{self.n_agents:02d} (PIN {DEMO_PIN}) on phones"
            f" 1001..{1000 + self.n_agents}.",
            "Be agent phone 1001 (answers every call, from either node):",
            f"  sipp -sn uas -aa -i {phone.address} -p {phone.port} -mi {phone.address}",
            "Call the hotline through Kamailio as a citizen:",
            f"  sipp -sn uac -aa -s {DEMO_HOTLINE} -i 127.0.0.50 -p 5060 -m 4 -d 10000"
            f" {k.address}:{k.port}",
            "Press Ctrl-C to stop everything.",
        ]
        return "\n".join(lines)


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cluster = Cluster(
        RUN_DIR,
        nodes=int(os.environ.get("CLUSTER_NODES", "2")),
        n_agents=int(os.environ.get("CLUSTER_AGENTS", "5")),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with cluster:
        print(cluster.describe(), flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
