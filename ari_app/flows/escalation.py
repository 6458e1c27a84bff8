"""Escalation: a hotline fell below its staffing minimum by a path the staffing rule cannot
refuse (ops logout, auto-pause after unanswered calls, reconciliation after a restart), so
the app calls the hotline's escalation numbers one after another, in the configured order,
with an announcement, until one confirms with 1. Every call and its outcome is audited
(services/staffing.py keeps the episode, so a hotline is escalated once, by one node).

`check_staffing(ctx, trigger)` is the one entry point: it opens episodes for short hotlines
and starts an `EscalationFlow` task for each. The flow is an outbound call flow: it has no
channel of its own when it starts; it claims each leg it originates, so the leg's events
come to it through the dispatcher.
"""

from __future__ import annotations

import enum
import logging
import uuid

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    PlaybackFinished,
    StasisStart,
)
from ari_app.flows.base import START, CallFlow, FlowContext, Stop, Table, Timer, but, on
from ari_app.flows.playlist import Playlist
from ari_app.services import staffing
from ari_app.services.staffing import CallOutcome, Shortage

log = logging.getLogger(__name__)

RING_S = 30  # ring time per escalation number
CONFIRM_S = 30  # after the answer: time to press 1 (the announcement repeats meanwhile)
NEXT_CALL_S = 2.0  # pause between two numbers
ROUND_PAUSE_S = 30.0  # pause before the list is called again
ROUNDS = 3  # the list is called at most this often; then the episode ends unconfirmed
ANNOUNCE_REPEAT = 3


def announcement(hotline_number: str) -> list[str]:
    """'All circuits are busy now, for <hotline>. If this is correct, press 1.'"""
    return [
        "sound:all-circuits-busy-now",
        "sound:for",
        f"digits:{hotline_number}",
        "sound:if-correct-press",
        "digits:1",
    ]


THANK_YOU = ["sound:auth-thankyou"]


class EscalationState(enum.Enum):
    NEW = "new"
    DIALLING = "dialling"  # a number rings
    ANNOUNCING = "announcing"  # answered: the announcement plays, waiting for 1
    THANKING = "thanking"  # confirmed (the episode's end is audited): thank-you, hang up
    WAITING = "waiting"  # between two calls
    STOPPED = "stopped"  # app shutdown: the episode stays open, the next start resumes it
    DONE = "done"  # the episode's end is audited, or the next staffing check closes it


_CALLING = (
    EscalationState.DIALLING,
    EscalationState.WAITING,
    EscalationState.DONE,
)  # what placing the next call can lead to
TABLE = Table(
    EscalationState,
    [
        # No numbers, all rounds over or staffed again: done; else the first call.
        on(EscalationState.NEW, START, to=_CALLING),
        on(EscalationState.DIALLING, "StasisStart", to=EscalationState.ANNOUNCING),
        # A leg answering late (an earlier call's): hung up.
        on(
            (EscalationState.ANNOUNCING, EscalationState.THANKING, EscalationState.WAITING),
            "StasisStart",
        ),
        on(EscalationState.ANNOUNCING, ("PlaybackFinished", "timer:confirm")),
        on(EscalationState.ANNOUNCING, "ChannelDtmfReceived", to=EscalationState.THANKING),
        on(EscalationState.THANKING, "PlaybackFinished"),
        on(
            (EscalationState.DIALLING, EscalationState.ANNOUNCING),
            "ChannelDestroyed",
            to=EscalationState.WAITING,
        ),
        on(EscalationState.THANKING, "ChannelDestroyed", to=EscalationState.DONE),
        on(EscalationState.WAITING, "timer:next", to=_CALLING),
        on(
            but(EscalationState, EscalationState.DONE, EscalationState.STOPPED),
            "Stop",
            to=EscalationState.STOPPED,
        ),
    ],
)


