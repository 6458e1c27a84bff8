"""SIP phones and callers played by sipp, for e2e tests and benchmarks.

Each sipp process gets a scenario written here (XML), runs as an asyncio child process and
traces every SIP message (``-trace_msg``) to a file that :func:`parse_message_file` turns
into :class:`SipMessage` objects, so tests can assert on what a caller or an agent's phone
actually received (status codes, P-Asserted-Identity, Remote-Party-ID, ...).

* :func:`call` / :func:`start_call`: a caller (UAC) that dials a number through the PBX,
  optionally plays audio and RFC 2833 DTMF after the answer, and either hangs up after a
  while or waits for the PBX's BYE.
* :class:`SippPhone`: a phone (UAS) bound to its own address that answers (or rejects, or
  never answers) any number of incoming calls until stopped.

Both scenarios tolerate what Asterisk sends mid-call: UPDATE/INFO/NOTIFY/OPTIONS are
answered by ``-aa``; a re-INVITE is answered with our SDP; a BYE from the PBX at any point
after the answer ends the call cleanly; a CANCEL while ringing is answered with 200 + 487.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from devenv.asterisk import Phone
from devenv.ports import free_port, port_holders, port_is_free

log = logging.getLogger(__name__)

SIPP_BINARY = "sipp"
PCAP_DIR = Path("/usr/share/sip-tester")
# Speech-like audio, PCMA (payload 8), about 7 s.
AUDIO_PCAP = PCAP_DIR / "g711a.pcap"
_DTMF_NAMES = {"*": "star", "#": "pound"}
# telephone-event payload type used by the DTMF pcaps
DTMF_PAYLOAD = 101

Direction = Literal["sent", "received"]
PhoneMode = Literal["answer", "never", "reject"]
# True: play AUDIO_PCAP after the answer; a path: play that pcap (PCMA, payload 8); False: none
Audio = bool | Path

_REASONS = {
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}
# Final INVITE responses a caller treats as "rejected" (acknowledged, call ends, no failure).
_CALLER_FAILURE_CODES = (401, 403, 404, 408, 480, 484, 486, 488, 500, 502, 503, 600, 603)
_COMPACT_HEADERS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
}
# Headers that carry only protocol counters, routing or random ids, never an identity.
_NON_IDENTITY_HEADERS = frozenset(
    ("cseq", "call-id", "via", "content-length", "max-forwards", "session-expires", "min-se")
)
_TAG_PARAM = re.compile(r";(?:tag|branch)=[^;>\s]*")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9*#+._-]+$")
_SAFE_DISPLAY = re.compile(r"^[A-Za-z0-9 ._-]*$")
_SAFE_HEADER = re.compile(r"^[A-Za-z0-9-]+: [^\r\n\[\]<>&]*$")
_file_ids = itertools.count(1)


def dtmf_pcap(digit: str) -> Path:
    """The RFC 2833 pcap for one DTMF digit (0-9, *, #)."""
    if len(digit) != 1 or not (digit.isdigit() or digit in _DTMF_NAMES):
        raise ValueError(f"no DTMF pcap for {digit!r}")
    return PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES.get(digit, digit)}.pcap"


# ---- parsed messages -----------------------------------------------------------------


