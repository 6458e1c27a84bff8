"""Property-based test of the call flows: hypothesis drives the real Dispatcher, the inbound,
feature-code and service-line flows (and the handover/escalation flows they start) with
random sequences of ARI events, DTMF (floods and long strings included) and timers, against
the hand-written fake ARI and the real Postgres. The fake answers like Asterisk around
hang-ups (404 for a channel that is gone, events still in flight) and can lose its link
(every request fails, as during a reconnect). After every step it checks:

- no exception escapes a flow (nothing logged at ERROR, no task dies unobserved);
- an agent is never rung for a second call while a leg of another call still rings it,
  and no agent stays reserved for a call that has ended;
- every endpoint the app dials is a target ops configured (a device, or the external-dial
  template filled with a configured number), never something a caller typed;
and at the end, once every channel is gone and the pending timers have fired: every flow
has ended (nothing stuck) and every call has exactly one outcome.

Time is simulated: `CallFlow.start_timer` is replaced by a clock the steps fire, so a run is
deterministic and fast.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ari_app.ari.errors import AriBadRequest, AriConnectionError, AriNotFound
from ari_app.config import load_settings
from ari_app.db.base import Base
from ari_app.db.models import AgentActivity, AgentState, Call, CallEvent, Outcome, TargetKind
from ari_app.dispatch import Dispatcher
from ari_app.flows.base import CallFlow, FlowContext, Timer
from ari_app.flows.feature import FeatureFlow
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.service import ServiceFlow
from ari_app.services import admin, agents, routing

pytestmark = pytest.mark.db

HOTLINE = "500"
MOBILE = "+4915112345"  # agent 101's configured external number
FORWARD = "+4930999000"  # the hotline's forward target
PINS = {"101": "735194", "102": "802461"}
SETTINGS = load_settings(
    {
        "HOTLINE_DATABASE_URL": "postgresql://x@localhost/x",
        "HOTLINE_EXTERNAL_DIAL": "PJSIP/{number}@trunk",
    },
    need_ari=False,
)
# What the app may ever dial: the agents' devices (PJSIP/1003 is the hot-desk phone an agent
# may log in from), and the external-dial template with configured numbers. Fixed before
# any key is pressed, so no typed digit can reach it.
ALLOWED_ENDPOINTS = frozenset(
    {"PJSIP/1001", "PJSIP/1002", "PJSIP/1003"}
    | {SETTINGS.dial_external(n) for n in (MOBILE, FORWARD)}
)
# A longer hunt: HOTLINE_FUZZ_EXAMPLES=2000 pytest tests/db/test_flow_fuzz.py
FUZZ_EXAMPLES = int(os.environ.get("HOTLINE_FUZZ_EXAMPLES", "60"))
SETTLE_S = 10.0  # a step that does not come to rest within this is a stuck flow
OUTCOME_EVENTS = {o.value.upper() for o in Outcome}
INBOUND_LEG = re.compile(r"^(?P<call>[0-9a-f-]{36})-a(?P<agent>\d+)-\d+$")


# --- simulated time, counted sessions, every flow seen ---------------------------------


@dataclass(eq=False)
class FakeTimer:
    flow: CallFlow[Any]
    name: str
    cancelled: bool = False
    fired: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Lab:
    """What the patches record during one example."""

    timers: list[FakeTimer] = field(default_factory=list)
    flows: list[CallFlow[Any]] = field(default_factory=list)
    open_sessions: int = 0
    sessions_opened: int = 0
    errors: list[str] = field(default_factory=list)

    def armed(self) -> list[FakeTimer]:
        return [t for t in self.timers if not (t.cancelled or t.fired or t.flow.finished)]


LAB = Lab()


class CountingSession(AsyncSession):
    """An AsyncSession that counts itself open, so a step knows the flows are at rest."""

    async def __aenter__(self) -> CountingSession:
        LAB.open_sessions += 1
        LAB.sessions_opened += 1
        await super().__aenter__()
        return self

    async def __aexit__(
        self,
        type_: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(type_, value, traceback)
        finally:
            LAB.open_sessions -= 1


class ErrorLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LAB.errors.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
async def lab(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    original_init = CallFlow.__init__

    def tracking_init(self: CallFlow[Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        LAB.flows.append(self)

    def start_timer(self: CallFlow[Any], name: str, seconds: float) -> None:
        self.cancel_timer(name)
        timer = FakeTimer(self, name)
        self._timers[name] = timer  # type: ignore[assignment]
        LAB.timers.append(timer)

    monkeypatch.setattr(CallFlow, "__init__", tracking_init)
    monkeypatch.setattr(CallFlow, "start_timer", start_timer)
    handler = ErrorLog(logging.ERROR)
    logger = logging.getLogger("ari_app")
    logger.addHandler(handler)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, ctx: LAB.errors.append(str(ctx.get("message"))))
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
        logger.removeHandler(handler)


class FakeMetrics:
    def __init__(self) -> None:
        self.ended: list[tuple[str | None, str]] = []
        self.anomalies: list[tuple[str, str]] = []

    def call_ended(self, hotline: str | None, outcome: str, wait_s: float | None = None) -> None:
        self.ended.append((hotline, outcome))

    def pin_checked(self, result: str, *, alert: bool) -> None:
        """The PIN checks of feature and service flows (web/metrics.Metrics has it too)."""

    def flow_anomaly(self, flow: str, kind: str) -> None:
        """Slow handlers, transitions the flows' tables do not list (web/metrics.Metrics)."""
        self.anomalies.append((flow, kind))


