"""Handing an on-call duty over to a colleague (issue 4): the staffing rule refused a logout
or pause, so the app calls the hotline's other members one after another and asks them to
take over. On 1 the colleague is logged in, and only then is the requester logged out (or
paused); nobody within the handover time: the requester stays.

Public API (stable; the feature-code and service-line flows call it):

    result = await start_handover(self, agent_id, hotline_ids, action=HandoverAction.LOGOUT)
    await self._play(result.requester_media)  # the confirmation to the requester

The handover runs as its own flow (`HandoverFlow`): its own task and inbox, claiming the
colleague legs it originates so their events come to it through the dispatcher. The
requester's flow only awaits the result, so its caller hears music on hold meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    PlaybackFinished,
    StasisStart,
)
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import HotlineError
from ari_app.flows.base import START, CallFlow, FlowContext, Stop, Table, Timer, but, on
from ari_app.flows.playlist import Playlist
from ari_app.services import agents
from ari_app.services import handover as service
from ari_app.services.audit import Path
from ari_app.services.handover import Colleague
from ari_app.services.handover import HandoverAction as HandoverAction  # re-exported

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0  # the whole handover
CONFIRM_S = 20  # after the colleague answered: time to press 1 (the question repeats)
ASK_REPEAT = 3
GOODBYE_S = 10.0  # the colleague's confirmation is cut off after this


class HandoverOutcome(enum.StrEnum):
    DONE = "done"  # a colleague took over; the requester is logged out / paused
    NOBODY = "nobody"  # nobody accepted in time: the requester stays logged in
    NOT_NEEDED = "not_needed"  # staffing allows it now: the requester was logged out / paused
    NO_COLLEAGUES = "no_colleagues"  # no other member to ask: the requester stays
    FAILED = "failed"  # something broke (database, ARI, shutdown): the requester stays


@dataclass(frozen=True)
class HandoverResult:
    outcome: HandoverOutcome
    action: HandoverAction = HandoverAction.LOGOUT
    colleagues: tuple[str, ...] = ()  # agent numbers of the colleagues who took over
    hotlines: tuple[str, ...] = ()  # numbers of the hotlines that needed a colleague

    @property
    def done(self) -> bool:
        """True when the requester is now logged out (or paused)."""
        return self.outcome in (HandoverOutcome.DONE, HandoverOutcome.NOT_NEEDED)

    @property
    def requester_media(self) -> list[str]:
        """What to play to the requester afterwards (ARI media URIs)."""
        finished = (
            ["sound:agent-loggedoff"]
            if self.action is HandoverAction.LOGOUT
            else ["sound:do-not-disturb", "sound:activated"]
        )
        if self.outcome is HandoverOutcome.DONE:
            taken = [f"digits:{number}" for number in self.colleagues]
            return ["sound:pbx-transfer", *taken, "sound:agent-loginok", *finished]
        if self.outcome is HandoverOutcome.NOT_NEEDED:
            return finished
        # Refused: the requester stays logged in (nobody took over / nobody to ask).
        if self.outcome is HandoverOutcome.NOBODY:
            return ["sound:im-sorry", "sound:number-not-answering", "sound:cancelled"]
        if self.outcome is HandoverOutcome.NO_COLLEAGUES:
            return ["sound:im-sorry", "sound:feature-not-avail-line", "sound:cancelled"]
        return ["sound:im-sorry", "sound:please-try-call-later"]


def ask_media(requester_number: str, hotline_numbers: Sequence[str]) -> list[str]:
    """'Transfer from <requester> for <hotline> [and <hotline>]. If this is correct, press 1.'"""
    media = ["sound:pbx-transfer", "sound:vm-from", f"digits:{requester_number}", "sound:for"]
    for index, number in enumerate(hotline_numbers):
        if index:
            media.append("sound:vm-and")
        media.append(f"digits:{number}")
    return [*media, "sound:if-correct-press", "digits:1"]


COLLEAGUE_CONFIRMED = ["sound:agent-loginok"]


@dataclass
class Leg:
    channel_id: str
    colleague: Colleague
    address: str
    kind: TargetKind
    playlist: Playlist
    answered: bool = False
    closing: bool = False  # confirmation plays, then we hang up


class HandoverState(enum.Enum):
    NEW = "new"
    CALLING = "calling"  # the current colleague's targets ring
    ASKING = "asking"  # a colleague answered: the question plays, waiting for 1
    ENDING = "ending"  # decided; legs still closing
    DONE = "done"


_LIVE = (HandoverState.CALLING, HandoverState.ASKING)
# Legs of earlier colleagues may still answer late, play their "logged in", be cut off.
_LEG_EVENTS = ("StasisStart", "PlaybackFinished", "timer:goodbye")
TABLE = Table(
    HandoverState,
    [
        # Decided at once (failed, not needed, nobody to ask), or the first colleague rings.
        on(
            HandoverState.NEW,
            START,
            to=(HandoverState.CALLING, HandoverState.ENDING, HandoverState.DONE),
        ),
        on(HandoverState.CALLING, "StasisStart", to=HandoverState.ASKING),
        on((*_LIVE, HandoverState.ENDING), _LEG_EVENTS),
        on(
            HandoverState.ASKING,
            "ChannelDtmfReceived",
            to=(HandoverState.CALLING, HandoverState.ENDING, HandoverState.DONE),
        ),
        on(HandoverState.ASKING, "timer:confirm"),
        on(
            _LIVE,
            "ChannelDestroyed",
            to=(HandoverState.CALLING, HandoverState.ENDING, HandoverState.DONE),
        ),
        on(HandoverState.ENDING, "ChannelDestroyed", to=HandoverState.DONE),
        on(_LIVE, "timer:deadline", to=(HandoverState.ENDING, HandoverState.DONE)),
        on(but(HandoverState, HandoverState.DONE), "Stop"),
    ],
)


class HandoverFlow(CallFlow[HandoverState]):
    name = "handover"
    initial = HandoverState.NEW
    table = TABLE

    def __init__(
        self,
        ctx: FlowContext,
        agent_id: int,
        hotline_ids: Sequence[int],
        *,
        action: HandoverAction,
        path: Path,
        timeout_s: float,
    ) -> None:
        super().__init__(ctx, f"handover-{uuid.uuid4().hex[:12]}", ())
        self.agent_id = agent_id
        self.hotline_ids = list(hotline_ids)
        self.action = action
        self.path: Path = path
        self.timeout_s = timeout_s
        self.result: asyncio.Future[HandoverResult] = asyncio.get_running_loop().create_future()
        self.requester_number = ""
        self.short_ids: set[int] = set()
        self.short_numbers: dict[int, str] = {}
        self.queue: list[Colleague] = []
        self.current: Colleague | None = None
        self.legs: dict[str, Leg] = {}
        self.asking: Leg | None = None
        self.accepted: list[str] = []
        self.ring_s = 20
        self.asks = 0
        self.legs_made = 0

    # -- plan -----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            async with self.ctx.sessions() as session, session.begin():
                plan = await service.plan(session, self.agent_id, self.action, self.hotline_ids)
                if plan is not None and not plan.short:
                    await service.leave(
                        session, plan.requester, plan.leaving, self.action, self.path
                    )
        except HotlineError as exc:
            log.warning("call=%s handover refused: %s", self.channel_id, exc.message)
            self._decided_at_once(HandoverOutcome.FAILED)
            return
        if plan is None:
            self._decided_at_once(HandoverOutcome.FAILED)
            return
        if not plan.short:
            self.ctx.agents_changed.notify()  # presence changed (panel)
            self._decided_at_once(HandoverOutcome.NOT_NEEDED)
            return
        self.requester_number = plan.requester.number
        self.short_ids = {h.id for h in plan.short}
        self.short_numbers = {h.id: h.number for h in plan.short}
        self.ring_s = min(h.ring_timeout_s for h in plan.short)
        self.queue = plan.colleagues
        if not self.queue:
            log.info("call=%s handover: no colleague to ask", self.channel_id)
            self._decided_at_once(HandoverOutcome.NO_COLLEAGUES)
            return
        self.start_timer("deadline", self.timeout_s)
        await self._next_colleague("start")

    def _decided_at_once(self, outcome: HandoverOutcome) -> None:
        """Nobody is called: the flow ends (it waited for a Stop until shutdown before)."""
        self._decide(outcome)
        self._transition(HandoverState.DONE, outcome.value)
        self.finish()

    # -- calling colleagues ---------------------------------------------------------------
    async def _next_colleague(self, cause: str) -> None:
        while self.queue:
            colleague = self.queue.pop(0)
            if not set(colleague.hotline_ids) & self.short_ids:
                continue  # what they could take over is covered already
            self.current = colleague
            for address, kind in colleague.targets:
                await self._ring(colleague, address, kind)
            if any(leg.colleague is colleague for leg in self.legs.values()):
                self._transition(HandoverState.CALLING, f"{cause}: agent {colleague.number}")
                return
        self.current = None
        self._transition(HandoverState.ENDING, "nobody left to ask")
        self._decide(HandoverOutcome.NOBODY)
        self._finish_when_idle()

    async def _ring(self, colleague: Colleague, address: str, kind: TargetKind) -> None:
        self.legs_made += 1
        leg_id = f"{self.channel_id}-l{self.legs_made}"
        leg = Leg(
            leg_id,
            colleague,
            address,
            kind,
            Playlist(self.ari, leg_id, self.language_of(colleague.language)),
        )
        self.legs[leg.channel_id] = leg
        self.ctx.registry.claim(leg.channel_id, self)
        endpoint = (
            address if kind is TargetKind.DEVICE else self.ctx.settings.dial_external(address)
        )
        if kind is TargetKind.EXTERNAL:
            self.ctx.external_calls.started(address)
        first = min(self.short_ids)
        try:
            await self.ari.originate(
                endpoint,
                app=self.ctx.app_name,
                app_args=["handoverleg", self.channel_id],
                caller_id=f'"Handover {self.requester_number}" <{self.short_numbers[first]}>',
                timeout=self.ring_s,
                channel_id=leg.channel_id,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning(
                "call=%s handover: calling agent %s failed: %s",
                self.channel_id,
                colleague.number,
                exc,
            )
            self._forget(leg)

    async def on_StasisStart(self, event: StasisStart) -> None:
        leg = self.legs.get(event.channel.id)
        if leg is None:
            return
        leg.answered = True
        if self.state is not HandoverState.CALLING or leg.colleague is not self.current:
            await self._hang_up(leg)
            return
        self.asking = leg
        for other in list(self.legs.values()):
            if other is not leg and not other.closing:  # a colleague's "logged in" plays on
                await self._hang_up(other)
        self._transition(HandoverState.ASKING, f"agent {leg.colleague.number} answered")
        self.asks = 0
        self.start_timer("confirm", CONFIRM_S)
        await self._ask(leg)

    async def _ask(self, leg: Leg) -> None:
        self.asks += 1
        hotlines = [self.short_numbers[h] for h in sorted(self.short_ids)]
        await leg.playlist.play(ask_media(self.requester_number, hotlines))

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        leg = next((x for x in self.legs.values() if x.playlist.current == event.playback.id), None)
        if leg is None or not await leg.playlist.finished(event.playback.id):
            return
        if leg.closing:
            await self._hang_up(leg)
        elif leg is self.asking and self.state is HandoverState.ASKING and self.asks < ASK_REPEAT:
            await self._ask(leg)

    async def on_ChannelDtmfReceived(self, event: ChannelDtmfReceived) -> None:
        leg = self.legs.get(event.channel.id)
        if leg is None or leg is not self.asking or self.state is not HandoverState.ASKING:
            return
        self.cancel_timer("confirm")
        await leg.playlist.stop()
        if event.digit != "1":
            log.info("call=%s agent %s declined", self.channel_id, leg.colleague.number)
            await self._hang_up(leg)
            return
        await self._accept(leg)

    async def _accept(self, leg: Leg) -> None:
        colleague = leg.colleague
        self.asking = None
        try:
            taken = await self._log_in_colleague(leg)
            async with self.ctx.sessions() as session, session.begin():
                plan = await service.plan(session, self.agent_id, self.action, self.hotline_ids)
                if plan is None:
                    raise HotlineError("the requester is gone")
                if not plan.short:
                    await service.leave(
                        session, plan.requester, plan.leaving, self.action, self.path
                    )
        except (HotlineError, OSError) as exc:
            log.warning("call=%s handover failed after the accept: %s", self.channel_id, exc)
            await self._hang_up(leg)
            self._transition(HandoverState.ENDING, "failed")
            self._decide(HandoverOutcome.FAILED)
            self._finish_when_idle()
            return
        self.ctx.agents_changed.notify()
        self.accepted.append(colleague.number)
        log.info(
            "call=%s agent %s took over hotline(s) %s from agent %s",
            self.channel_id,
            colleague.number,
            ", ".join(taken),
            self.requester_number,
        )
        leg.closing = True
        self.start_timer(f"goodbye:{leg.channel_id}", GOODBYE_S)
        if not await leg.playlist.play(COLLEAGUE_CONFIRMED):
            await self._hang_up(leg)
        self.short_ids = {h.id for h in plan.short}
        if not plan.short:
            self._transition(HandoverState.ENDING, f"agent {colleague.number} took over")
            self._decide(HandoverOutcome.DONE)
            self._finish_when_idle()
        else:  # another hotline of the requester still needs someone
            await self._next_colleague("partly covered")

    async def _log_in_colleague(self, leg: Leg) -> list[str]:
        """Log the colleague in (first transaction, so the requester leaves only after)."""
        short = {h: self.short_numbers[h] for h in self.short_ids}
        async with self.ctx.sessions() as session, session.begin():
            taken = await service.take_over(
                session,
                leg.colleague,
                short,
                agents.Target(leg.address, leg.kind),
                requester_id=self.agent_id,
                action=self.action,
            )
        self.ctx.agents_changed.notify()
        return taken

    async def on_timer_confirm(self, _: Timer) -> None:
        if self.asking is not None and self.state is HandoverState.ASKING:
            log.info(
                "call=%s agent %s did not press 1", self.channel_id, self.asking.colleague.number
            )
            await self._hang_up(self.asking)

    async def on_timer_deadline(self, _: Timer) -> None:
        if self.result.done():
            return
        log.info("call=%s handover: nobody accepted in %.0f s", self.channel_id, self.timeout_s)
        self._transition(HandoverState.ENDING, "deadline")
        self._decide(HandoverOutcome.NOBODY)
        for leg in list(self.legs.values()):
            if not leg.closing:
                await self._hang_up(leg)
        self._finish_when_idle()

    async def on_timer_goodbye(self, event: Timer) -> None:
        leg = self.legs.get(event.subject)
        if leg is not None:
            await self._hang_up(leg)

    async def on_ChannelDestroyed(self, event: ChannelDestroyed) -> None:
        leg = self.legs.get(event.channel.id)
        if leg is None:
            return
        self._forget(leg)
        if leg is self.asking:
            self.asking = None
            self.cancel_timer("confirm")
        if self.state in (HandoverState.ENDING, HandoverState.DONE):
            self._finish_when_idle()
            return
        current_legs = [x for x in self.legs.values() if x.colleague is self.current]
        if (
            self.state in (HandoverState.CALLING, HandoverState.ASKING)
            and not current_legs
            and self.asking is None
        ):
            who = leg.colleague.number
            await self._next_colleague(f"agent {who} not reached (cause {event.cause})")

    async def on_Stop(self, event: Stop) -> None:
        self._decide(HandoverOutcome.FAILED)
        self.finish()

    # -- helpers --------------------------------------------------------------------------
    def _decide(self, outcome: HandoverOutcome) -> None:
        if self.result.done():
            return
        hotlines = tuple(sorted(self.short_numbers.values()))
        self.result.set_result(HandoverResult(outcome, self.action, tuple(self.accepted), hotlines))
        log.info(
            "call=%s handover for agent %s: %s", self.channel_id, self.requester_number, outcome
        )

    def _finish_when_idle(self) -> None:
        if not self.legs:
            self.cancel_timer("deadline")
            self._transition(HandoverState.DONE, "all legs gone")
            self.finish()

    def _forget(self, leg: Leg) -> None:
        if self.legs.pop(leg.channel_id, None) is None:
            return
        self.ctx.registry.release(leg.channel_id)
        self.cancel_timer(f"goodbye:{leg.channel_id}")
        leg.playlist.current, leg.playlist.pending = None, []
        if leg.kind is TargetKind.EXTERNAL:
            self.ctx.external_calls.ended(leg.address)

    async def _hang_up(self, leg: Leg) -> None:
        try:
            await self.ari.hangup(leg.channel_id)
        except AriError as exc:
            log.debug("call=%s hangup %s: %s", self.channel_id, leg.channel_id, exc)

    async def cleanup(self) -> None:
        self._decide(HandoverOutcome.FAILED)  # no-op when decided
        for leg in list(self.legs.values()):
            await self._hang_up(leg)
            self._forget(leg)


async def start_handover(
    flow: CallFlow[Any],
    agent_id: int,
    hotline_ids: Sequence[int],
    *,
    action: HandoverAction = HandoverAction.LOGOUT,
    path: Path = "device",
    timeout_s: float | None = None,
) -> HandoverResult:
    """Hand the requester's duty over, then log the requester out (or pause them).

    `flow` is the requester's call (feature code or service line): its channel
    `flow.channel_id` hears music on hold while colleagues are called; the confirmation to
    the requester is left to the caller (play `result.requester_media`).
    `hotline_ids`: the hotlines the requester wants to leave (LOGOUT; empty = all), ignored
    for PAUSE (pause covers all their hotlines). Only those that would fall below
    `min_agents` need a colleague; the rest are simply left. `path`: the audit path of the
    requester's call (device, hotdesk, service).

    The colleagues are the other members of those hotlines, in membership position order,
    who are not available there now. Each is called on their configured targets (the bound
    device and the configured external numbers, all at once); they hear who asks to hand over
    which hotline and press 1 to accept. On 1 the colleague is logged in (to the short
    hotlines they are a member of, on the target they answered, and unpaused) and hears
    "agent logged in"; then, in a second transaction, the requester is logged out / paused.
    Nobody within `timeout_s` (default DEFAULT_TIMEOUT_S) or nobody
    left to ask: the requester stays logged in (outcome NOBODY).

    Runs in its own task with its own inbox (the colleague legs' events go there); events of
    the requester's own channel wait in the requester flow's inbox meanwhile, and the
    handover goes on even if the requester hangs up. Never raises for ARI or database
    failures (outcome FAILED).
    """
    ctx = flow.ctx
    handover = HandoverFlow(
        ctx,
        agent_id,
        hotline_ids,
        action=action,
        path=path,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
    )
    log.info(
        "call=%s agent id %s asks for a handover (%s): %s",
        flow.channel_id,
        agent_id,
        action.value,
        handover.channel_id,
    )
    # The app's handovers (ctx.handovers) keep the task; shutdown stops and awaits it.
    task = ctx.handovers.start(handover.channel_id, handover)
    moh = await _moh(flow, on=True)
    try:
        waiting: set[asyncio.Future[Any]] = {handover.result, task}
        with flow.excused_wait():  # the requester's flow waits on purpose (music on hold)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        handover.deliver(Stop("requester flow cancelled"))
        raise
    finally:
        if moh:
            await _moh(flow, on=False)
    if handover.result.done():
        return handover.result.result()
    return HandoverResult(HandoverOutcome.FAILED, action)


async def _moh(flow: CallFlow[Any], *, on: bool) -> bool:
    try:
        if on:
            await flow.ari.start_moh(flow.channel_id)
        else:
            await flow.ari.stop_moh(flow.channel_id)
    except AriError as exc:
        log.debug("call=%s music on hold %s: %s", flow.channel_id, on, exc)
        return False
    return True
