"""SIP load with sipp: one UAC process for the callers (rate R), one UAS for every agent,
and the per-call analysis of both message traces.

Each caller has a unique number (``<prefix><sipp call number>``) in its From user; both
the app (``caller_id_to_agent=caller``) and app_queue show it to the agent, so the agent's
INVITE carries it in its From header and the two traces can be joined on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv import sipp
from devenv.ports import free_port, port_is_free
from devenv.sipp import SipMessage, SippPhone

_PLACEHOLDER = "BENCHCALLER"
_FROM_USER = re.compile(r"sip:([^@;>]+)@")


@dataclass(frozen=True)
class CallRecord:
    """One caller's call, joined with the agent side."""

    caller: str
    invite_at: float  # the caller's INVITE left sipp (epoch s)
    final_status: int | None
    answered_at: float | None  # the caller's 200 OK arrived
    ended_at: float | None  # the caller got (or sent) the BYE
    got_bye: bool
    agent_invite_at: float | None  # the first INVITE for this caller reached an agent
    failure: str | None  # None: a successful call (see classify)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def time_to_agent(self) -> float | None:
        if self.agent_invite_at is None:
            return None
        return self.agent_invite_at - self.invite_at

    @property
    def setup_time(self) -> float | None:
        if self.answered_at is None:
            return None
        return self.answered_at - self.invite_at


def uac_scenario(
    number: str, prefix: str, *, answer_timeout: float, bye_timeout: float, audio: bool
) -> str:
    """The project's caller scenario (tolerates UPDATE, re-INVITE, early BYE) with a
    per-call caller number instead of a fixed one; `audio`: speak (RTP) once answered."""
    if not prefix.isdigit():
        raise ValueError("caller prefix must be digits")
    xml = sipp.uac_scenario(
        number,
        caller_id=_PLACEHOLDER,
        hangup_after=None,
        bye_timeout=bye_timeout,
        answer_timeout=answer_timeout,
        audio=audio,
    )
    return xml.replace(_PLACEHOLDER, f"{prefix}[call_number]")


def _media_port(address: str) -> int:
    """An even UDP port with the next three free (sipp uses port and port + 2)."""
    for _ in range(100):
        port = free_port(address, "udp") & ~1
        if port > 1024 and all(port_is_free(address, port + i, "udp") for i in range(4)):
            return port
    raise RuntimeError(f"no free media port on {address}")


class Callers:
    """One sipp UAC placing `count` calls at `rate` per second to `number`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        number: str,
        prefix: str,
        rate: float,
        count: int,
        local_addr: str,
        pbx_addr: tuple[str, int],
        answer_timeout: float,
        bye_timeout: float,
        audio: bool,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.scenario_path = workdir / f"{name}.xml"
        self.message_path = workdir / f"{name}.msg"
        self.output_path = workdir / f"{name}.out"
        self.number = number
        self.prefix = prefix
        self.rate = rate
        self.count = count
        self.local_addr = local_addr
        self.pbx_addr = pbx_addr
        self.answer_timeout = answer_timeout
        self.bye_timeout = bye_timeout
        self.audio = audio
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def budget(self) -> float:
        """Seconds the whole run may take: placing the calls plus the longest call."""
        return self.count / self.rate + self.answer_timeout + self.bye_timeout + 15

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario_path.write_text(
            uac_scenario(
                self.number,
                self.prefix,
                answer_timeout=self.answer_timeout,
                bye_timeout=self.bye_timeout,
                audio=self.audio,
            )
        )
        argv = [
            sipp.SIPP_BINARY,
            f"{self.pbx_addr[0]}:{self.pbx_addr[1]}",
            "-i", self.local_addr,
            "-p", str(free_port(self.local_addr, "udp")),
            "-mi", self.local_addr,
            "-mp", str(_media_port(self.local_addr)),
            "-sf", str(self.scenario_path),
            "-r", f"{self.rate:g}",
            "-rp", "1000",
            "-m", str(self.count),
            "-l", str(max(100, self.count)),
            "-timeout", f"{self.budget:.0f}s",
            "-aa",
            "-nostdin",
            "-trace_msg", "-message_file", str(self.message_path),
            "-trace_err", "-error_file", str(self.workdir / f"{self.name}.err"),
            "-trace_stat", "-stf", str(self.workdir / f"{self.name}.csv"),
        ]  # fmt: skip
        with self.output_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait(self) -> int:
        """Wait for sipp to place and finish every call; returns its exit code."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), self.budget + 10)
        except TimeoutError:
            await self.stop()
            return -1

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), 3)
                return
            except TimeoutError:
                continue

    def messages(self) -> list[SipMessage]:
        try:
            return sipp.parse_message_file(self.message_path.read_text(errors="replace"))
        except FileNotFoundError:
            return []