class FlakyAri(FakeAriClient):
    """The fake ARI as Asterisk behaves around hang-ups and outages: a request about a
    channel that is gone fails with 404 (hang-up stays idempotent), and while the link is
    down every request fails as it would during a reconnect (AriConnectionError)."""

    down = False

    def __init__(self) -> None:
        super().__init__()
        self.gone: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name not in ARI_REQUESTS:
            return attribute
        if super().__getattribute__("down"):

            async def unreachable(*args: Any, **kwargs: Any) -> Any:
                raise AriConnectionError(f"{name}: no answer within 5s")

            return unreachable
        if name in ON_A_CHANNEL:
            gone = super().__getattribute__("gone")

            async def on_channel(channel_id: str, *args: Any, **kwargs: Any) -> Any:
                if channel_id in gone:
                    if name == "hangup":
                        return False
                    raise AriNotFound(f"{name} {channel_id}: HTTP 404: Channel not found")
                return await attribute(channel_id, *args, **kwargs)

            return on_channel
        if name == "add_channel":

            async def add_channel(bridge_id: str, channel: Any, **kwargs: Any) -> Any:
                wanted = {channel} if isinstance(channel, str) else set(channel)
                if wanted & super(FlakyAri, self).__getattribute__("gone"):
                    raise AriBadRequest("add_channel: HTTP 400: Channel not found")
                return await attribute(bridge_id, channel, **kwargs)

            return add_channel
        return attribute


ON_A_CHANNEL = frozenset(
    {
        "answer",
        "hangup",
        "play",
        "record",
        "set_variable",
        "continue_in_dialplan",
        "start_moh",
        "stop_moh",
    }
)


ARI_REQUESTS = frozenset(
    name
    for name in vars(FakeAriClient)
    if not name.startswith("_") and name not in {"called", "wait_for", "wait_command"}
)


# --- the world of one example ---------------------------------------------------------


@dataclass
class Chan:
    """A channel the test plays: a caller, or a leg the app originated."""

    id: str
    name: str
    number: str
    args: list[str]
    started: bool = False
    gone: bool = False

    def json(self) -> dict[str, Any]:
        return {**channel(self.id, self.number), "name": self.name}


@dataclass(frozen=True)
class Setup:
    strategy: str
    logged_in: int  # agents 101.. logged in
    external_first: bool  # agent 101 takes calls on the mobile (confirm with 1)
    accept_confirm: bool
    timeout_action: str
    no_agent_action: str
    no_answer_limit: int
    max_queue_len: int
    feature_codes: tuple[str, str]  # dialled on the bound phone, on the hot-desk phone
    service_caller: str


