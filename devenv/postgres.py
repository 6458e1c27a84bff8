"""A private PostgreSQL cluster for `make run` and the tests, run from the machine's binaries.

The cluster lives in a folder of its own (initdb once: trust auth, UTF8, superuser
`postgres`), listens only on 127.0.0.1 at a free port with its unix socket in the data
folder, and its server is a child process this object owns: stop() ends exactly that PID.
initdb and postgres refuse to run as root, so as root they run as an unprivileged user: the
`postgres` system user when the package made it, else a `hotline` system user made here.

    with PrivatePostgres(Path(".run/postgres")) as pg:
        pg.create_database("hotline", exist_ok=True)
        url = pg.url("hotline")  # postgresql+asyncpg://postgres@127.0.0.1:<port>/hotline

start() and stop() block for up to a few seconds; from async code wrap them in
asyncio.to_thread().
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devenv.ports import free_port_on_all

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
HOST = "127.0.0.1"
FALLBACK_OS_USER = "hotline"
# A unix socket path must fit in sun_path (108 bytes) including "/.s.PGSQL.<port>".
_SOCKET_PATH_MAX = 107
_POLL_INTERVAL = 0.05


class PostgresError(RuntimeError):
    """The private cluster could not be set up, started or queried."""


@dataclass(frozen=True)
class PgBinaries:
    """One PostgreSQL installation's binaries."""

    bin_dir: Path
    major: int

    def tool(self, name: str) -> str:
        """Path of a client or server program, preferring this installation's own."""
        own = self.bin_dir / name
        if own.is_file() and os.access(own, os.X_OK):
            return str(own)
        found = shutil.which(name)
        if found is None:
            raise PostgresError(f"PostgreSQL program {name!r} not in {self.bin_dir} nor on PATH")
        return found


def _major_version(postgres: Path) -> int:
    out = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"\)\s+(\d+)", out)  # "postgres (PostgreSQL) 15.20 (Debian ...)"
    return int(match.group(1)) if match else 0