@dataclass(frozen=True)
class SipMessage:
    """One SIP message as sipp sent or received it."""

    direction: Direction
    first_line: str
    headers: dict[str, list[str]]  # lower-cased names (compact forms expanded)
    body: str
    raw: str
    timestamp: float  # epoch seconds (sipp's clock)

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0")

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0")

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        return self.first_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self) -> str | None:
        parts = self.first_line.split(" ")
        return parts[1] if self.is_request and len(parts) > 1 else None

    @property
    def status(self) -> int | None:
        """The status code, or None for a request."""
        if not self.is_response:
            return None
        parts = self.first_line.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def reason(self) -> str:
        parts = self.first_line.split(" ", 2)
        return parts[2] if self.is_response and len(parts) > 2 else ""

    @property
    def cseq_method(self) -> str:
        value = self.header("cseq") or ""
        parts = value.split()
        return parts[1].upper() if len(parts) > 1 else ""

    @property
    def call_id(self) -> str:
        return self.header("call-id") or ""

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive name), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return list(self.headers.get(name.lower(), []))

    def is_initial_invite(self) -> bool:
        """An INVITE outside a dialog (no To tag): a new call, not a re-INVITE."""
        return self.method == "INVITE" and ";tag=" not in (self.header("to") or "")

    def reveals(self, value: str) -> bool:
        """Whether ``value`` (a number or a name) appears in this message as a whole token.

        Protocol counters and random ids (CSeq, Via branches, Call-ID, tags, SDP session
        ids, ports) are left out: a CSeq of 31002 says nothing about extension 1002.
        """
        lines = [self.first_line]
        for name, values in self.headers.items():
            if name not in _NON_IDENTITY_HEADERS:
                lines.extend(f"{name}: {_TAG_PARAM.sub('', v)}" for v in values)
        lines.extend(
            line for line in self.body.splitlines() if not line.startswith(("o=", "m=", "a=rtcp"))
        )
        token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])")
        return any(token.search(line) for line in lines)


_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*$", re.M)
_DIRECTION_LINE = re.compile(r"^\w+ message (sent|received)\b.*$", re.M)


def parse_message(raw: str, direction: Direction, timestamp: float) -> SipMessage:
    """Parse one SIP message (as printed by sipp) into a :class:`SipMessage`."""
    text = raw.replace("\r\n", "\n").strip("\n")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    first_line = lines[0].strip()
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:  # folded continuation line
            headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT_HEADERS.get(key, key)
        headers.setdefault(key, []).append(value.strip())
        last = key
    return SipMessage(direction, first_line, headers, body.strip("\n"), text, timestamp)


def parse_message_file(text: str) -> list[SipMessage]:
    """Parse a sipp ``-trace_msg`` file. A partly written last message is skipped."""
    messages: list[SipMessage] = []
    marks = list(_SEPARATOR.finditer(text))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        chunk = text[mark.end() : end]
        direction_line = _DIRECTION_LINE.search(chunk)
        if direction_line is None:
            continue
        raw = chunk[direction_line.end() :].strip("\r\n")
        if not raw:
            continue
        direction: Direction = "sent" if direction_line.group(1) == "sent" else "received"
        stamp = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        messages.append(parse_message(raw, direction, stamp))
    return messages


MessagePredicate = Callable[[SipMessage], bool]


def match_message(
    *,
    method: str | None = None,
    status: int | None = None,
    direction: Direction | None = "received",
    cseq_method: str | None = None,
    predicate: MessagePredicate | None = None,
) -> MessagePredicate:
    """Build a predicate from simple criteria (all given criteria must hold)."""

    def check(msg: SipMessage) -> bool:
        if direction is not None and msg.direction != direction:
            return False
        if method is not None and msg.method != method.upper():
            return False
        if status is not None and msg.status != status:
            return False
        if cseq_method is not None and msg.cseq_method != cseq_method.upper():
            return False
        return predicate is None or predicate(msg)

    return check


# ---- scenario building blocks --------------------------------------------------------

_SDP = """v=0
o=hotline 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv"""

_ALLOW = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY"


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _cdata(message: str) -> str:
    return "<![CDATA[\n" + message.strip("\n") + "\n\n]]>"


def _send(message: str, *, retrans: bool = False, extra: str = "") -> str:
    attrs = ' retrans="500"' if retrans else ""
    return f"<send{attrs}{extra}>\n{_cdata(message)}\n</send>"


def _pause(seconds: float) -> str:
    return f'<pause milliseconds="{_ms(seconds)}"/>' if seconds > 0 else ""


def _play(pcap: Path) -> str:
    return f"<nop><action><exec play_pcap_audio={quoteattr(str(pcap))}/></action></nop>"