ACTIONS = ["voicemail", f"forward:{FORWARD}", "announce:tt-allbusy"]
FEATURE_CODES = ["*21", "*22", "*23", "*24500", "*98500", "*21500", "*22500", "*24", "*5", "*219"]
setups = st.builds(
    Setup,
    strategy=st.sampled_from(["ring_all", "linear", "round_robin", "longest_idle", "fewest_calls"]),
    logged_in=st.integers(0, 2),
    external_first=st.booleans(),
    accept_confirm=st.booleans(),
    timeout_action=st.sampled_from(ACTIONS),
    no_agent_action=st.sampled_from(ACTIONS),
    no_answer_limit=st.sampled_from([0, 1, 3]),
    max_queue_len=st.sampled_from([1, 5]),
    feature_codes=st.tuples(st.sampled_from(FEATURE_CODES), st.sampled_from(FEATURE_CODES)),
    service_caller=st.sampled_from([MOBILE, "+4917099999", ""]),
)


def roster(setup: Setup) -> list[Chan]:
    bound, hotdesk = setup.feature_codes
    return [
        Chan("in1", "PJSIP/trunk-00000001", "030111", ["inbound", HOTLINE]),
        Chan("in2", "PJSIP/trunk-00000002", "030222", ["inbound", HOTLINE]),
        Chan("in3", "PJSIP/trunk-00000003", "030333", ["inbound", "999"]),
        Chan("ft1", "PJSIP/1001-00000004", "1001", ["feature", bound]),
        Chan("ft2", "PJSIP/1003-00000005", "1003", ["feature", hotdesk]),
        Chan("sv1", "PJSIP/trunk-00000006", setup.service_caller, ["service", "0800"]),
    ]