class EscalationFlow(CallFlow[EscalationState]):
    name = "escalation"
    initial = EscalationState.NEW
    table = TABLE

    def __init__(self, ctx: FlowContext, shortage: Shortage, *, until_staffed: bool = True) -> None:
        super().__init__(ctx, f"escalation-{shortage.hotline_id}-{uuid.uuid4().hex[:8]}", ())
        self.shortage = shortage
        # False: calls until someone confirms even while the hotline is staffed (a roster
        # shift nobody could take, while the outgoing agent stays).
        self.until_staffed = until_staffed
        self.numbers = list(shortage.escalation_numbers)
        self.attempt = 0  # calls placed so far
        self.leg: str | None = None
        self.number: str | None = None
        self.outcome: CallOutcome | None = None  # of the current call, once known
        self.playlist: Playlist | None = None
        self.plays = 0

    # -- calling --------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.numbers:
            log.warning(
                "call=%s hotline %s has no escalation numbers: nobody to call",
                self.channel_id,
                self.shortage.number,
            )
            await self._end(None)
            return
        await self._next_call("start")

    async def _next_call(self, cause: str) -> None:
        if self.attempt >= len(self.numbers) * ROUNDS:
            log.warning(
                "call=%s hotline %s: no escalation number confirmed",
                self.channel_id,
                self.shortage.number,
            )
            await self._end(None)
            return
        short = True
        if self.until_staffed:
            async with self.ctx.sessions() as session:
                short = await staffing.is_short(session, self.shortage.hotline_id)
        if not short:
            log.info(
                "call=%s hotline %s staffed again: escalation stops",
                self.channel_id,
                self.shortage.number,
            )
            self._transition(
                EscalationState.DONE, "staffed again"
            )  # the next staffing check closes it
            self.finish()
            return
        number = self.numbers[self.attempt % len(self.numbers)]
        self.attempt += 1
        leg = f"{self.channel_id}-n{self.attempt}"
        self.leg, self.number, self.outcome, self.plays = leg, number, None, 0
        self.ctx.registry.claim(leg, self)
        self.ctx.external_calls.started(number)
        self._transition(EscalationState.DIALLING, cause)
        try:
            await self.ari.originate(
                self.ctx.settings.dial_external(number),
                app=self.ctx.app_name,
                app_args=["escalationleg", str(self.shortage.hotline_id)],
                caller_id=f'"{self.shortage.name}" <{self.shortage.number}>',
                timeout=RING_S,
                channel_id=leg,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning("call=%s originate to escalation number failed: %s", self.channel_id, exc)
            self.outcome = "failed"
            await self._leg_gone(leg)

    async def on_StasisStart(self, event: StasisStart) -> None:
        if event.channel.id != self.leg or self.state is not EscalationState.DIALLING:
            await self.ari.hangup(event.channel.id)
            return
        self._transition(EscalationState.ANNOUNCING, "answered")
        self.start_timer("confirm", CONFIRM_S)
        # Whoever answers an escalation number is staff: the server's default language.
        self.playlist = Playlist(self.ari, self.leg, self.ctx.settings.language)
        await self._announce()

    async def _announce(self) -> None:
        assert self.playlist is not None
        self.plays += 1
        await self.playlist.play(announcement(self.shortage.number))

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if self.playlist is None or not await self.playlist.finished(event.playback.id):
            return
        if self.state is EscalationState.ANNOUNCING and self.plays < ANNOUNCE_REPEAT:
            await self._announce()
        elif self.state is EscalationState.THANKING and self.leg is not None:
            await self.ari.hangup(self.leg)

    async def on_ChannelDtmfReceived(self, event: ChannelDtmfReceived) -> None:
        if event.channel.id != self.leg or self.state is not EscalationState.ANNOUNCING:
            return
        if event.digit != "1":
            return
        assert self.number is not None
        self.cancel_timer("confirm")
        self.outcome = "confirmed"
        assert self.playlist is not None
        await self.playlist.stop()
        async with self.ctx.sessions() as session, session.begin():
            await staffing.record_call(session, self.shortage.hotline_id, self.number, "confirmed")
            await staffing.record_end(session, self.shortage.hotline_id, self.number)
        log.info(
            "call=%s hotline %s: escalation confirmed by call %d",
            self.channel_id,
            self.shortage.number,
            self.attempt,
        )
        self._transition(EscalationState.THANKING, "pressed 1")
        if not await self.playlist.play(THANK_YOU) and self.leg is not None:
            await self.ari.hangup(self.leg)

    async def on_timer_confirm(self, _: Timer) -> None:
        if self.state is EscalationState.ANNOUNCING and self.leg is not None:
            self.outcome = "not_confirmed"
            await self.ari.hangup(self.leg)

    async def on_ChannelDestroyed(self, event: ChannelDestroyed) -> None:
        if event.channel.id != self.leg:
            return
        if self.outcome is None:
            self.outcome = (
                "not_confirmed" if self.state is EscalationState.ANNOUNCING else "no_answer"
            )
        await self._leg_gone(event.channel.id)

    async def _leg_gone(self, leg: str) -> None:
        self.ctx.registry.release(leg)
        if self.number is not None:
            self.ctx.external_calls.ended(self.number)
        self.cancel_timer("confirm")
        number, outcome = self.number, self.outcome
        self.leg = self.number = None
        self.playlist = None
        if self.state is EscalationState.THANKING:
            self._transition(EscalationState.DONE, "confirmed")
            self.finish()
            return
        assert number is not None and outcome is not None
        async with self.ctx.sessions() as session, session.begin():
            await staffing.record_call(session, self.shortage.hotline_id, number, outcome)
        round_over = self.attempt % len(self.numbers) == 0
        self._transition(EscalationState.WAITING, outcome)
        self.start_timer("next", ROUND_PAUSE_S if round_over else NEXT_CALL_S)

    async def on_timer_next(self, _: Timer) -> None:
        if self.state is EscalationState.WAITING:
            await self._next_call("next number")

    async def on_Stop(self, event: Stop) -> None:
        self._transition(EscalationState.STOPPED, event.reason)
        self.finish()

    # -- helpers --------------------------------------------------------------------------
    async def _end(self, confirmed_by: str | None) -> None:
        async with self.ctx.sessions() as session, session.begin():
            await staffing.record_end(session, self.shortage.hotline_id, confirmed_by)
        self._transition(EscalationState.DONE, "over")
        self.finish()

    async def cleanup(self) -> None:
        if self.leg is not None:
            self.ctx.registry.release(self.leg)
            try:
                await self.ari.hangup(self.leg)
            except AriError as exc:
                log.debug("call=%s hangup of the escalation call: %s", self.channel_id, exc)
            if self.number is not None:
                self.ctx.external_calls.ended(self.number)
            self.leg = None
        if self.state not in (
            EscalationState.THANKING,
            EscalationState.DONE,
            EscalationState.STOPPED,
        ):
            # A failure inside the flow: end the episode rather than retry it forever.
            try:
                async with self.ctx.sessions() as session, session.begin():
                    await staffing.record_end(session, self.shortage.hotline_id, None)
            except Exception as exc:
                log.warning("call=%s could not audit the escalation end: %s", self.channel_id, exc)


# -- running escalations of the app (ctx.escalations) -------------------------------------
def _spawn(ctx: FlowContext, shortage: Shortage, *, until_staffed: bool = True) -> None:
    flow = EscalationFlow(ctx, shortage, until_staffed=until_staffed)
    ctx.escalations.start(shortage.hotline_id, flow)


async def check_staffing(ctx: FlowContext, trigger: str) -> list[str]:
    """Escalate every hotline below its staffing minimum that is not escalated yet; returns
    their numbers. Safe to call often and from anywhere (never raises)."""
    try:
        async with ctx.sessions() as session, session.begin():
            started = await staffing.open_escalations(
                session, node=ctx.node, trigger=trigger, running=ctx.escalations.keys()
            )
    except Exception as exc:
        log.warning("staffing check (%s) failed: %s", trigger, exc)
        return []
    for shortage in started:
        if shortage.hotline_id not in ctx.escalations:
            _spawn(ctx, shortage)
    return [s.number for s in started]


def escalate(ctx: FlowContext, shortage: Shortage) -> bool:
    """Call the hotline's escalation numbers until one confirms, for a reason the staffing
    minimum does not see (the roster's incoming agent could not be logged in). False when
    an escalation of the hotline already runs in this app."""
    if shortage.hotline_id in ctx.escalations:
        return False
    _spawn(ctx, shortage, until_staffed=False)
    return True