def _media_steps(
    audio: Audio, dtmf: str, dtmf_delay: float, dtmf_interval: float, audio_delay: float = 0.0
) -> list[str]:
    """Actions after the answer: audio (after ``audio_delay``), then DTMF digits (',' is a
    one-second pause); ``dtmf_delay`` counts from the start of the audio.

    sipp plays one pcap per call at a time; starting a DTMF pcap stops the audio.
    """
    steps: list[str] = []
    if audio:
        steps.append(_pause(audio_delay))
        steps.append(_play(audio if isinstance(audio, Path) else AUDIO_PCAP))
    if dtmf:
        steps.append(_pause(dtmf_delay))
        for char in dtmf:
            if char == ",":
                steps.append(_pause(1.0))
                continue
            steps.append(_play(dtmf_pcap(char)))
            steps.append(_pause(max(dtmf_interval, 0.2)))  # the pcap lasts 140 ms
    return [s for s in steps if s]


def _scenario(name: str, body: Sequence[str]) -> str:
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f"<scenario name={quoteattr(name)}>\n" + "\n".join(body) + "\n</scenario>\n"
    )


def _check_token(value: str, what: str) -> str:
    if not _SAFE_TOKEN.match(value):
        raise ValueError(f"{what} {value!r}: only letters, digits and * # + . _ - allowed")
    return value


def _check_headers(headers: Sequence[str]) -> str:
    for header in headers:
        if not _SAFE_HEADER.match(header):
            raise ValueError(f"extra header {header!r} must look like 'Name: value'")
    return "".join(h + "\n" for h in headers)


def uac_scenario(
    number: str,
    *,
    caller_id: str,
    display_name: str = "",
    hangup_after: float | None = None,
    bye_timeout: float = 30.0,
    answer_timeout: float = 30.0,
    audio: Audio = True,
    dtmf: str = "",
    dtmf_delay: float = 0.5,
    dtmf_interval: float = 0.3,
    audio_delay: float = 0.0,
    extra_headers: Sequence[str] = (),
) -> str:
    """Scenario XML for one outgoing call; see :func:`start_call` for the parameters."""
    number = _check_token(number, "number")
    caller_id = _check_token(caller_id, "caller id")
    if not _SAFE_DISPLAY.match(display_name):
        raise ValueError(f"display name {display_name!r} has unsupported characters")
    display = f'"{display_name}" ' if display_name else ""
    from_hdr = (
        f"From: {display}<sip:{caller_id}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
    )
    contact = f"Contact: <sip:{caller_id}@[local_ip]:[local_port]>"
    invite = f"""INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{from_hdr}
To: <sip:{number}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
{contact}
Max-Forwards: 70
{_ALLOW}
Supported: replaces
User-Agent: hotline-sipp-caller
{_check_headers(extra_headers)}Content-Type: application/sdp
Content-Length: [len]

{_SDP}"""
    ack = f"""ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{from_hdr}
To:[$dialog_to]
Call-ID: [call_id]
CSeq: 1 ACK
{contact}
Max-Forwards: 70
Content-Length: 0"""
    ack_failure = f"""ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
{from_hdr}
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0"""
    cancel = f"""CANCEL sip:{number}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
{from_hdr}
To: <sip:{number}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0"""
    bye = f"""BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{from_hdr}
To:[$dialog_to]
Call-ID: [call_id]
CSeq: 2 BYE
{contact}
Max-Forwards: 70
Content-Length: 0"""
    # sipp finds an optional="global" <recv> whenever a matching message arrives later in
    # the call; it must sit in a run of optional recvs that ends in a mandatory one, so the
    # handlers for the PBX's re-INVITE and BYE wait next to the 200 OK and jump away.
    # sipp only times out the <recv> it is waiting at, which after a 180 is the next
    # optional one: every recv before the 200 OK carries the answer timeout.
    wait = f'timeout="{_ms(answer_timeout)}" ontimeout="cancel"'
    body: list[str] = [
        _send(invite, retrans=True),
        f'<recv response="100" optional="true" {wait}/>',
        f'<recv response="180" optional="true" {wait}/>',
        f'<recv response="183" optional="true" {wait}/>',
        *(
            f'<recv response="{code}" optional="true" next="rejected" {wait}/>'
            for code in _CALLER_FAILURE_CODES
        ),
        f'<recv request="INVITE" optional="global" next="reinvite" {wait}/>',
        f'<recv request="BYE" optional="global" next="pbx_bye" {wait}/>',
        f'<recv response="200" rrs="true" rtd="true" {wait}>'
        '<action><ereg regexp=".*" search_in="hdr" header="To:" assign_to="dialog_to"/>'
        "</action></recv>",
        _send(ack),
        *_media_steps(audio, dtmf, dtmf_delay, dtmf_interval, audio_delay),
        '<label id="incall"/>',
    ]
    if hangup_after is None:
        body += [
            f'<recv request="BYE" timeout="{_ms(bye_timeout)}"/>',
            _send(_ok_response(caller_id)),
        ]
    else:
        body += [
            _pause(hangup_after) or "<nop/>",
            _send(bye, retrans=True),
            '<recv response="200"/>',
        ]
    body += [
        '<nop next="end"/>',
        # the PBX re-INVITEs (e.g. connected line without UPDATE): answer, carry on waiting
        '<label id="reinvite"/>',
        _send(_ok_response(caller_id, sdp=True), retrans=True),
        '<recv request="ACK"/>',
        '<nop next="incall"/>',
        # the PBX hung up (at any time after the answer)
        '<label id="pbx_bye"/>',
        _send(_ok_response(caller_id)),
        '<nop next="end"/>',
        # a final error response to the INVITE
        '<label id="rejected"/>',
        _send(ack_failure),
        '<nop next="end"/>',
        # no answer in time: give up
        '<label id="cancel"/>',
        _send(cancel),
        '<recv response="200" optional="true"/>',
        '<recv response="487"/>',
        _send(ack_failure),
        '<label id="end"/>',
        "<nop/>",
    ]
    return _scenario("hotline caller", body)