class World:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], setup: Setup) -> None:
        self.ari = FlakyAri()
        self.metrics = FakeMetrics()
        self.ctx = FlowContext(
            ari=self.ari,  # type: ignore[arg-type]
            settings=SETTINGS,
            sessions=sessions,
            metrics=self.metrics,  # type: ignore[arg-type]
        )
        self.dispatcher = Dispatcher(
            {"inbound": InboundFlow, "feature": FeatureFlow, "service": ServiceFlow}, self.ctx
        )
        self.sessions = sessions
        self.callers = roster(setup)
        self.legs: dict[str, Chan] = {}
        self.checked_originates = 0

    # -- sending events ------------------------------------------------------------------
    def send(self, event_type: str, **fields: Any) -> None:
        self.dispatcher.on_event(event(event_type, **fields))

    def live_legs(self) -> list[Chan]:
        self._collect_legs()
        return [leg for leg in self.legs.values() if not leg.gone]

    def live_channels(self) -> list[Chan]:
        return [c for c in self.callers if c.started and not c.gone] + self.live_legs()

    def _collect_legs(self) -> None:
        for command in self.ari.called("originate"):
            leg_id = command.kwargs["channel_id"]
            if leg_id not in self.legs:
                self.legs[leg_id] = Chan(
                    leg_id, f"PJSIP/leg-{leg_id}", "500", [*command.kwargs.get("app_args", [])]
                )

    def destroy(self, chan: Chan, cause: int) -> None:
        chan.gone = True
        self.ari.gone.add(chan.id)
        self.send("ChannelDestroyed", channel=chan.json(), cause=cause)

    def hang_up(self, chan: Chan, how: str = "both") -> None:
        if chan.gone:
            return
        if how in ("both", "end"):
            self.send("StasisEnd", channel=chan.json())
        if how in ("both", "destroyed"):
            self.destroy(chan, 16)

    # -- one step -------------------------------------------------------------------------
    async def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "start":
            chan = self.callers[step[1] % len(self.callers)]
            if not chan.started:
                chan.started = True
                self.send("StasisStart", channel=chan.json(), args=chan.args)
        elif kind == "answer":
            legs = [leg for leg in self.live_legs() if not leg.started]
            if legs:
                leg = legs[step[1] % len(legs)]
                leg.started = True
                self.send("StasisStart", channel=leg.json(), args=leg.args)
        elif kind == "leg_gone":
            legs = self.live_legs()
            if legs:
                leg = legs[step[1] % len(legs)]
                if step[3] and leg.started:
                    self.send("StasisEnd", channel=leg.json())
                self.destroy(leg, step[2])
        elif kind == "hangup":
            chan = self.callers[step[1] % len(self.callers)]
            if chan.started:
                self.hang_up(chan, step[2])
        elif kind == "hangup_request":
            chan = self.callers[step[1] % len(self.callers)]
            if chan.started and not chan.gone:
                self.send("ChannelHangupRequest", channel=chan.json(), cause=16)
        elif kind == "dtmf":
            live = self.live_channels()
            if live:
                chan = live[step[1] % len(live)]
                for digit in step[2]:
                    self.send("ChannelDtmfReceived", channel=chan.json(), digit=digit)
        elif kind == "playback":
            plays = self.ari.called("play")
            if plays:
                play = plays[-1 - step[1] % len(plays)]
                self.send(
                    "PlaybackFinished",
                    playback={
                        "id": play.kwargs.get("playback_id") or "pb",
                        "media_uri": "sound:x",
                        "target_uri": f"channel:{play.args[0]}",
                        "state": "done",
                    },
                )
        elif kind == "recording":
            records = self.ari.called("record")
            if records:
                record = records[-1]
                self.send(
                    f"Recording{step[1]}",
                    recording={
                        "name": record.args[1],
                        "format": "wav",
                        "state": "done" if step[1] == "Finished" else "failed",
                        "target_uri": f"channel:{record.args[0]}",
                        "duration": step[2],
                        "talking_duration": step[3],
                    },
                )
        elif kind == "timer":
            armed = LAB.armed()
            if armed:  # the latest first: the long ones (max_wait) fire less often
                timer = armed[-1 - step[1] % len(armed)]
                timer.fired = True
                timer.flow.deliver(Timer(timer.name))
        elif kind == "stale_timer":
            # A timer that fired just as it was cancelled: its event is already queued.
            spent = [t for t in LAB.timers if (t.cancelled or t.fired) and not t.flow.finished]
            if spent:
                timer = spent[step[1] % len(spent)]
                timer.flow.deliver(Timer(timer.name))
        elif kind == "vanish":
            # Asterisk destroyed the channel (also a caller whose StasisStart is yet to
            # come); its events are still on their way.
            doomed = [c for c in self.callers if not c.gone] + self.live_legs()
            if doomed:
                self.ari.gone.add(doomed[step[1] % len(doomed)].id)
        elif kind == "link":
            self.ari.down = step[1] == "down"
        elif kind == "stray":
            self.stray(step[1], step[2])
        elif kind == "poll":
            # The process's poll of its waiting callers (HotlineApp.sweep, POLL_S).
            self.ctx.waiting.notify()
        else:  # pragma: no cover - the strategy makes no other kind
            raise AssertionError(kind)
        await self.settle()

    def stray(self, what: str, index: int) -> None:
        """Events nobody expects: unknown channels, unknown playbacks and recordings."""
        live = self.live_channels()
        target = live[index % len(live)].id if live else "ghost"
        if what == "ghost":
            ghost = channel("ghost-channel")
            self.send("StasisEnd", channel=ghost)
            self.send("ChannelDestroyed", channel=ghost, cause=0)
            self.send("ChannelDtmfReceived", channel=ghost, digit="1")
        elif what == "playback":
            self.send(
                "PlaybackFinished",
                playback={
                    "id": "not-ours",
                    "media_uri": "sound:x",
                    "target_uri": f"channel:{target}",
                    "state": "done",
                },
            )
        elif what == "recording":
            self.send(
                "RecordingFinished",
                recording={
                    "name": "someone-else",
                    "format": "wav",
                    "state": "done",
                    "target_uri": f"channel:{target}",
                    "duration": 3,
                },
            )
        elif what == "dead_leg":
            dead = [leg for leg in self.legs.values() if leg.gone]
            if dead:
                leg = dead[index % len(dead)]
                self.send("ChannelDestroyed", channel=leg.json(), cause=16)
                self.send("ChannelDtmfReceived", channel=leg.json(), digit="1")
        else:
            self.send("BridgeDestroyed", bridge={"id": "b", "technology": "simple_bridge"})
            self.send("DeviceStateChanged", device_state={"name": "PJSIP/1001", "state": "INUSE"})

    # -- rest and teardown ------------------------------------------------------------------
    def _busy(self) -> bool:
        return LAB.open_sessions > 0 or any(
            not flow.finished and not flow.inbox.empty() for flow in LAB.flows
        )

    async def settle(self) -> None:
        """Until the flows are at rest: no session open, no event queued, no progress over
        a few loop turns. Bounded: a flow that never rests is a failure."""
        deadline = time.monotonic() + SETTLE_S
        quiet, last = 0, None
        while quiet < 4:
            await asyncio.sleep(0)
            snapshot = (len(self.ari.commands), LAB.sessions_opened, len(LAB.flows))
            quiet = 0 if self._busy() or snapshot != last else quiet + 1
            last = snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"flows not at rest after {SETTLE_S}s: {self.describe()}")

    def running(self) -> list[CallFlow[Any]]:
        return [f for f in LAB.flows if not f.finished] + [
            f for f in self.ctx.escalations.flows() if f not in LAB.flows
        ]

    def describe(self) -> str:
        return ", ".join(f"{f.name}:{f.channel_id}:{f.state.name}" for f in self.running())

    async def teardown(self) -> None:
        """Every channel hangs up, pending timers fire until every flow has ended; then the
        process's pending writes' deadline too (ends waiting for a carrier:
        routing.PendingWrites.end)."""
        self.ari.down = False
        for _ in range(10):
            for chan in self.live_channels():
                self.hang_up(chan)
            await self.settle()
            for timer in LAB.armed():
                timer.fired = True
                timer.flow.deliver(Timer(timer.name))
            await self.settle()
            if not self.live_channels() and not self.running() and not self._tasks_left():
                await self.ctx.pending.flush()
                return
        raise AssertionError(f"flows stuck after every channel hung up: {self.describe()}")

    def _tasks_left(self) -> bool:
        return self.dispatcher.active_calls > 0 or self.ctx.handovers.active > 0

    # -- invariants -----------------------------------------------------------------------
    async def check_step(self) -> None:
        assert not LAB.errors, LAB.errors
        # Every move of every flow is one its transition table lists.
        illegal = [a for a in self.metrics.anomalies if a[1] == "illegal_transition"]
        assert not illegal, illegal
        self._check_originates()
        async with self.sessions() as session:
            reserved = dict(
                (
                    await session.execute(
                        select(AgentState.agent_id, AgentState.reserved_call_id).where(
                            AgentState.reserved_call_id.is_not(None)
                        )
                    )
                ).all()
            )
            if reserved:
                ended = set(
                    await session.scalars(
                        select(Call.id).where(
                            Call.id.in_(reserved.values()), Call.outcome.is_not(None)
                        )
                    )
                )
                # Kept reserved only while a leg of that call may still ring the agent.
                ringing = {
                    (m["call"], m["agent"])
                    for leg in self.live_legs()
                    if (m := INBOUND_LEG.match(leg.id)) is not None
                }
                stale = {
                    a: c
                    for a, c in reserved.items()
                    if c in ended and (str(c), str(a)) not in ringing
                }
                assert not stale, f"agents reserved for calls that ended: {stale}"

    def _check_originates(self) -> None:
        originates = self.ari.called("originate")
        hung_up = {c.args[0] for c in self.ari.called("hangup")}
        for index in range(self.checked_originates, len(originates)):
            command = originates[index]
            endpoint = command.args[0]
            assert endpoint in ALLOWED_ENDPOINTS, f"dialled {endpoint!r}"
            match = INBOUND_LEG.match(command.kwargs["channel_id"])
            if match is None:
                continue
            # This agent has no other call's leg still ringing or connected.
            for other in originates[:index]:
                other_match = INBOUND_LEG.match(other.kwargs["channel_id"])
                if (
                    other_match is not None
                    and other_match["agent"] == match["agent"]
                    and other_match["call"] != match["call"]
                ):
                    leg = self.legs.get(other.kwargs["channel_id"])
                    alive = leg is not None and not leg.gone
                    assert not alive or other.kwargs["channel_id"] in hung_up, (
                        f"agent {match['agent']} rung for call {match['call']} while still"
                        f" on a leg of call {other_match['call']}"
                    )
        self._collect_legs()
        self.checked_originates = len(originates)

    async def check_end(self) -> None:
        await self.check_step()
        async with self.sessions() as session:
            calls = list(await session.scalars(select(Call)))
            events = list(
                await session.execute(
                    select(CallEvent.call_id, CallEvent.event).where(
                        CallEvent.event.in_(OUTCOME_EVENTS)
                    )
                )
            )
            states = list(await session.scalars(select(AgentState)))
        for call in calls:
            assert call.outcome is not None and call.ended_at is not None, (
                f"call {call.id} ({call.status}) never ended"
            )
            logged = {e for c, e in events if c == call.id}
            assert logged == {call.outcome.value.upper()}, (
                f"call {call.id}: outcome {call.outcome} but the log says {logged}"
            )
        assert len(self.metrics.ended) == len(calls), "one outcome counted per call"
        for state in states:
            assert state.reserved_call_id is None, f"agent {state.agent_id} still reserved"
            assert state.activity not in (AgentActivity.RINGING, AgentActivity.ON_CALL), (
                f"agent {state.agent_id} left {state.activity}"
            )


