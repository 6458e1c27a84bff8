"""The shipped Asterisk configuration as rendered (no Asterisk started): what issue 13
requires of the files themselves. The e2e tests show the same on a running Asterisk."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from devenv.asterisk import ARI_CRYPT_ROUNDS, TEMPLATE_DIR, PrivateAsterisk, tcp_states
from devenv.ports import free_port_range


def _rendered(tmp_path: Path) -> PrivateAsterisk:
    pbx = PrivateAsterisk(tmp_path / "pbx", ari_password="Clear-Pw-4711-xyz")
    pbx.write_config()
    return pbx


def test_rendered_ari_conf_holds_no_clear_password(tmp_path: Path) -> None:
    pbx = _rendered(tmp_path)
    for path in pbx.etc_dir.iterdir():
        assert pbx.ari_password not in path.read_text(), path.name
    ari = (pbx.etc_dir / "ari.conf").read_text()
    assert re.search(r"^password_format = crypt$", ari, re.M)
    (hashed,) = re.findall(r"^password = (\S+)$", ari, re.M)
    # $6$rounds=1000$<salt>$<hash>: few rounds, since Asterisk checks it on every request
    assert hashed.startswith(f"$6$rounds={ARI_CRYPT_ROUNDS}$")
    salt = "$".join(hashed.split("$")[2:4])
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=pbx.ari_password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert again == hashed  # the hash of exactly that password (what ARI logins use)


def test_no_dtmf_in_any_log_channel() -> None:
    logger = (TEMPLATE_DIR / "logger.conf").read_text()
    channels = [line for line in logger.splitlines() if "=>" in line]
    assert channels and not [line for line in channels if "dtmf" in line.split("=>")[1]]


def test_endpoints_are_identified_by_address_only(tmp_path: Path) -> None:
    pjsip = (_rendered(tmp_path).etc_dir / "pjsip.conf").read_text()
    assert re.search(r"^identify_by = ip$", pjsip, re.M)  # in [endpoint-defaults](!)
    endpoints = re.findall(r"^\[([^\]]+)\]\(endpoint-defaults\)$", pjsip, re.M)
    assert "trunk" in endpoints and "1001" in endpoints
    assert set(re.findall(r"^identify_by\s*=\s*(.*?)\s*$", pjsip, re.M)) == {"ip"}
    assert not re.search(r"^trust_id_inbound\s*=\s*yes", pjsip, re.M)
    assert "redirect_method = user" in pjsip


def test_the_rtp_range_keeps_clear_of_the_phones_ports() -> None:
    """Phones' ports and the RTP range are drawn from the same span; a phone's sipp binds
    only when its test starts, so an RTP range over it would make that start fail."""
    phone = 20000
    for _ in range(200):
        start, end = free_port_range(200, avoid=[phone])
        assert not start <= phone <= end


def test_tcp_states_count_a_ports_sockets() -> None:
    """What the e2e leak check reports when ARI turns a client away (http_report)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert tcp_states(port) == {"LISTEN": 1}
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            with accepted:
                assert tcp_states(port) == {"LISTEN": 1, "ESTABLISHED": 1}


def test_the_test_pbx_holds_more_http_sessions_than_asterisks_default() -> None:
    """Each ARI WebSocket holds an HTTP session; the shared test Asterisk sees hundreds."""
    conf = (TEMPLATE_DIR / "http.conf").read_text()
    limit = re.search(r"^sessionlimit = (\d+)$", conf, re.M)
    assert limit is not None and int(limit[1]) > 100