def _ok_response(user: str, *, sdp: bool = False, to_tag: bool = False) -> str:
    """200 OK to the last received request."""
    to = "[last_To:];tag=[pid]SIPpTag01[call_number]" if to_tag else "[last_To:]"
    head = f"""SIP/2.0 200 OK
[last_Via:]
[last_From:]
{to}
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
{_ALLOW}
"""
    if sdp:
        return head + f"Content-Type: application/sdp\nContent-Length: [len]\n\n{_SDP}"
    return head + "Content-Length: 0"


def uas_scenario(
    user: str,
    *,
    mode: PhoneMode = "answer",
    ring: float = 0.5,
    reject_code: int = 486,
    hangup_after: float | None = None,
    audio: Audio = True,
    dtmf: str = "",
    dtmf_delay: float = 0.5,
    dtmf_interval: float = 0.3,
    redirect_to: str = "",
) -> str:
    """Scenario XML for a phone taking calls; see :class:`SippPhone` for the parameters."""
    user = _check_token(user, "user")
    if mode not in ("answer", "never", "reject"):
        raise ValueError(f"unknown phone mode {mode!r}")
    to_tagged = "[last_To:];tag=[pid]SIPpTag01[call_number]"
    provisional = f"""SIP/2.0 {{code}}
[last_Via:]
[last_From:]
{to_tagged}
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0"""
    if redirect_to and not re.fullmatch(r"sip:[A-Za-z0-9*#+._-]+@[A-Za-z0-9.:-]+", redirect_to):
        raise ValueError(f"redirect target {redirect_to!r} must be sip:user@host[:port]")
    redirect = f"Contact: <{redirect_to}>\n" if redirect_to else ""
    reject = f"""SIP/2.0 {reject_code} {_REASONS.get(reject_code, "Rejected")}
[last_Via:]
[last_From:]
{to_tagged}
[last_Call-ID:]
[last_CSeq:]
{redirect}Content-Length: 0"""
    terminated = f"""SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
{to_tagged}
[last_Call-ID:]
CSeq: [$invite_cseq] INVITE
Content-Length: 0"""
    bye = f"""BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$invite_from]
Call-ID: [call_id]
CSeq: 101 BYE
Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0"""
    # Global handlers (see uac_scenario): CANCEL and BYE at the very start, before the
    # mandatory INVITE; the re-INVITE handler after the answer, before the mandatory ACK
    # (at the start it would shadow the initial INVITE of every new call).
    body: list[str] = [
        '<recv request="CANCEL" optional="global" next="cancelled"/>',
        '<recv request="BYE" optional="global" next="pbx_bye"/>',
        '<recv request="INVITE" rrs="true"><action>'
        '<ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="invite_cseq"/>'
        + (  # sipp refuses a variable that is set but never used
            '<ereg regexp=".*" search_in="hdr" header="From:" assign_to="invite_from"/>'
            if mode == "answer" and hangup_after is not None
            else ""
        )
        + "</action></recv>",
        _send(provisional.format(code="100 Trying").replace(f"\n{to_tagged}", "\n[last_To:]")),
        _send(provisional.format(code="180 Ringing")),
    ]
    if mode == "never":
        body += ['<recv request="CANCEL"/>', '<nop next="cancelled"/>']
    elif mode == "reject":
        body += [_pause(ring) or "<nop/>", _send(reject), '<recv request="ACK"/>']
        body += ['<nop next="end"/>']
    else:
        body += [
            _pause(ring) or "<nop/>",
            _send(_ok_response(user, sdp=True, to_tag=True), retrans=True),
            '<recv request="INVITE" optional="global" next="reinvite"/>',
            '<recv request="ACK" rtd="true" crlf="true"/>',
            *_media_steps(audio, dtmf, dtmf_delay, dtmf_interval),
            '<label id="incall"/>',
        ]
        if hangup_after is None:
            body += ['<recv request="BYE"/>', _send(_ok_response(user))]
        else:
            body += [
                _pause(hangup_after) or "<nop/>",
                _send(bye, retrans=True),
                '<recv response="200"/>',
            ]
        body += [
            '<nop next="end"/>',
            '<label id="reinvite"/>',
            _send(_ok_response(user, sdp=True), retrans=True),
            '<recv request="ACK"/>',
            '<nop next="incall"/>',
        ]
    body += [
        '<nop next="end"/>',
        # the PBX hung up (at any time after the answer)
        '<label id="pbx_bye"/>',
        _send(_ok_response(user)),
        '<nop next="end"/>',
        # the caller gave up while we were ringing
        '<label id="cancelled"/>',
        _send(_ok_response(user)),
        _send(terminated),
        '<recv request="ACK"/>',
        '<label id="end"/>',
        "<nop/>",
    ]
    return _scenario("hotline phone", body)