# --- the property ---------------------------------------------------------------------


async def seed(sessions: async_sessionmaker[AsyncSession], setup: Setup) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(
            session,
            HOTLINE,
            "Buergerbuero",
            strategy=setup.strategy,
            ring_timeout_s=20,
            retry_delay_s=0,
            wrapup_s=0,
            announce_frequency_s=30,
            max_wait_s=120,
            max_queue_len=setup.max_queue_len,
            no_answer_limit=setup.no_answer_limit,
            accept_confirm=setup.accept_confirm,
            timeout_action=setup.timeout_action,
            no_agent_action=setup.no_agent_action,
        )
        for i, number in enumerate(("101", "102")):
            agent = await admin.create_agent(
                session,
                number,
                f"Agent {number}",
                pin=PINS[number],
                device=f"PJSIP/100{i + 1}",
                external_numbers=[MOBILE] if i == 0 else [],
            )
            await admin.add_member(session, hotline, agent)
            if i < setup.logged_in:
                target = (
                    agents.Target(MOBILE, TargetKind.EXTERNAL)
                    if i == 0 and setup.external_first
                    else None
                )
                await agents.login(session, agent, target=target, path="cli", actor="fuzz")


async def reset(engine: AsyncEngine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


DIGITS = "0123456789*#"
keys = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", "6", "#", "*", "101#", "102#", "1#", "9"]),
    st.sampled_from([f"{pin}#" for pin in PINS.values()] + ["000000#", "101#735194#1"]),
    st.text(DIGITS + "ABCD", min_size=1, max_size=60),  # long strings, odd keys
    st.builds(lambda key, n: key * n, st.sampled_from("1#*5"), st.integers(50, 400)),  # floods
)
index = st.integers(0, 30)
steps = st.one_of(
    st.tuples(st.just("start"), index),
    st.tuples(st.just("answer"), index),
    st.tuples(st.just("leg_gone"), index, st.sampled_from([16, 17, 19, 21, 0, 127]), st.booleans()),
    st.tuples(st.just("hangup"), index, st.sampled_from(["both", "end", "destroyed"])),
    st.tuples(st.just("hangup_request"), index),
    st.tuples(st.just("dtmf"), index, keys),
    st.tuples(st.just("playback"), st.integers(0, 3)),
    st.tuples(
        st.just("recording"),
        st.sampled_from(["Finished", "Failed"]),
        st.integers(0, 30),
        st.integers(0, 30),
    ),
    st.tuples(st.just("timer"), index),
    st.tuples(st.just("poll")),
    st.tuples(st.just("stale_timer"), index),
    st.tuples(st.just("link"), st.sampled_from(["down", "up"])),
    st.tuples(st.just("vanish"), index),
    st.tuples(
        st.just("stray"),
        st.sampled_from(["ghost", "playback", "recording", "dead_leg", "other"]),
        index,
    ),
)
# Callers first (some hung up before their StasisStart is handled), then anything.
scenarios = st.tuples(
    st.lists(
        st.tuples(st.sampled_from(["start", "start", "vanish"]), st.integers(0, 5)),
        min_size=1,
        max_size=3,
    ),
    st.lists(steps, max_size=25),
)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(setup=setups, scenario=scenarios)
async def test_random_event_sequences_keep_the_invariants(
    engine: AsyncEngine, lab: None, setup: Setup, scenario: Any
) -> None:
    await run_scenario(engine, setup, scenario)


