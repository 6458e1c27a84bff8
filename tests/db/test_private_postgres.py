"""The private PostgreSQL cluster: initdb, databases, stop and restart on the same port."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devenv.postgres import PrivatePostgres

pytestmark = pytest.mark.db


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    # A unique folder under /tmp that the unprivileged server user can reach (pytest's own
    # tmp_path sits under a root-only folder when we run as root).
    path = Path(tempfile.mkdtemp(prefix="hotline-pg-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


async def test_cluster_keeps_data_across_restart_on_same_port(cluster_dir: Path) -> None:
    pg = PrivatePostgres(cluster_dir, durable=False)
    try:
        await asyncio.to_thread(pg.start)
        assert pg.is_running and pg.pid is not None and pg.port is not None
        port, first_pid = pg.port, pg.pid
        assert pg.root == cluster_dir
        assert pg.url("calls") == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/calls"
        if os.geteuid() == 0:
            assert _uid_of(first_pid) != 0, "postgres must not run as root"

        pg.create_database("calls")
        pg.create_database("calls", exist_ok=True)
        conn = await asyncpg.connect(pg.dsn("calls"))
        try:
            await conn.execute("CREATE TABLE note (body text)")
            await conn.execute("INSERT INTO note VALUES ('kept')")
        finally:
            await conn.close()

        await asyncio.to_thread(pg.stop)
        assert not pg.is_running and pg.pid is None
        assert not _alive(first_pid)
        with pytest.raises(OSError):
            await asyncpg.connect(pg.dsn("calls"), timeout=5)

        await asyncio.to_thread(pg.start)
        assert pg.port == port and pg.pid != first_pid
        conn = await asyncpg.connect(pg.dsn("calls"))
        try:
            assert await conn.fetchval("SELECT body FROM note") == "kept"
        finally:
            await conn.close()

        pg.drop_database("calls")
        assert not pg.database_exists("calls")
        pg.drop_database("calls")  # missing_ok by default
    finally:
        pg.remove()
    assert not await asyncio.to_thread(cluster_dir.exists)


async def test_cluster_under_private_parent_works(tmp_path: Path) -> None:
    # As root, pytest's tmp_path is under a 0700 folder the server user cannot enter: the
    # cluster then lives in a stand-in folder, and remove() deletes that too.
    pg = PrivatePostgres(tmp_path / "pg", durable=False)
    try:
        with pg:
            conn = await asyncpg.connect(pg.dsn("postgres"))
            try:
                assert await conn.fetchval("SELECT current_setting('server_encoding')") == "UTF8"
                assert await conn.fetchval("SELECT current_setting('listen_addresses')") == (
                    "127.0.0.1"
                )
            finally:
                await conn.close()
        assert not pg.is_running
    finally:
        pg.remove()
    assert not await asyncio.to_thread(pg.root.exists)
