"""A private Asterisk for development and tests.

Renders a complete configuration from the templates in ``pbx/`` into a run folder and runs
``asterisk -C <run>/etc/asterisk.conf -f -n`` as a child process. Every directory Asterisk
writes to lives in the run folder, so it needs no root and never touches /etc/asterisk;
ports are picked free at construction. ``make run`` and the e2e fixtures both use it.

Layout of the run folder::

    etc/        rendered configuration (+ a copy of dialplan/extensions_hotline.conf)
    log/full    Asterisk's log: notice, warning, error, verbose (level 3), dtmf
    asterisk.out  Asterisk's own stdout/stderr
    run/ spool/ db/ keys/ cache/   Asterisk's working directories
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from devenv.ports import free_port, free_port_on_all, free_port_range

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("pbx")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIALPLAN = REPO_ROOT / "dialplan" / "extensions_hotline.conf"

ASTERISK_BINARY = "asterisk"
# Another Asterisk than the one on PATH: the path of its binary, e.g. the Asterisk 22 that
# scripts/build-asterisk22.sh unpacks into <prefix>/usr/sbin/asterisk (`make ... ASTERISK=22`).
ASTERISK_ENV = "HOTLINE_ASTERISK"
# Read-only system directories of the distribution's Asterisk package (used as they are;
# music on hold and the sounds are separate packages, shared by every Asterisk version).
SYSTEM_VARLIB_DIR = "/var/lib/asterisk"
SYSTEM_MOH_DIR = "/usr/share/asterisk/moh"

ARI_USER = "hotline"
DEFAULT_APP = "hotline"
PHONE_CONTEXT = "hotline-phones"
TRUNK_CONTEXT = "hotline-pstn-in"
# The remote agent service line, as dialled from the trunk (and from the demo phones).
SERVICE_NUMBER = "0800"
# What `PJSIP/{number}@trunk` dials: the trunk's far end (a sipp UAS in tests).
EXTERNAL_DIAL = "PJSIP/{number}@trunk"
DEFAULT_TRUNK_IN_ADDRESS = "127.0.0.50"
DEFAULT_TRUNK_FAR_ADDRESS = "127.0.0.51"
SIP_ADDRESS = "127.0.0.1"

# Core parts complain (ERROR/WARNING at start-up) when these files are missing; the
# defaults are right for us, so they are written empty.
EMPTY_CONFIGS = (
    "acl.conf",
    "ccss.conf",
    "features.conf",
    "pjproject.conf",
    "pjsip_notify.conf",
    "udptl.conf",
    # Asterisk 22 only (modules that Asterisk 16 does not have; there these files are unread):
    # res_aeap (18+), res_http_media_cache (18+), res_websocket_client and chan_websocket (22).
    "aeap.conf",
    "res_http_media_cache.conf",
    "websocket_client.conf",
    "chan_websocket.conf",
)

# A unix socket path must fit in sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 100
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Phone:
    """A demo/test SIP phone: a PJSIP endpoint identified by its own loopback address."""

    ext: str
    address: str
    port: int
    name: str = ""

    @property
    def contact(self) -> str:
        return f"sip:{self.ext}@{self.address}:{self.port}"

    @property
    def dial_string(self) -> str:
        """The Asterisk dial string for this phone (an agent's internal device)."""
        return f"PJSIP/{self.ext}"

    @property
    def display_name(self) -> str:
        return self.name or f"Phone {self.ext}"


def default_phones(count: int = 6, *, port: int | None = None) -> tuple[Phone, ...]:
    """Phones 1001.. on 127.0.0.11.., all on one UDP port that is free on every address."""
    addresses = [f"127.0.0.{11 + i}" for i in range(count)]
    if port is None:
        port = free_port_on_all(addresses, "udp")
    return tuple(
        Phone(ext=str(1001 + i), address=addr, port=port) for i, addr in enumerate(addresses)
    )


# SHA-crypt's minimum: Asterisk checks the hash on every ARI request (HTTP Basic, no
# session), and the default 5000 rounds cost it about 2 ms of CPU per request here, 7
# requests per routed call: more than app_queue spends on a whole call (benchmarks/NOTES.md).
# The rounds slow down guessing a password from a stolen hash; the ARI password is random
# (144 bits from `secrets`, or an admin's own), which no guessing reaches at any round count.
ARI_CRYPT_ROUNDS = 1000
_SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def crypt_password(password: str) -> str:
    """A SHA-512 crypt(3) hash of ``password`` for ari.conf's ``password_format = crypt``,
    with ARI_CRYPT_ROUNDS rounds and a random salt.

    ``openssl passwd -6`` (Python's ``crypt`` module is deprecated and gone in 3.13); the
    password goes in on stdin, never on a command line other users could read.
    """
    salt = "".join(secrets.choice(_SALT_ALPHABET) for _ in range(16))
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", f"rounds={ARI_CRYPT_ROUNDS}${salt}", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    hashed = result.stdout.strip()
    if result.returncode != 0 or not hashed.startswith(f"$6$rounds={ARI_CRYPT_ROUNDS}$"):
        raise AsteriskError(f"openssl passwd -6 failed: {result.stderr.strip()}")
    return hashed


def render_template(text: str, values: Mapping[str, object]) -> str:
    """Fill ``{{name}}`` placeholders; a placeholder without a value is an error.

    Not ``${...}``: that is Asterisk's own variable syntax in the same files.
    """

    def repl(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(repl, text)


@dataclass(frozen=True)
class RtpStats:
    """One row of ``pjsip show channelstats``: RTP packets of a live PJSIP channel."""

    channel: str  # e.g. PJSIP/1001-00000000
    bridge: str  # first 8 characters of the bridge id; "" when not bridged
    codec: str
    rx_count: int
    rx_lost: int
    tx_count: int
    tx_lost: int


_STATS_ROW = re.compile(
    r"^\s*(?:(?P<bridge>[0-9a-f]{8})\s+)?(?P<channel>\S+-[0-9a-f]{8})\s+\d+:\d\d:\d\d\s+"
    r"(?P<codec>\S+)\s+(?P<rx>\d+)\s+(?P<rx_lost>\d+)\s+\S+\s+\S+\s+"
    r"(?P<tx>\d+)\s+(?P<tx_lost>\d+)\s",
    re.M,
)


def parse_channelstats(text: str) -> list[RtpStats]:
    """Parse the output of ``pjsip show channelstats`` (Asterisk 16+)."""
    return [
        RtpStats(
            channel="PJSIP/" + m["channel"],
            bridge=m["bridge"] or "",
            codec=m["codec"],
            rx_count=int(m["rx"]),
            rx_lost=int(m["rx_lost"]),
            tx_count=int(m["tx"]),
            tx_lost=int(m["tx_lost"]),
        )
        for m in _STATS_ROW.finditer(text)
    ]


class AsteriskError(RuntimeError):
    """The private Asterisk failed to start, answer or stop."""


@dataclass(frozen=True)
class AsteriskInstall:
    """Where one Asterisk installation keeps its binary and read-only files.

    The system's (``/`` as prefix) or one unpacked under a prefix (``dpkg-deb -x``), which
    runs next to the system's without replacing it: its own modules, data (ARI docs, XML
    documentation) and libasteriskpj, found through ``LD_LIBRARY_PATH``.
    """

    binary: str
    prefix: Path
    mod_dir: Path
    data_dir: Path
    lib_dir: Path | None

    @property
    def sbin_dir(self) -> Path:
        return self.prefix / "usr" / "sbin"

    def process_env(self) -> dict[str, str] | None:
        """Environment for the binary: None (inherit) for the system's installation."""
        if self.lib_dir is None:
            return None
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p
        )
        return env

    def version(self, timeout: float = 10.0) -> str:
        """``asterisk -V`` without the leading "Asterisk ", e.g. ``16.28.0~dfsg-0+deb11u10``."""
        result = subprocess.run(
            [self.binary, "-V"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.process_env(),
        )
        if result.returncode != 0:
            raise AsteriskError(f"{self.binary} -V failed: {result.stdout}{result.stderr}")
        return result.stdout.strip().removeprefix("Asterisk ")


def _first_dir(*candidates: Path) -> Path | None:
    return next((path for path in candidates if path.is_dir()), None)


def asterisk_install(binary: str | None = None) -> AsteriskInstall:
    """The Asterisk to run: ``binary``, else ``$HOTLINE_ASTERISK``, else ``asterisk`` on PATH.

    The prefix is the folder above ``usr/sbin`` (``/`` for the system's). Modules are in
    ``usr/lib/asterisk/modules`` in Debian 11's Asterisk 16 and in the multiarch folder
    (``usr/lib/x86_64-linux-gnu/asterisk/modules``) in Debian 12+'s and Ubuntu's packages,
    e.g. the Asterisk 22 backport: whichever exists is used.
    """
    chosen = binary or os.environ.get(ASTERISK_ENV) or ASTERISK_BINARY
    found = shutil.which(chosen)
    if found is None:
        raise AsteriskError(f"no Asterisk binary {chosen!r} (set {ASTERISK_ENV} or install it)")
    path = Path(found).resolve()
    prefix = path.parents[2] if path.parent.parts[-2:] == ("usr", "sbin") else Path("/")
    lib = prefix / "usr" / "lib"
    multiarch = sorted(lib.glob("*-linux-*/asterisk/modules"))
    mod_dir = _first_dir(*multiarch, lib / "asterisk" / "modules")
    if mod_dir is None:
        raise AsteriskError(f"no Asterisk modules folder under {lib}")
    lib_dir = None
    if prefix != Path("/"):
        libs = sorted(lib.glob("**/libasteriskpj.so*"))
        lib_dir = libs[0].parent if libs else None
    return AsteriskInstall(
        binary=str(path),
        prefix=prefix,
        mod_dir=mod_dir,
        data_dir=prefix / "usr" / "share" / "asterisk",
        lib_dir=lib_dir,
    )


class PrivateAsterisk:
    """One private Asterisk instance in ``run_dir``; see the module docstring.

    Ports, addresses and credentials are fixed at construction and exposed as attributes,
    so they stay the same across ``restart()``.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        app_name: str = DEFAULT_APP,
        phones: Sequence[Phone] | None = None,
        fallback_dial: str | None = None,
        language: str = "de",
        trunk_in_address: str = DEFAULT_TRUNK_IN_ADDRESS,
        trunk_far_address: str = DEFAULT_TRUNK_FAR_ADDRESS,
        trunk_far_port: int | None = None,
        sip_port: int | None = None,
        http_port: int | None = None,
        rtp_ports: tuple[int, int] | None = None,
        service_number: str = SERVICE_NUMBER,
        dialplan_path: Path = DEFAULT_DIALPLAN,
        ari_password: str | None = None,
        extra_configs: Mapping[str, str] | None = None,
        install: AsteriskInstall | None = None,
    ) -> None:
        for what, value in (("app_name", app_name), ("fallback_dial", fallback_dial or "")):
            if any(c in value for c in "\r\n;[]"):
                raise ValueError(f"{what} {value!r} cannot go into a config file")
        self.run_dir = Path(run_dir).resolve()
        self.install = install or asterisk_install()
        self.etc_dir = self.run_dir / "etc"
        self.log_dir = self.run_dir / "log"
        self.log_path = self.log_dir / "full"
        self.output_path = self.run_dir / "asterisk.out"
        self.config_path = self.etc_dir / "asterisk.conf"
        self.app_name = app_name
        self.phones: tuple[Phone, ...] = tuple(phones) if phones is not None else default_phones()
        self.fallback_dial = fallback_dial
        self.language = language  # the dialplan's HOTLINE_LANGUAGE
        self.trunk_in_address = trunk_in_address
        self.trunk_far_address = trunk_far_address
        # The carrier's far end is a sipp each test starts again on this port: from below
        # the kernel's ephemeral range, as the phones' ports, so no socket the kernel
        # numbers itself takes it in between.
        self.trunk_far_port = trunk_far_port or free_port_on_all((trunk_far_address,), "udp")
        self.sip_address: tuple[str, int] = (SIP_ADDRESS, sip_port or free_port(SIP_ADDRESS, "udp"))
        self.http_port = http_port or free_port(SIP_ADDRESS, "tcp")
        # The phones' and the far end's ports are drawn from the same span and bound only
        # when a test starts their sipp: the RTP range keeps clear of them.
        self.rtp_ports = rtp_ports or free_port_range(
            200, avoid=[*(p.port for p in self.phones), self.trunk_far_port]
        )
        self.service_number = service_number
        self.dialplan_path = Path(dialplan_path)
        self.ari_user = ARI_USER
        self.ari_password = ari_password or secrets.token_urlsafe(18)
        self.external_dial = EXTERNAL_DIAL
        # file name -> content, written into etc/ after the templates (and so replacing
        # one of them); `extensions_extra.conf` is included by extensions.conf if present.
        self.extra_configs: dict[str, str] = dict(extra_configs or {})
        self._process: asyncio.subprocess.Process | None = None
        self._ctl_dir: Path | None = None  # chosen when the configuration is written

    # ---- public attributes -----------------------------------------------------------

    @property
    def ari_url(self) -> str:
        return f"http://{SIP_ADDRESS}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def phone(self, ext: str) -> Phone:
        for phone in self.phones:
            if phone.ext == ext:
                return phone
        raise KeyError(f"no phone {ext}")

    def ari_headers(self) -> dict[str, str]:
        """HTTP basic auth header for ARI (built by hand: aiohttp's BasicAuth is deprecated)."""
        token = base64.b64encode(f"{self.ari_user}:{self.ari_password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def env(self) -> dict[str, str]:
        """Environment for ``hotline serve`` against this Asterisk."""
        return {
            "HOTLINE_ARI_URL": self.ari_url,
            "HOTLINE_ARI_USER": self.ari_user,
            "HOTLINE_ARI_PASSWORD": self.ari_password,
            "HOTLINE_ARI_APP": self.app_name,
            "HOTLINE_EXTERNAL_DIAL": self.external_dial,
        }

    def describe(self) -> str:
        """Human-readable summary for ``make run``."""
        lines = [
            f"Asterisk run folder: {self.run_dir}  (log: {self.log_path})",
            f"ARI:    {self.ari_url}  user={self.ari_user} password={self.ari_password}"
            f"  app={self.app_name}",
            f"SIP:    udp {self.sip_address[0]}:{self.sip_address[1]}",
            f"Trunk:  PSTN calls in from {self.trunk_in_address} (context {TRUNK_CONTEXT});"
            f" {self.external_dial} dials {self.trunk_far_address}:{self.trunk_far_port}",
            f"Service line number (from trunk and phones): {self.service_number}",
        ]
        if self.fallback_dial:
            lines.append(f"Fallback when the app is down: {self.fallback_dial}")
        lines.append(f"Phones (context {PHONE_CONTEXT}):")
        lines.extend(f"  {p.ext}  {p.address}:{p.port}  ({p.display_name})" for p in self.phones)
        return "\n".join(lines)

    # ---- configuration ---------------------------------------------------------------

    def _pick_ctl_dir(self) -> Path:
        if self._ctl_dir is None:
            ctl = self.run_dir / "run"
            if len(str(ctl / "asterisk.ctl")) > _MAX_SOCKET_PATH:
                # Deep folders can exceed sun_path: use a short folder of our own.
                ctl = Path(tempfile.mkdtemp(prefix="hl-ast-"))
            self._ctl_dir = ctl
        return self._ctl_dir

    def write_config(self) -> None:
        """Render every template into ``etc/`` and create the working directories."""
        if not self.dialplan_path.is_file():
            raise AsteriskError(f"dialplan file not found: {self.dialplan_path}")
        dirs = {
            "etc_dir": self.etc_dir,
            "ctl_dir": self._pick_ctl_dir(),
            "log_dir": self.log_dir,
            "spool_dir": self.run_dir / "spool",
            "db_dir": self.run_dir / "db",
            "keys_dir": self.run_dir / "keys",
            "cache_dir": self.run_dir / "cache",
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "keys" / "keys").mkdir(exist_ok=True)  # res_crypto looks there
        # ARI stores recordings here; without it POST .../record fails with a 500.
        (self.run_dir / "spool" / "recording").mkdir(exist_ok=True)
        phone_template = (TEMPLATE_DIR / "pjsip-phone.conf").read_text()
        phone_sections = "\n".join(
            render_template(
                phone_template,
                {
                    "ext": p.ext,
                    "address": p.address,
                    "port": p.port,
                    "name": p.display_name,
                    "context": PHONE_CONTEXT,
                },
            )
            for p in self.phones
        )
        phone_extensions = "\n".join(
            f"exten => {p.ext},1,Dial({p.dial_string},60)\n same => n,Hangup()" for p in self.phones
        )
        values: dict[str, object] = {
            **{key: str(path) for key, path in dirs.items()},
            "mod_dir": self.install.mod_dir,
            "data_dir": self.install.data_dir,
            "sbin_dir": self.install.sbin_dir,
            "varlib_dir": SYSTEM_VARLIB_DIR,
            "moh_dir": SYSTEM_MOH_DIR,
            "http_address": SIP_ADDRESS,
            "http_port": self.http_port,
            "ari_user": self.ari_user,
            "ari_password_crypt": crypt_password(self.ari_password),
            "rtp_start": self.rtp_ports[0],
            "rtp_end": self.rtp_ports[1],
            "sip_address": self.sip_address[0],
            "sip_port": self.sip_address[1],
            "trunk_context": TRUNK_CONTEXT,
            "trunk_in_address": self.trunk_in_address,
            "trunk_far_address": self.trunk_far_address,
            "trunk_far_port": self.trunk_far_port,
            "phones": phone_sections,
            "phone_extensions": phone_extensions,
            "app_name": self.app_name,
            "fallback_dial": self.fallback_dial or "",
            "language": self.language,
            "service_number": self.service_number,
        }
        for template in sorted(TEMPLATE_DIR.glob("*.conf")):
            if template.name == "pjsip-phone.conf":
                continue
            target = self.etc_dir / template.name
            target.write_text(render_template(template.read_text(), values))
        for name in EMPTY_CONFIGS:
            (self.etc_dir / name).write_text("")
        shutil.copyfile(self.dialplan_path, self.etc_dir / "extensions_hotline.conf")
        for name, content in self.extra_configs.items():
            if Path(name).name != name:
                raise ValueError(f"extra config must be a plain file name: {name!r}")
            (self.etc_dir / name).write_text(content)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start Asterisk and wait until ARI answers."""
        if self.running:
            raise AsteriskError("Asterisk is already running")
        self.write_config()
        with self.output_path.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                self.install.binary,
                "-C",
                str(self.config_path),
                "-f",
                "-n",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in `make run` reaches us, not Asterisk
                env=self.install.process_env(),
            )
        log.debug("asterisk started pid=%s run_dir=%s", self._process.pid, self.run_dir)
        try:
            await self._wait_for_ari(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_for_ari(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.ari_url}/ari/asterisk/info"
        last_error = "no answer"
        async with aiohttp.ClientSession(headers=self.ari_headers()) as session:
            while time.monotonic() < deadline:
                if self._process is None or self._process.returncode is not None:
                    raise AsteriskError(f"Asterisk exited during start-up: {self._output_tail()}")
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                        last_error = f"HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last_error = repr(exc)
                await asyncio.sleep(0.1)
        raise AsteriskError(f"ARI did not answer within {timeout:.0f}s ({last_error})")

    def _output_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.output_path, self.log_path):
            with contextlib.suppress(OSError):
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return text or "(no output)"

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (``core stop now``), then SIGTERM, then SIGKILL our own PID."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(AsteriskError, OSError):
                await self.rx("core stop now", timeout=min(5.0, timeout))
            if not await _wait_exit(process, timeout / 2):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                if not await _wait_exit(process, timeout / 2):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        self._process = None
        if self._ctl_dir is not None and not self._ctl_dir.is_relative_to(self.run_dir):
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
            self._ctl_dir = None

    async def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again with the same ports and credentials."""
        await self.stop()
        await self.start(timeout)

    async def __aenter__(self) -> PrivateAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- CLI and log -----------------------------------------------------------------

    def _rx_argv(self, command: str) -> list[str]:
        return [self.install.binary, "-C", str(self.config_path), "-rx", command]

    async def rx(self, command: str, timeout: float = 10.0) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output."""
        proc = await asyncio.create_subprocess_exec(
            *self._rx_argv(command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.install.process_env(),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise AsteriskError(f"asterisk -rx {command!r} timed out") from None
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise AsteriskError(f"asterisk -rx {command!r} failed: {text.strip()}")
        return text

    def rx_sync(self, command: str, timeout: float = 10.0) -> str:
        """Blocking variant of :meth:`rx` for synchronous callers."""
        result = subprocess.run(
            self._rx_argv(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.install.process_env(),
        )
        if result.returncode != 0:
            raise AsteriskError(f"asterisk -rx {command!r} failed: {result.stdout.strip()}")
        return result.stdout

    async def rtp_stats(self) -> list[RtpStats]:
        """RTP packet counters of every live PJSIP channel (``pjsip show channelstats``)."""
        return parse_channelstats(await self.rx("pjsip show channelstats"))

    def http_report(self) -> str:
        """ARI's HTTP server as the system and Asterisk see it, for a client it turned away
        ("Server disconnected": Asterisk closes a connection unanswered when its HTTP
        sessions are all taken or a thread cannot start): its threads, the TCP
        connections on its HTTP port by state, and its log's complaints about HTTP."""
        pid = self.pid
        threads = "?"
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text() if pid else ""
            threads = next(
                (ln.split()[1] for ln in status.splitlines() if ln.startswith("Threads:")), "?"
            )
        states = tcp_states(self.http_port)
        complaints = [ln for ln in self.log_text().splitlines() if _HTTP_TROUBLE.search(ln)]
        return (
            f"Asterisk pid {pid}: {threads} threads; TCP on HTTP port {self.http_port}:"
            f" {states or 'none'}; log: {complaints[-5:] or 'no HTTP complaints'}"
            f" ({len(complaints)} in all)"
        )

    def log_offset(self) -> int:
        """Current size of the full log: pass it to :meth:`log_text` to read only what follows."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait_for_log(
        self, pattern: str | re.Pattern[str], *, offset: int = 0, timeout: float = 10.0
    ) -> re.Match[str]:
        """Poll the full log (from ``offset``) until ``pattern`` matches; bounded."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text(offset))
            if match:
                return match
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{regex.pattern!r} not in {self.log_path} after {timeout}s")
            await asyncio.sleep(0.1)


# Asterisk's words when its HTTP sessions are all taken (main/http.c): it then closes
# new connections unanswered.
HTTP_SESSIONS_EXHAUSTED = "HTTP session count exceeded"
# Those and its other words when its HTTP server turns a connection away (main/tcptls.c)
# or an ARI WebSocket ends badly.
_HTTP_TROUBLE = re.compile(rf"{re.escape(HTTP_SESSIONS_EXHAUSTED)}|TCP/TLS|helper thread|WebSocket")
# /proc/net/tcp's state codes (include/net/tcp_states.h) that matter here.
_TCP_STATES = {
    "01": "ESTABLISHED",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "08": "CLOSE_WAIT",
    "0A": "LISTEN",
}


def tcp_states(port: int) -> dict[str, int]:
    """How many IPv4 TCP sockets with local port ``port`` are in each state."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                state = _TCP_STATES.get(fields[3], fields[3])
                counts[state] = counts.get(state, 0) + 1
    return counts


async def _wait_exit(process: asyncio.subprocess.Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        return False
    return True


def default_run_dir() -> Path:
    """``$HOTLINE_RUN_DIR/asterisk``, by default ``.run/asterisk`` in the repository."""
    return Path(os.environ.get("HOTLINE_RUN_DIR", REPO_ROOT / ".run")) / "asterisk"


async def _serve(args: argparse.Namespace) -> None:
    pbx = PrivateAsterisk(args.run_dir, app_name=args.app, fallback_dial=args.fallback_dial)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await pbx.start()
    try:
        print(pbx.describe())
        print("Environment for `hotline serve`:")
        for key, value in pbx.env().items():
            print(f"  export {key}={shlex.quote(value)}")
        print("Ctrl-C stops Asterisk.", flush=True)
        await stop.wait()
    finally:
        await pbx.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m devenv.asterisk``: run a private Asterisk until Ctrl-C."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--run-dir", type=Path, default=default_run_dir())
    parser.add_argument("--app", default=DEFAULT_APP, help="Stasis app name (HOTLINE_APP)")
    parser.add_argument("--fallback-dial", default=None, help="HOTLINE_FALLBACK_DIAL")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