@functools.cache
def find_binaries() -> PgBinaries:
    """The newest PostgreSQL server on the machine: /usr/lib/postgresql/*/bin or PATH."""
    candidates: set[Path] = set(Path("/usr/lib/postgresql").glob("*/bin"))
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.add(Path(on_path).resolve().parent)
    found = [
        PgBinaries(bin_dir=d, major=_major_version(d / "postgres"))
        for d in candidates
        if (d / "initdb").is_file() and (d / "postgres").is_file()
    ]
    if not found:
        raise PostgresError(
            "PostgreSQL server binaries (initdb, postgres) not found; "
            "run scripts/install-system-deps.sh as root or install postgresql"
        )
    return max(found, key=lambda b: (b.major, str(b.bin_dir)))


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def _server_user() -> _OsUser | None:
    """The user initdb/postgres run as when we are root; None means "as ourselves"."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            groups = tuple(os.getgrouplist(name, entry.pw_gid))
            return _OsUser(name, entry.pw_uid, entry.pw_gid, groups)
    logger.info("creating system user %s to run the private PostgreSQL", FALLBACK_OS_USER)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        check=True, capture_output=True,
    )  # fmt: skip
    return _server_user()


def _can_traverse(path: Path, user: _OsUser) -> bool:
    """Whether `user` can reach `path` (search permission on it and every parent)."""
    for part in (path, *path.parents):
        st = part.stat()
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in user.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _child_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGHOST, ...) must not redirect our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", PGCONNECT_TIMEOUT="10")
    return env


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PrivatePostgres:
    """A PostgreSQL cluster under `data_root` whose server is a child process of ours.

    `port=None` picks a free port at the first start; later starts (after stop()) reuse it.
    `durable=False` turns off fsync and friends: faster for throw-away test clusters.
    `settings` adds server settings (`-c name=value`).
    When running as root and the unprivileged server user cannot reach `data_root` (a
    parent folder is private, e.g. pytest's /tmp/pytest-of-root), the cluster is kept in a
    folder under the system temp dir named after `data_root` instead; `root` tells where.
    """

    def __init__(
        self,
        data_root: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_root = Path(data_root).absolute()
        self.port = port
        self.durable = durable
        self.settings = dict(settings or {})
        self._user = _server_user()
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._atexit_registered = False

    # -- where things are -------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder that holds the cluster (data_root, or its stand-in; see the class)."""
        if self._root is None:
            self._root = self._choose_root()
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def os_user(self) -> str:
        """The OS user the server runs as."""
        return self._user.name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running and self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, dbname: str = "hotline") -> str:
        """SQLAlchemy URL of a database in this cluster (asyncpg driver)."""
        return f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{self._known_port()}/{dbname}"

    def dsn(self, dbname: str = "hotline") -> str:
        """libpq/asyncpg DSN of a database in this cluster."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self._known_port()}/{dbname}"

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """initdb when the cluster is new, start the server, wait until it accepts connections."""
        if self.is_running:
            return
        bins = find_binaries()
        self._prepare(bins)
        self._refuse_foreign_server()
        if self.port is None:
            # Below the ephemeral range: while the server is stopped (tests stop it for a
            # while), no outgoing connection can take its port as a source port.
            self.port = free_port_on_all((HOST,), "tcp")
        argv = [bins.tool("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in self._server_settings().items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=_child_env(),
                # Own session: a Ctrl-C in the terminal reaches our owner, who stops us in order.
                start_new_session=True,
                **(self._user.popen_kwargs() if self._user else {}),
            )
        logger.info(
            "postgres pid=%s starting on %s:%s (data %s)", self._proc.pid, HOST, self.port,
            self.data_dir,
        )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown of our server (SIGINT), SIGKILL when it outlasts `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("postgres pid=%s ignored fast shutdown; killing it", proc.pid)
                proc.kill()
                proc.wait(timeout)
        logger.info("postgres pid=%s stopped (exit %s)", proc.pid, proc.returncode)

    def remove(self) -> None:
        """Stop the server and delete the cluster's folder (`root`)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases --------------------------------------------------------------------------

    def database_exists(self, name: str) -> bool:
        sql = f"SELECT 1 FROM pg_database WHERE datname = {_quote_literal(name)}"
        return self.psql(sql).strip() == "1"

    def create_database(self, name: str, *, exist_ok: bool = False) -> None:
        if exist_ok and self.database_exists(name):
            return
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")

    def drop_database(self, name: str, *, missing_ok: bool = True) -> None:
        """Drop a database, disconnecting its clients first (PostgreSQL 13+)."""
        if_exists = "IF EXISTS " if missing_ok else ""
        force = " WITH (FORCE)" if find_binaries().major >= 13 else ""
        self.psql(f"DROP DATABASE {if_exists}{_quote_ident(name)}{force}")

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 60.0) -> str:
        """Run one SQL command with psql; returns the unaligned, tuples-only output."""
        argv = [
            find_binaries().tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", HOST, "-p", str(self._known_port()), "-U", SUPERUSER, "-d", dbname, "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(
            argv, capture_output=True, text=True, env=_child_env(), timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise PostgresError(f"psql failed ({sql}): {done.stderr.strip()}")
        return done.stdout

    # -- internals --------------------------------------------------------------------------

    def _known_port(self) -> int:
        if self.port is None:
            raise PostgresError("the private PostgreSQL has no port yet: start() it first")
        return self.port

    def _choose_root(self) -> Path:
        self.data_root.mkdir(parents=True, exist_ok=True)
        if self._user is None or _can_traverse(self.data_root, self._user):
            return self.data_root
        digest = hashlib.sha256(str(self.data_root).encode()).hexdigest()[:12]
        stand_in = Path(tempfile.gettempdir()) / f"hotline-pg-{digest}"
        stand_in.mkdir(mode=0o755, exist_ok=True)
        st = stand_in.stat()
        if st.st_uid != os.geteuid() or stat.S_ISLNK(os.lstat(stand_in).st_mode):
            raise PostgresError(f"{stand_in} exists and is not ours; remove it")
        stand_in.chmod(0o755)
        logger.info(
            "user %s cannot reach %s; keeping the cluster in %s", self._user.name,
            self.data_root, stand_in,
        )  # fmt: skip
        return stand_in

    def _prepare(self, bins: PgBinaries) -> None:
        """Create the data folder with the right owner and run initdb once."""
        data = self.data_dir
        if (data / "PG_VERSION").is_file():
            return
        if data.exists() and any(data.iterdir()):
            # No PG_VERSION: an initdb that died half way; nothing in it is worth keeping.
            logger.warning("removing half-initialised cluster in %s", data)
            shutil.rmtree(data)
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        data.chmod(0o700)
        if self._user is not None:
            os.chown(data, self._user.uid, self._user.gid)
        argv = [
            bins.tool("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C",
        ]  # fmt: skip
        if not self.durable:
            argv.append("--no-sync")
        logger.info("initdb %s (PostgreSQL %s, as %s)", data, bins.major, self.os_user)
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data,
                env=_child_env(),
                check=False,
                timeout=120,
                **(self._user.popen_kwargs() if self._user else {}),
            )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed (exit {done.returncode}):\n{self._log_tail()}")

    def _refuse_foreign_server(self) -> None:
        """A server left running on this folder (e.g. by a killed `make run`) is not ours."""
        first = self._pidfile_lines()[:1]
        if not first or not first[0].isdigit():
            return
        pid = int(first[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # a stale lock file: postgres replaces it
        except PermissionError:
            pass  # alive, owned by someone else
        raise PostgresError(
            f"a postgres (PID {pid}) already runs on {self.data_dir}; stop it (kill -INT {pid})"
        )

    def _server_settings(self) -> dict[str, str]:
        settings = {"listen_addresses": HOST}
        socket_dir = str(self.data_dir)
        if len(socket_dir) + len("/.s.PGSQL.65535") < _SOCKET_PATH_MAX:
            settings["unix_socket_directories"] = socket_dir
        else:  # path too long for a unix socket: TCP only
            settings["unix_socket_directories"] = ""
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(self.settings)
        return settings

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _wait_ready(self, timeout: float) -> None:
        # postmaster.pid line 8 is the server status; "ready" once it accepts connections.
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise PostgresError(f"postgres exited with {code}:\n{self._log_tail()}")
            lines = self._pidfile_lines()
            if len(lines) >= 8 and lines[0] == str(self._proc.pid) and lines[7].strip() == "ready":
                logger.info("postgres pid=%s ready on port %s", self._proc.pid, self.port)
                return
            time.sleep(_POLL_INTERVAL)
        raise PostgresError(f"postgres not ready after {timeout:.0f}s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stop_at_exit(self) -> None:
        # Safety net for an owner that forgot stop(); never from a forked child.
        if os.getpid() == self._owner_pid and self.is_running:
            logger.warning("stopping private postgres pid=%s at exit", self.pid)
            self.stop()
