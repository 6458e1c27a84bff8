"""A private Kamailio as the SIP dispatcher in front of several Asterisk nodes.

Runs `kamailio -f <run>/kamailio.cfg -DD -E` (foreground, log to stderr) as a child process
on its own loopback address and port, with its own runtime folder: it needs no root, no
service and never reads /etc/kamailio. The dispatcher module spreads new calls (initial
INVITEs) round robin over the nodes and probes every node with OPTIONS each PING_S seconds;
a node that fails PROBE_THRESHOLD probes is set inactive (out within about 3 s), and one
that answers again is taken back. An INVITE a node does not answer (timeout, 5xx) fails
over to the next node. Requests inside a dialog (ACK, BYE) carry the node's Contact as
their Request-URI and are relayed there, so Kamailio keeps no dialog state.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from devenv.ports import free_port, port_is_free
from devenv.procs import terminate

log = logging.getLogger(__name__)

KAMAILIO_BINARY = "kamailio"
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules")
DEFAULT_ADDRESS = "127.0.0.60"
PING_S = 1  # OPTIONS probe interval per node
PROBE_THRESHOLD = 2  # failed probes before a node is taken out
PROBE_TIMEOUT_MS = 1000  # a probe (a non-INVITE transaction) times out after this

CONFIG = """#!KAMAILIO
# Rendered by devenv/kamailio.py: a stateless-per-dialog dispatcher.
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:{address}:{port}
mpath="{module_dir}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "dispatcher.so"
loadmodule "ctl.so"

# fr_timer bounds the OPTIONS probes (and an INVITE no node answers at all).
modparam("tm", "fr_timer", {probe_timeout_ms})
modparam("tm", "fr_inv_timer", 60000)
# `kamcmd -s unix:{ctl_socket} dispatcher.reload` rereads the list (adding a node).
modparam("ctl", "binrpc", "unix:{ctl_socket}")
modparam("dispatcher", "list_file", "{list_file}")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:dispatcher@{address}")
modparam("dispatcher", "ds_ping_interval", {ping_s})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", {probe_threshold})
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_reply_codes", "class=2")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        # In a dialog: the Request-URI is the node's Contact.
        t_relay();
        exit;
    }}
    if (is_method("CANCEL") || is_method("ACK")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    # New call: next active node, round robin (algorithm 4).
    if (!ds_select_dst("1", "4")) {{
        xlog("L_WARN", "no active node for $rm $ru\\n");
        sl_send_reply("503", "No node available");
        exit;
    }}
    xlog("L_INFO", "call $ci to $du\\n");
    t_on_failure("NEXT_NODE");
    t_relay();
}}

# The test and the operator read these lines: when a node was taken out and back (by the
# probes, then the node is in $ru, or by a failed INVITE's failover, then it is in $du).
event_route[dispatcher:dst-down] {{
    xlog("L_NOTICE", "dispatcher: node down: ru=$ru du=$du\\n");
}}

event_route[dispatcher:dst-up] {{
    xlog("L_NOTICE", "dispatcher: node up: ru=$ru du=$du\\n");
}}

failure_route[NEXT_NODE] {{
    if (t_is_canceled()) exit;
    if (t_check_status("408|5[0-9][0-9]") || t_branch_timeout()) {{
        ds_mark_dst("ip");
        if (ds_next_dst()) {{
            xlog("L_WARN", "call $ci fails over to $du\\n");
            t_on_failure("NEXT_NODE");
            t_relay();
        }}
    }}
}}
"""


class KamailioError(RuntimeError):
    """The private Kamailio failed to start."""


def module_dir() -> str:
    for path in MODULE_DIRS:
        if Path(path, "dispatcher.so").exists():
            return path
    raise KamailioError("Kamailio's dispatcher module not found (install the kamailio package)")


class PrivateKamailio:
    """One private Kamailio in `run_dir` dispatching to `nodes` ((address, port) pairs)."""

    def __init__(
        self,
        run_dir: Path,
        nodes: Sequence[tuple[str, int]],
        *,
        address: str = DEFAULT_ADDRESS,
        port: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.nodes = list(nodes)
        self.address = address
        self.port = port or free_port(address, "udp")
        self.config_path = self.run_dir / "kamailio.cfg"
        self.list_path = self.run_dir / "dispatcher.list"
        self.output_path = self.run_dir / "kamailio.out"
        # For kamcmd; a Unix socket's path has at most 107 bytes.
        self.ctl_socket = self.run_dir / "run" / "ctl.sock"
        if len(str(self.ctl_socket)) > 100:
            self.ctl_socket = Path(tempfile.gettempdir()) / f"kamailio-{self.port}.ctl"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def sip_address(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def pid(self) -> int | None:
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    def write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "run").mkdir(exist_ok=True)
        # Set 1: every node; probing flag 8 (probe always, so a dead node is seen).
        self.list_path.write_text("".join(f"1 sip:{host}:{port} 8\n" for host, port in self.nodes))
        self.config_path.write_text(
            CONFIG.format(
                address=self.address,
                port=self.port,
                module_dir=module_dir(),
                list_file=self.list_path,
                ctl_socket=self.ctl_socket,
                probe_timeout_ms=PROBE_TIMEOUT_MS,
                ping_s=PING_S,
                probe_threshold=PROBE_THRESHOLD,
            )
        )

    async def start(self, timeout: float = 10.0) -> None:
        if shutil.which(KAMAILIO_BINARY) is None:
            raise KamailioError("kamailio not found (scripts/install-system-deps.sh installs it)")
        self.write_config()
        with self.output_path.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                KAMAILIO_BINARY,
                "-f",
                str(self.config_path),
                "-DD",
                "-E",
                "-Y",
                str(self.run_dir / "run"),
                "-m",
                "64",
                "-M",
                "8",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + timeout
        while port_is_free(self.address, self.port, "udp"):
            if self._process.returncode is not None:
                raise KamailioError(f"kamailio exited at start:\n{self.output()}")
            if time.monotonic() >= deadline:
                await self.stop()
                raise KamailioError(f"kamailio not listening on {self.address}:{self.port}")
            await asyncio.sleep(0.05)
        log.info("kamailio %s:%d dispatching to %s", self.address, self.port, self.nodes)

    def output(self) -> str:
        if not self.output_path.exists():
            return ""
        return self.output_path.read_text(errors="replace")

    async def stop(self, timeout: float = 5.0) -> None:
        await terminate(self._process, timeout)