async def run_scenario(engine: AsyncEngine, setup: Setup, scenario: Any) -> None:
    """One example (also handy to replay a failure hypothesis printed)."""
    LAB.__init__()  # type: ignore[misc]
    await reset(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False, class_=CountingSession)
    await seed(sessions, setup)
    world = World(sessions, setup)
    openers, rest = scenario
    try:
        for step in [*openers, *rest]:
            await world.step(step)
            await world.check_step()
        await world.teardown()
        await world.check_end()
    finally:
        await world.dispatcher.shutdown(0.5)
        await world.ctx.escalations.stop(1)
        await world.ctx.handovers.wait(1)


# --- regressions the fuzz found, pinned -------------------------------------------------


@pytest.mark.parametrize("why", ["device busy", "link down"])
async def test_an_agent_that_cannot_be_rung_is_retried_on_the_poll_not_in_a_loop(
    engine: AsyncEngine, lab: None, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent whose phone is busy with another call, or an originate that fails at once
    (Asterisk restarting), must not wake the caller's distribution again right away: that
    spun reserve/originate/release as fast as the database allowed. The caller waits for
    the process's poll of the waiting queue (no timer of its own), tries once, rests."""
    LAB.__init__()  # type: ignore[misc]
    await reset(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False, class_=CountingSession)
    setup = Setup("linear", 1, False, False, "voicemail", "voicemail", 0, 5, ("*21", "*21"), "")
    await seed(sessions, setup)
    world = World(sessions, setup)
    reservations: list[object] = []
    reserve = routing.reserve_agents

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reservations.append(kwargs.get("call_id"))
        return await reserve(*args, **kwargs)

    monkeypatch.setattr(routing, "reserve_agents", counted)
    if why == "device busy":
        world.ari.device_states["PJSIP/1001"] = "INUSE"
    try:
        await world.step(("start", 0))
        if why == "link down":
            world.ari.down = True
            await world.step(("leg_gone", 0, 16, False))  # no answer: the next try fails
        opened = LAB.sessions_opened
        attempts = len(reservations)
        await world.step(("stray", "other", 0))
        assert LAB.sessions_opened == opened, "the flow is at rest"
        assert len(reservations) == attempts
        distribute = [t for t in LAB.armed() if t.name == "distribute"]
        if why == "link down":  # the retry delay after the ring nobody answered
            assert len(distribute) == 1
        else:  # no timer of its own: the process's poll of the waiting queue wakes it
            assert not distribute
            await world.step(("poll",))
            assert len(reservations) == attempts + 1, "one attempt per poll"
            await world.step(("stray", "other", 0))
            assert len(reservations) == attempts + 1, "and at rest again"
        await world.teardown()
        await world.check_end()
    finally:
        await world.dispatcher.shutdown(0.5)


async def test_a_busy_agent_is_skipped_for_the_next_one_at_once(
    engine: AsyncEngine, lab: None
) -> None:
    LAB.__init__()  # type: ignore[misc]
    await reset(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False, class_=CountingSession)
    setup = Setup("linear", 2, False, False, "voicemail", "voicemail", 0, 5, ("*21", "*21"), "")
    await seed(sessions, setup)
    world = World(sessions, setup)
    world.ari.device_states["PJSIP/1001"] = "INUSE"
    try:
        await world.step(("start", 0))
        assert [c.args[0] for c in world.ari.called("originate")] == ["PJSIP/1002"]
        await world.teardown()
        await world.check_end()
    finally:
        await world.dispatcher.shutdown(0.5)