# ---- processes -----------------------------------------------------------------------


class SippError(RuntimeError):
    """sipp could not be started or did not finish in time."""


class _SippProcess:
    """A sipp child process with its scenario and trace files in ``workdir``."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{next(_file_ids)}"
        self.scenario_path = self.workdir / f"{stem}.xml"
        self.message_path = self.workdir / f"{stem}.msg"
        self.error_path = self.workdir / f"{stem}.err"
        self.stat_path = self.workdir / f"{stem}.csv"
        self.output_path = self.workdir / f"{stem}.out"
        self.name = name
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def _spawn(self, scenario: str, args: Sequence[str]) -> None:
        self.scenario_path.write_text(scenario)
        argv = [
            SIPP_BINARY,
            *args,
            "-sf",
            str(self.scenario_path),
            "-aa",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.message_path),
            "-trace_err",
            "-error_file",
            str(self.error_path),
            "-trace_stat",
            "-stf",
            str(self.stat_path),
        ]
        log.debug("starting %s", " ".join(argv))
        with self.output_path.open("wb") as out:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def messages(self) -> list[SipMessage]:
        """Snapshot of the messages traced so far."""
        try:
            text = self.message_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return parse_message_file(text)

    def error_text(self) -> str:
        parts = []
        for path in (self.error_path, self.output_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace").strip())
        return "\n".join(p for p in parts if p)

    async def wait_for_message(
        self,
        predicate: MessagePredicate | None = None,
        *,
        method: str | None = None,
        status: int | None = None,
        direction: Direction | None = "received",
        cseq_method: str | None = None,
        after: int = 0,
        timeout: float = 10.0,
    ) -> SipMessage:
        """Poll the trace until a message (index >= ``after``) matches; bounded by ``timeout``.

        ``after`` is typically ``len(x.messages())`` taken before the action under test.
        """
        check = match_message(
            method=method,
            status=status,
            direction=direction,
            cseq_method=cseq_method,
            predicate=predicate,
        )
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages()[after:]:
                if check(msg):
                    return msg
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name}: no matching SIP message within {timeout}s"
                    f" (method={method} status={status}); trace: {self.message_path}"
                )
            await asyncio.sleep(0.05)

    async def _terminate(self, timeout: float = 3.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        # SIGUSR1 would wait for running calls; tests want it gone now.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), timeout)
                return
            except TimeoutError:
                continue


# ---- caller (UAC) --------------------------------------------------------------------


@dataclass
class CallResult:
    """What a finished sipp caller saw."""

    returncode: int
    messages: list[SipMessage]
    scenario_path: Path
    message_path: Path
    errors: str = ""
    started: float = 0.0  # epoch seconds
    finished: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """sipp's verdict: every step of the scenario went as written (exit code 0)."""
        return self.returncode == 0

    def received(self, method_or_status: str | int | None = None) -> list[SipMessage]:
        return _select(self.messages, "received", method_or_status)

    def sent(self, method_or_status: str | int | None = None) -> list[SipMessage]:
        return _select(self.messages, "sent", method_or_status)

    def responses(self, code: int | None = None, method: str = "INVITE") -> list[SipMessage]:
        """Received responses to ``method`` (all, or with status ``code``)."""
        return [
            m
            for m in self.messages
            if m.direction == "received"
            and m.is_response
            and m.cseq_method == method.upper()
            and (code is None or m.status == code)
        ]

    @property
    def final_status(self) -> int | None:
        """Status of the first final response to our INVITE, or None."""
        for m in self.responses():
            if m.status is not None and m.status >= 200:
                return m.status
        return None

    @property
    def answered(self) -> bool:
        return self.final_status == 200

    @property
    def answer(self) -> SipMessage | None:
        return next(iter(self.responses(200)), None)

    def got_bye(self) -> bool:
        """The PBX hung up (we received a BYE)."""
        return bool(self.received("BYE"))

    def sent_bye(self) -> bool:
        return bool(self.sent("BYE"))

    @property
    def bye(self) -> SipMessage | None:
        """The BYE of the call, whoever sent it."""
        return next((m for m in self.messages if m.method == "BYE"), None)

    def talk_time(self) -> float | None:
        """Seconds from the 200 OK to the BYE (sipp's clock), or None."""
        answer, bye = self.answer, self.bye
        if answer is None or bye is None:
            return None
        return bye.timestamp - answer.timestamp

    def describe(self) -> str:
        lines = [f"sipp rc={self.returncode} scenario={self.scenario_path}"]
        lines += [f"  {m.direction:8} {m.first_line}" for m in self.messages]
        if self.errors:
            lines.append("  errors: " + self.errors[-2000:])
        return "\n".join(lines)


