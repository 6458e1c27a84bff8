"""Helpers for the agent-side e2e tests (feature codes, service line, voicemail by phone):
seeding agents with PINs, an agent dialling a code from a phone, and what the app played."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ari_app.db.models import AgentLogin, AgentState, AuditEntry
from ari_app.services import admin
from devenv import sipp
from devenv.asterisk import PrivateAsterisk

from .app_harness import AriObserver
from .hotline_world import FAST, HOTLINE, HOTLINE_NAME, Sessions

PIN_ADA = "735194"
PIN_BOB = "802461"
MOBILE = "+4915112345"  # Ada's configured mobile
HOME = "+4930777888"  # Ada's configured home number


async def seed_agents(sessions: Sessions, **settings: Any) -> dict[str, int]:
    """Hotline 500; agent 101 Ada (device PJSIP/1001, mobile and home number configured)
    and agent 102 Bob (no device), both members with PINs, nobody logged in."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, HOTLINE, HOTLINE_NAME, **{**FAST, **settings})
        ada = await admin.create_agent(
            session,
            "101",
            "Ada",
            pin=PIN_ADA,
            device="PJSIP/1001",
            external_numbers=[MOBILE, HOME],
        )
        bob = await admin.create_agent(session, "102", "Bob", pin=PIN_BOB)
        await admin.add_member(session, hotline, ada)
        await admin.add_member(session, hotline, bob)
        return {"ada": ada.id, "bob": bob.id, "hotline": hotline.id}


def with_keys(workdir: Path, keys: str, delay: float, options: dict[str, Any]) -> dict[str, Any]:
    """sipp.call options that press `keys` `delay` seconds after the answer."""
    if keys:
        return {**options, "audio": dtmf_script(keys, workdir), "audio_delay": delay}
    return {"audio": False, **options}


async def dial_code(
    pbx: PrivateAsterisk,
    ext: str,
    code: str,
    workdir: Path,
    *,
    keys: str = "",
    key_delay: float = 0.5,
    **kwargs: Any,
) -> sipp.CallResult:
    """Phone `ext` dials a feature code, presses `keys` and waits for the app to hang up."""
    options = with_keys(workdir, keys, key_delay, {"bye_timeout": 20.0, **kwargs})
    return await sipp.call(
        code,
        local_addr=pbx.phone(ext).address,
        pbx_addr=pbx.sip_address,
        workdir=workdir,
        caller_id=ext,
        **options,
    )


_PCAP_HEADER = struct.Struct("<IHHiIII")
_PACKET_HEADER = struct.Struct("<IIII")
_RTP_AT = 14 + 20 + 8  # Ethernet, IPv4, UDP headers in sipp's DTMF pcaps
_scripts = itertools.count(1)


def _read_pcap(path: Path) -> tuple[bytes, list[tuple[float, bytes]]]:
    data = path.read_bytes()
    header, packets, offset = data[: _PCAP_HEADER.size], [], _PCAP_HEADER.size
    while offset < len(data):
        sec, usec, length, _ = _PACKET_HEADER.unpack_from(data, offset)
        offset += _PACKET_HEADER.size
        packets.append((sec + usec / 1e6, data[offset : offset + length]))
        offset += length
    return header, packets


def dtmf_script(keys: str, workdir: Path, *, interval: float = 0.2) -> Path:
    """One pcap with all `keys` as RFC 2833 events (`,` = one second pause), for
    `sipp.call(audio=<path>, audio_delay=...)`.

    Why not `sipp.call(dtmf=...)`: sipp replays each key's pcap with its recorded RTP
    timestamps, all in one RTP stream, and Asterisk drops an event whose timestamp is not
    newer than the last one: a repeated key, and every key after `#` (the newest pcap), is
    lost. Here every event gets the next sequence numbers and a newer timestamp.
    """
    header, out = None, bytearray()
    at, seq, stamp = 0.0, 1000, 8000
    for key in keys:
        if key == ",":
            at += 1.0
            continue
        header, packets = _read_pcap(sipp.dtmf_pcap(key))
        first = packets[0][0]
        for index, (when, packet) in enumerate(packets):
            rtp = bytearray(packet)
            struct.pack_into(">HI", rtp, _RTP_AT + 2, seq + index, stamp)
            struct.pack_into(">H", rtp, _RTP_AT - 2, 0)  # UDP checksum: none
            t = at + (when - first)
            out += _PACKET_HEADER.pack(int(t), round((t % 1) * 1e6), len(rtp), len(rtp))
            out += rtp
        seq += len(packets)
        stamp += round(max(interval, 0.2) * 8000)
        at += max(interval, 0.2)
    assert header is not None, "no keys"
    path = workdir / f"dtmf-{next(_scripts)}.pcap"
    path.write_bytes(header + bytes(out))
    return path


async def service_call(
    pbx: PrivateAsterisk,
    workdir: Path,
    *,
    caller_id: str,
    keys: str,
    key_delay: float = 0.5,
    **kwargs: Any,
) -> sipp.CallResult:
    """A phone outside the PBX calls the service line over the trunk and presses `keys`."""
    options = with_keys(workdir, keys, key_delay, {"bye_timeout": 20.0, **kwargs})
    return await sipp.call(
        pbx.service_number,
        local_addr=pbx.trunk_in_address,
        pbx_addr=pbx.sip_address,
        workdir=workdir,
        caller_id=caller_id,
        **options,
    )


def played_media(observer: AriObserver, since: int = 0) -> list[str]:
    """Every media URI the app started playing since an index into `observer.events`
    (Asterisk sends PlaybackStarted for each item of a media list)."""
    return [
        e["playback"]["media_uri"]
        for e in observer.events[since:]
        if e.get("type") == "PlaybackStarted"
    ]


async def heard(
    observer: AriObserver, media: str, *, since: int = 0, timeout: float = 10.0
) -> None:
    """Wait until the app played `media` (bounded)."""
    deadline = time.monotonic() + timeout
    while media not in played_media(observer, since):
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{media} not played within {timeout}s; played: {played_media(observer, since)}"
            )
        await asyncio.sleep(0.05)


async def logins(sessions: Sessions) -> set[tuple[int, int]]:
    async with sessions() as session:
        rows = await session.execute(select(AgentLogin.agent_id, AgentLogin.hotline_id))
        return {(agent, hotline) for agent, hotline in rows}


async def agent_state(sessions: Sessions, agent_id: int) -> AgentState:
    async with sessions() as session:
        state = await session.get(AgentState, agent_id)
    assert state is not None
    return state


async def audit(sessions: Sessions) -> list[AuditEntry]:
    """Audit rows of what people did (not the app's own housekeeping, path `system`)."""
    async with sessions() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.path != "system").order_by(AuditEntry.id)
            )
        )
