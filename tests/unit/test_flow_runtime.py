"""The call flow runtime (flows/base.py) around the handlers: the transition table decides
what is handled, a move the table does not list is logged and counted, an event without
an entry gets one debug line, the watchdog logs a slow handler; the registries of flows
with their own tasks belong to one FlowContext."""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any, cast

import pytest

from ari_app.config import load_settings
from ari_app.flows import base
from ari_app.flows.base import START, CallFlow, FlowContext, FlowTasks, Stop, Table, Timer, on

SETTINGS = load_settings({"HOTLINE_DATABASE_URL": "postgresql://x@localhost/x"}, need_ari=False)


class FakeMetrics:
    def __init__(self) -> None:
        self.anomalies: list[tuple[str, str]] = []

    def flow_anomaly(self, flow: str, kind: str) -> None:
        self.anomalies.append((flow, kind))


class Clock:
    """time.monotonic for flows/base.py: handlers advance it instead of taking time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Lamp(enum.Enum):
    OFF = "off"
    ON = "on"
    BROKEN = "broken"


class LampFlow(CallFlow[Lamp]):
    name = "lamp"
    initial = Lamp.OFF
    table = Table(
        Lamp,
        [
            on(Lamp.OFF, "timer:switch", to=Lamp.ON),
            on(Lamp.ON, "timer:switch", to=Lamp.OFF),
            on(Lamp.ON, "timer:slow"),
            on(Lamp.ON, "timer:handover"),
            on(list(Lamp), "Stop"),
        ],
    )
    clock: Clock
    handled: list[str]

    async def on_timer_switch(self, event: Timer) -> None:
        self.handled.append(event.name)
        if event.subject == "break":
            self._transition(Lamp.BROKEN, "not in the table")  # made anyway, but counted
        else:
            self._transition(Lamp.ON if self.state is Lamp.OFF else Lamp.OFF, "switch")

    async def on_timer_slow(self, event: Timer) -> None:
        self.handled.append(event.name)
        self.clock.now += 0.6  # a handler that holds its call up for 0.6 s

    async def on_timer_handover(self, event: Timer) -> None:
        self.handled.append(event.name)
        with self.excused_wait():  # waits on purpose (a handover): not the watchdog's
            self.clock.now += 30.0


@pytest.fixture
def lamp(monkeypatch: pytest.MonkeyPatch) -> tuple[LampFlow, FakeMetrics]:
    clock = Clock()
    monkeypatch.setattr(base, "time", clock)
    metrics = FakeMetrics()
    ctx = FlowContext(
        ari=cast(Any, None), settings=SETTINGS, sessions=cast(Any, None), metrics=cast(Any, metrics)
    )
    flow = LampFlow(ctx, "lamp-1", ())
    flow.clock, flow.handled = clock, []
    return flow, metrics


async def _run(flow: LampFlow, *events: Timer) -> None:
    for event in events:
        flow.deliver(event)
    flow.deliver(Stop("test"))
    await asyncio.wait_for(flow.run(), 5)


async def test_events_the_table_does_not_list_are_logged_once_at_debug(
    lamp: tuple[LampFlow, FakeMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    flow, metrics = lamp
    caplog.set_level(logging.DEBUG, logger="ari_app.flows.base")
    # timer:slow has a handler, but OFF has no entry for it: not handled.
    await _run(flow, Timer("slow"), Timer("switch"), Timer("unknown"))
    assert flow.handled == ["switch"]
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored == [
        "call=lamp-1 flow=lamp timer:slow in OFF ignored: not in the table",
        "call=lamp-1 flow=lamp timer:unknown in ON ignored: not in the table",
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "ignored" in r.getMessage())
    assert metrics.anomalies == []


async def test_a_transition_the_table_does_not_list_is_made_logged_and_counted(
    lamp: tuple[LampFlow, FakeMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    flow, metrics = lamp
    await _run(flow, Timer("switch:break"))
    assert flow.state is Lamp.BROKEN
    assert metrics.anomalies == [("lamp", "illegal_transition")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "call=lamp-1 flow=lamp transition OFF -[not in the table]-> BROKEN not in the table"
        " (timer:switch in OFF)"
    ]


async def test_the_watchdog_logs_a_slow_handler(
    lamp: tuple[LampFlow, FakeMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    flow, metrics = lamp
    await _run(flow, Timer("switch"), Timer("slow"), Timer("handover"))
    assert flow.handled == ["switch", "slow", "handover"]
    slow = [r for r in caplog.records if "slow handler" in r.getMessage()]
    assert [r.getMessage() for r in slow] == [
        "call=lamp-1 flow=lamp slow handler: timer:slow in ON took 0.60 s"
    ]
    assert slow[0].levelno == logging.WARNING
    # The excused wait of the handover handler is not counted.
    assert metrics.anomalies == [("lamp", "slow_handler")]


async def test_timer_subjects_reach_one_handler() -> None:
    assert Timer("confirm:leg-7").kind == "confirm"
    assert Timer("confirm:leg-7").subject == "leg-7"
    assert base.event_key(Timer("confirm:leg-7")) == "timer:confirm"
    assert base.handler_name("timer:confirm") == "on_timer_confirm"
    assert base.handler_name(START) == "start"
    assert base.handler_name("StasisStart") == "on_StasisStart"


async def test_flow_tasks_belong_to_their_context() -> None:
    """Two contexts (two apps, two tests) share no running flows; stop() ends them all."""

    class Waiter(CallFlow[Lamp]):
        initial = Lamp.OFF
        table = Table(Lamp, [on(list(Lamp), "Stop")])

    one = FlowContext(ari=cast(Any, None), settings=SETTINGS, sessions=cast(Any, None))
    two = FlowContext(ari=cast(Any, None), settings=SETTINGS, sessions=cast(Any, None))
    assert one.handovers is not two.handovers and one.escalations is not two.escalations
    assert one.external_calls is not two.external_calls
    tasks: FlowTasks[str] = one.handovers
    task = tasks.start("w", Waiter(one, "w", ()))
    assert "w" in tasks and tasks.active == 1 and not two.handovers.keys()
    await tasks.stop(1.0)
    assert task.done() and not tasks.keys()