def _select(
    messages: Sequence[SipMessage], direction: Direction, what: str | int | None
) -> list[SipMessage]:
    out = [m for m in messages if m.direction == direction]
    if isinstance(what, int):
        return [m for m in out if m.status == what]
    if isinstance(what, str):
        return [m for m in out if m.method == what.upper()]
    return out


class SippCall(_SippProcess):
    """A running caller; ``await wait()`` for its :class:`CallResult`."""

    def __init__(self, workdir: Path, name: str, budget: float) -> None:
        super().__init__(workdir, name)
        self.budget = budget
        self.started = 0.0

    async def wait(self, timeout: float | None = None) -> CallResult:
        """Wait for sipp to finish (killing it after ``timeout``, default: its budget)."""
        if self._process is None:
            raise SippError("call not started")
        limit = self.budget + 5.0 if timeout is None else timeout
        try:
            await asyncio.wait_for(self._process.wait(), limit)
        except TimeoutError:
            await self._terminate()
            raise SippError(
                f"{self.name}: sipp did not finish within {limit:.0f}s; trace {self.message_path}"
            ) from None
        finally:
            if self.running:
                await self._terminate()
        return CallResult(
            returncode=self._process.returncode or 0,
            messages=self.messages(),
            scenario_path=self.scenario_path,
            message_path=self.message_path,
            errors=self.error_text() if self._process.returncode else "",
            started=self.started,
            finished=time.time(),
        )

    async def stop(self) -> None:
        """Kill the caller now (e.g. in a test's cleanup)."""
        await self._terminate()

    async def __aenter__(self) -> SippCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_call(
    number: str,
    *,
    local_addr: str,
    pbx_addr: tuple[str, int],
    workdir: Path,
    caller_id: str = "",
    display_name: str = "",
    hangup_after: float | None = None,
    bye_timeout: float = 30.0,
    answer_timeout: float = 30.0,
    audio: Audio = True,
    dtmf: str = "",
    dtmf_delay: float = 0.5,
    dtmf_interval: float = 0.3,
    audio_delay: float = 0.0,
    extra_headers: Sequence[str] = (),
    name: str = "caller",
) -> SippCall:
    """Start one call from ``local_addr`` to ``number`` at the PBX; returns at once.

    - ``caller_id``: user part of From (how the PBX identifies the caller's number);
      default: ``number``-independent "anonymous".
    - ``hangup_after``: send BYE that many seconds after the answer (and after DTMF);
      ``None`` waits up to ``bye_timeout`` for the PBX's BYE (a missing BYE fails the call).
    - ``answer_timeout``: CANCEL when no 200 OK came that many seconds after the INVITE
      (or after the last provisional response).
    - ``audio``: play g711a.pcap (PCMA, 7 s) after the answer, or the pcap at that path;
      ``dtmf``: RFC 2833 digits to
      send after ``dtmf_delay``, ``dtmf_interval`` apart (',' = 1 s pause). A DTMF digit
      stops the audio.
    - A final error response (404, 486, 503, ...) ends the call cleanly; see
      :attr:`CallResult.final_status`.
    """
    scenario = uac_scenario(
        number,
        caller_id=caller_id or "anonymous",
        display_name=display_name,
        hangup_after=hangup_after,
        bye_timeout=bye_timeout,
        answer_timeout=answer_timeout,
        audio=audio,
        dtmf=dtmf,
        dtmf_delay=dtmf_delay,
        dtmf_interval=dtmf_interval,
        audio_delay=audio_delay,
        extra_headers=extra_headers,
    )
    media_time = audio_delay + (
        dtmf_delay + len(dtmf) * max(dtmf_interval, 0.2) + dtmf.count(",") if dtmf else 0
    )
    talk = hangup_after if hangup_after is not None else bye_timeout
    budget = answer_timeout + media_time + talk + 10.0
    call = SippCall(workdir, name, budget)
    sip_port = free_port(local_addr, "udp")
    args = [
        f"{pbx_addr[0]}:{pbx_addr[1]}",
        "-i",
        local_addr,
        "-p",
        str(sip_port),
        "-mi",
        local_addr,
        "-mp",
        str(_free_media_port(local_addr, sip_port)),
        "-m",
        "1",
        "-timeout",
        f"{budget:.0f}s",
        "-timeout_error",
    ]
    call.started = time.time()
    await call._spawn(scenario, args)
    return call


