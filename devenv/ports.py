"""Free-port helpers for the private Asterisk, sipp phones and local services.

A port found here is free at the time of the call; a concurrent process may still take it
before we bind it. That race is rare on a test machine and a failed start says so clearly.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Iterable, Sequence
from typing import Literal

Kind = Literal["tcp", "udp"]

# Below Linux's default ephemeral range (32768-60999), so the kernel's own picks for
# outgoing connections do not collide with ports chosen here.
_RANDOM_LOW = 10000
_RANDOM_HIGH = 32000


def _sock_type(kind: Kind) -> int:
    return socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM


def port_is_free(host: str, port: int, kind: Kind = "tcp") -> bool:
    """True when `port` can be bound on `host` right now."""
    with socket.socket(socket.AF_INET, _sock_type(kind)) as sock:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", kind: Kind = "tcp") -> int:
    """A port the kernel reports free on `host` (bind to port 0, read it back)."""
    with socket.socket(socket.AF_INET, _sock_type(kind)) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def free_port_on_all(
    hosts: Sequence[str], kind: Kind = "udp", *, avoid: Iterable[int] = (), attempts: int = 200
) -> int:
    """One port that is free on every address in `hosts` (e.g. all phone addresses).

    Candidates are drawn at random, so concurrent runs rarely pick the same one.
    """
    avoided = set(avoid)
    for _ in range(attempts):
        port = random.randint(_RANDOM_LOW, _RANDOM_HIGH)
        if port in avoided:
            continue
        if all(port_is_free(host, port, kind) for host in hosts):
            return port
    raise RuntimeError(f"no {kind} port free on all of {', '.join(hosts)}")


def free_port_range(
    size: int,
    host: str = "0.0.0.0",
    kind: Kind = "udp",
    *,
    avoid: Iterable[int] = (),
    attempts: int = 100,
) -> tuple[int, int]:
    """A (start, end) range of `size` ports whose first and last ports are free right now
    and that holds none of `avoid` (ports chosen for others that are not bound yet: a
    phone's sipp could not bind a port Asterisk's RTP took first).

    Used for Asterisk's RTP range; Asterisk itself skips ports that turn out to be busy.
    """
    avoided = set(avoid)
    for _ in range(attempts):
        start = random.randint(_RANDOM_LOW, _RANDOM_HIGH - size) & ~1  # RTP starts on even ports
        end = start + size - 1
        if any(start <= port <= end for port in avoided):
            continue
        if port_is_free(host, start, kind) and port_is_free(host, end, kind):
            return start, end
    raise RuntimeError(f"no free {kind} port range of {size} found on {host}")


def port_holders(port: int, kind: Kind = "udp") -> str:
    """Who holds `port` right now, as `ss` prints it: for the error of a failed bind."""
    ss = shutil.which("ss")
    if ss is None:
        return "(ss not installed)"
    flag = "-u" if kind == "udp" else "-t"
    try:
        done = subprocess.run(
            [ss, "-Hanp", flag, f"sport = :{port}"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(ss failed: {exc})"
    return done.stdout.strip() or "(nobody: the port is free again)"