def agents_uas(
    workdir: Path, address: str, port: int, *, ring: float, hold: float, audio: bool
) -> SippPhone:
    """Every agent: 180 Ringing, answer after `ring` s, (speak,) hang up `hold` s after
    the answer."""
    return SippPhone(
        address,
        port,
        workdir,
        user="agent",
        mode="answer",
        ring=ring,
        hangup_after=hold,
        audio=audio,
        name="agents",
    )


# ---- analysis ----------------------------------------------------------------------------


def from_user(message: SipMessage) -> str:
    match = _FROM_USER.search(message.header("from") or "")
    return match.group(1) if match else ""


def agent_invites(messages: Iterable[SipMessage]) -> dict[str, float]:
    """Caller number -> when the first INVITE for that caller reached an agent."""
    first: dict[str, float] = {}
    for msg in messages:
        if msg.direction == "received" and msg.is_initial_invite():
            user = from_user(msg)
            if user and user not in first:
                first[user] = msg.timestamp
    return first


def classify(
    caller_messages: Sequence[SipMessage], agent_seen: dict[str, float], threshold: float
) -> list[CallRecord]:
    """One record per caller call. A call succeeds when the caller's INVITE got 200 OK, an
    agent was offered the call within `threshold` seconds (the establishment threshold of
    RFC 7502) and the agent's hang-up reached the caller as a BYE."""
    calls: dict[str, list[SipMessage]] = {}
    for msg in caller_messages:
        calls.setdefault(msg.call_id, []).append(msg)
    records: list[CallRecord] = []
    for msgs in calls.values():
        invite = next((m for m in msgs if m.direction == "sent" and m.method == "INVITE"), None)
        if invite is None:
            continue
        caller = from_user(invite)
        finals = [
            m
            for m in msgs
            if m.direction == "received"
            and m.is_response
            and m.cseq_method == "INVITE"
            and (m.status or 0) >= 200
        ]
        final = finals[0] if finals else None
        answered_at = final.timestamp if final is not None and final.status == 200 else None
        bye_in = next((m for m in msgs if m.direction == "received" and m.method == "BYE"), None)
        bye_any = bye_in or next((m for m in msgs if m.method == "BYE"), None)
        agent_at = agent_seen.get(caller)
        if final is None:
            failure: str | None = "no_answer"
        elif final.status != 200:
            failure = f"status_{final.status}"
        elif agent_at is None:
            failure = "no_agent"
        elif agent_at - invite.timestamp > threshold:
            failure = "slow"
        elif bye_in is None:
            failure = "no_bye"
        else:
            failure = None
        records.append(
            CallRecord(
                caller=caller,
                invite_at=invite.timestamp,
                final_status=final.status if final is not None else None,
                answered_at=answered_at,
                ended_at=bye_any.timestamp if bye_any is not None else None,
                got_bye=bye_in is not None,
                agent_invite_at=agent_at,
                failure=failure,
            )
        )
    records.sort(key=lambda r: r.invite_at)
    return records


def max_in_progress(records: Iterable[CallRecord]) -> int:
    """The most calls established at once (answered and not yet ended)."""
    events: list[tuple[float, int]] = []
    for r in records:
        if r.answered_at is not None and r.ended_at is not None:
            events += [(r.answered_at, 1), (r.ended_at, -1)]
    events.sort(key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean of values in seconds, as milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "p50": ms(percentile(values, 50)),
        "p95": ms(percentile(values, 95)),
        "p99": ms(percentile(values, 99)),
        "max": ms(max(values) if values else None),
        "mean": ms(statistics.fmean(values) if values else None),
    }