async def call(
    number: str,
    *,
    local_addr: str,
    pbx_addr: tuple[str, int],
    workdir: Path,
    caller_id: str = "",
    display_name: str = "",
    hangup_after: float | None = None,
    bye_timeout: float = 30.0,
    answer_timeout: float = 30.0,
    audio: Audio = True,
    dtmf: str = "",
    dtmf_delay: float = 0.5,
    dtmf_interval: float = 0.3,
    audio_delay: float = 0.0,
    extra_headers: Sequence[str] = (),
    name: str = "caller",
) -> CallResult:
    """Make one call and wait for it to end; see :func:`start_call` for the parameters."""
    running = await start_call(
        number,
        local_addr=local_addr,
        pbx_addr=pbx_addr,
        workdir=workdir,
        caller_id=caller_id,
        display_name=display_name,
        hangup_after=hangup_after,
        bye_timeout=bye_timeout,
        answer_timeout=answer_timeout,
        audio=audio,
        dtmf=dtmf,
        dtmf_delay=dtmf_delay,
        dtmf_interval=dtmf_interval,
        audio_delay=audio_delay,
        extra_headers=extra_headers,
        name=name,
    )
    try:
        return await running.wait()
    finally:
        await running.stop()


def _free_media_port(address: str, sip_port: int) -> int:
    """An even UDP port with the next three also free (sipp uses port and port+2), none of
    them `sip_port`: that one is free too until sipp binds it first (the kernel handed out
    the same port for both once, and sipp failed with "Unable to bind audio RTP socket")."""
    for _ in range(100):
        port = free_port(address, "udp") & ~1
        if (
            port > 1024
            and not port <= sip_port <= port + 3
            and all(port_is_free(address, port + i, "udp") for i in range(4))
        ):
            return port
    raise SippError(f"no free media port on {address}")


# ---- phone (UAS) ---------------------------------------------------------------------


class SippPhone(_SippProcess):
    """A SIP phone played by one long-running sipp UAS on ``address:port``.

    It takes any number of calls (also concurrent ones) until :meth:`stop`:

    - ``mode="answer"``: 180 Ringing, answer after ``ring`` seconds; then play audio /
      DTMF, then wait for the PBX's BYE (``hangup_after=None``) or hang up after
      ``hangup_after`` seconds;
    - ``mode="never"``: ring until the PBX cancels;
    - ``mode="reject"``: answer with ``reject_code`` after ``ring`` seconds (with
      ``redirect_to``, a ``sip:user@host`` URI, as Contact: e.g. a 302 redirect).
    """

    def __init__(
        self,
        address: str,
        port: int,
        workdir: Path,
        *,
        user: str = "phone",
        mode: PhoneMode = "answer",
        ring: float = 0.5,
        reject_code: int = 486,
        hangup_after: float | None = None,
        audio: Audio = True,
        dtmf: str = "",
        dtmf_delay: float = 0.5,
        dtmf_interval: float = 0.3,
        redirect_to: str = "",
        name: str | None = None,
    ) -> None:
        super().__init__(workdir, name or f"phone-{user}")
        self.address = address
        self.port = port
        self.user = user
        self.scenario = uas_scenario(
            user,
            mode=mode,
            ring=ring,
            reject_code=reject_code,
            hangup_after=hangup_after,
            audio=audio,
            dtmf=dtmf,
            dtmf_delay=dtmf_delay,
            dtmf_interval=dtmf_interval,
            redirect_to=redirect_to,
        )

    @classmethod
    def for_phone(cls, phone: Phone, workdir: Path, **kwargs: Any) -> SippPhone:
        """The sipp phone for one of the PBX's phones (see :class:`SippPhone` for kwargs)."""
        return cls(phone.address, phone.port, workdir, user=phone.ext, **kwargs)

    async def start(self, timeout: float = 5.0) -> None:
        """Start sipp and wait until it listens on ``address:port``."""
        if self.running:
            return
        args = [
            "-i",
            self.address,
            "-p",
            str(self.port),
            "-mi",
            self.address,
            "-mp",
            str(_free_media_port(self.address, self.port)),
        ]
        await self._spawn(self.scenario, args)
        deadline = time.monotonic() + timeout
        while port_is_free(self.address, self.port, "udp"):
            if not self.running:
                raise SippError(
                    f"{self.name}: sipp exited at start: {self.error_text()}\n"
                    f"holding {self.address}:{self.port}: {port_holders(self.port)}"
                )
            if time.monotonic() >= deadline:
                await self._terminate()
                raise SippError(f"{self.name}: sipp not listening on {self.address}:{self.port}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self._terminate()

    async def __aenter__(self) -> SippPhone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def received(self, method_or_status: str | int | None = None) -> list[SipMessage]:
        return _select(self.messages(), "received", method_or_status)

    def sent(self, method_or_status: str | int | None = None) -> list[SipMessage]:
        return _select(self.messages(), "sent", method_or_status)

    def invites(self) -> list[SipMessage]:
        """Initial INVITEs received (one per call offered to this phone)."""
        return [m for m in self.received("INVITE") if m.is_initial_invite()]

    async def wait_for_invite(self, *, after: int = 0, timeout: float = 10.0) -> SipMessage:
        return await self.wait_for_message(
            lambda m: m.is_initial_invite(), method="INVITE", after=after, timeout=timeout
        )
