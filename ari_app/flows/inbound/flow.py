"""The inbound hotline call (`InboundFlow`): lookup, opening hours, the queue, offers to
agents, the bridge, the hotline's actions (voicemail, forward, announcement) when closed,
nobody is logged in, or the wait is too long; its transition table; the call's
lifecycle from StasisStart to cleanup (the one owner of it: the phases' modules only act
in their phase).

One task per call (see flows/base.py). Agent legs are originated into our Stasis app with
channel ids the flow claims first, so their events come to this flow too.
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy.exc import SQLAlchemyError

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDestroyed,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from ari_app.db.models import Call, Hotline
from ari_app.domain import numbers
from ari_app.domain.actions import Action, Announce, Forward, parse_action
from ari_app.domain.actions import Voicemail as VoicemailAction
from ari_app.domain.enums import CallStatus, Outcome, TargetKind
from ari_app.flows.base import START, FlowContext, Stop, Table, but, on
from ari_app.flows.inbound.bridge import BridgePhase
from ari_app.flows.inbound.call import (
    InboundState,
    Leg,
    _now,
)
from ari_app.flows.inbound.offer import OfferPhase
from ari_app.flows.inbound.queue import QueuePhase
from ari_app.flows.inbound.voicemail import GOODBYE_SOUND, VoicemailPhase
from ari_app.services import calls, routing, voicemail

log = logging.getLogger(__name__)

UNKNOWN_NUMBER_SOUND = "sound:ss-noservice"
DEFAULT_VM_GREETING = "sound:vm-intro"
MAILBOX_FULL_SOUND = "sound:vm-mailboxfull"
CAUSE_BUSY, CAUSE_REJECTED = 17, 21


def _table() -> Table[InboundState]:
    s = InboundState
    waiting = (s.QUEUED, s.RINGING)
    live = but(s, s.DONE)
    # Leaving the queue for the hotline's action: voicemail (a full mailbox: an
    # announcement), a forward (that may fail at once), an announcement.
    action = (s.ANNOUNCING, s.VM_GREETING, s.FORWARDING)
    return Table(
        s,
        [
            # The caller: unknown number, closed, nobody there or the queue full, or queued
            # (agents rung at once); no database: back to the dialplan (done).
            on(s.NEW, "StasisStart", to=(*waiting, *action, s.DONE)),
            # Adopted after a restart: still waiting, or bridged.
            on(s.NEW, START, to=(*waiting, s.BRIDGED)),
            on(s.QUEUED, "timer:distribute", to=s.RINGING),
            # A wake-up while agents ring: nothing to do, but it is taken off the inbox.
            on(s.RINGING, "timer:distribute"),
            on(waiting, ("timer:announce", "timer:hold_music", "timer:callback_offer")),
            on(waiting, "PlaybackFinished"),  # music on hold again; a leg's next prompt item
            on(waiting, "timer:max_wait", to=action),
            # A leg answered: an agent's (bridged, or asked to press 1 first), a forward's;
            # a leg answering in any other state is hung up.
            on(s.RINGING, "StasisStart", to=(s.BRIDGED, s.CONNECTING)),
            on(s.FORWARDING, "StasisStart", to=s.FORWARDED),
            on([x for x in live if x not in (s.NEW, s.RINGING, s.FORWARDING)], "StasisStart"),
            on(s.RINGING, "timer:confirm"),
            # The agent's 1, or the caller's 1 after the callback offer.
            on(s.RINGING, "ChannelDtmfReceived", to=(s.BRIDGED, s.CONNECTING, s.ANNOUNCING)),
            # The caller's prompt was stopped for the bridge: bridged once it has ended (a
            # number ends after its last digit), or by the timer; the agent hung up
            # meanwhile: the caller waits again.
            on(s.CONNECTING, ("PlaybackFinished", "timer:bridge"), to=s.BRIDGED),
            on(s.CONNECTING, "ChannelDestroyed", to=s.QUEUED),
            on(s.QUEUED, "ChannelDtmfReceived", to=s.ANNOUNCING),
            on(s.ANNOUNCING, "PlaybackFinished", to=s.DONE),
            on(s.VM_GREETING, "PlaybackFinished", to=s.RECORDING),
            on(
                s.RECORDING,
                ("RecordingFinished", "RecordingFailed", "timer:recording_lost"),
                to=(s.ANNOUNCING, s.DONE),
            ),
            # Hang-ups: the caller's (a recording still finishes), an agent's, a forward's.
            on(live, ("StasisEnd", "ChannelDestroyed"), to=s.DONE),
            on(s.RINGING, "ChannelDestroyed", to=s.QUEUED),  # nobody answered: retry later
            on(s.FORWARDING, "ChannelDestroyed", to=s.ANNOUNCING),  # the forward failed
            on(live, "Stop", to=s.DONE),
        ],
    )


def _action_of(hotline: Hotline, reason: Outcome) -> str:
    """The hotline's action for a caller not queued for `reason` (routing.start_call)."""
    if reason is Outcome.CLOSED:
        return hotline.closed_action
    if reason is Outcome.NO_AGENTS:
        return hotline.no_agent_action
    return hotline.timeout_action


class InboundFlow(QueuePhase, OfferPhase, BridgePhase, VoicemailPhase):
    name = "inbound"
    initial = InboundState.NEW
    table = _table()

    # -- start: lookup and decision -------------------------------------------------------
    async def on_StasisStart(self, event: StasisStart) -> None:
        if event.channel.id != self.channel_id:
            await self._leg_answered(event)
            return
        # untrusted text from SIP: bounded and made safe once, here (domain/numbers.py)
        self.caller_number = numbers.caller_number(event.channel.caller.number)
        dialled = numbers.dialled_number(self.dialled)
        # The dialplan normally answers before Stasis (an ARI answer of a silent channel
        # waits for res_stasis' next 200 ms poll); a caller it did not answer is answered
        # here, after the agents were rung.
        answer = event.channel.state != "Up"
        call_id, now = uuid.uuid4(), _now()
        try:
            # One statement, committing on its own: the call's record, the hotline's
            # decision and its agents' reservation (services/routing.py; the hotline is
            # read first when this process has no current copy of its configuration).
            # It also writes the connections other calls of this process are due and the
            # phones' presence changes (routing.PendingWrites).
            async with self.ctx.statement() as connection:

                async def started(carried: routing.Carried) -> routing.Start:
                    return await routing.start_call(
                        connection,
                        self.ctx.hotline_configs,
                        number=dialled or "",
                        call_id=call_id,
                        channel_id=self.channel_id,
                        dialled=numbers.dialled_record(self.dialled),
                        caller_number=self.caller_number,
                        node=self.ctx.node,
                        now=now,
                        carried=carried,
                    )

                start = await self.ctx.pending.carried_by(started)
        except (SQLAlchemyError, OSError) as exc:
            # No database: the dialplan's fallback takes the caller, never dead air.
            log.error(
                "call=%s database unavailable, handing back to the dialplan: %s",
                self.channel_id,
                exc,
            )
            await self._to_dialplan_fallback()
            return
        hotline = start.hotline
        self.call_id, self.queue_seq, self.hotline = call_id, start.queue_seq, hotline
        await self._set_language(hotline, event.channel.language)
        if hotline is None:
            if answer:
                await self.ari.answer(self.channel_id)
            await self._close(Outcome.REJECTED_UNKNOWN_NUMBER)
            await self._announce_and_hang_up(UNKNOWN_NUMBER_SOUND, "unknown number")
            return
        if start.reason is not None:
            self.reason = start.reason
            if answer:
                await self.ari.answer(self.channel_id)
            await self._run_action(parse_action(_action_of(hotline, start.reason)), "StasisStart")
            return
        # No agent reserved: nobody was free for it (or every free agent is due to a
        # caller ahead); it waits for a wake-up.
        await self._enter_queue(
            hotline, "StasisStart", waited_s=0.0, answer=answer, first=start.offers
        )

    async def _set_language(self, hotline: Hotline | None, current: str) -> None:
        """The caller hears the hotline's language: the channel's language is set (the
        dialplan sets HOTLINE_LANGUAGE; one request only when the hotline differs)."""
        self.language = self.language_of(hotline.language if hotline else None)
        if current == self.language:
            return
        try:
            await self.ari.set_variable(self.channel_id, "CHANNEL(language)", self.language)
        except AriError as exc:  # gone already: its events follow
            log.info("call=%s language not set: %s", self.channel_id, exc)

    # -- adoption after a restart (see ari_app/reconcile.py) -------------------------------
    @classmethod
    def adopt(
        cls,
        ctx: FlowContext,
        call: Call,
        hotline: Hotline,
        agent_leg: str | None = None,
        *,
        caller_answered: bool = True,
    ) -> InboundFlow:
        """A flow for a call a previous process handled: still waiting (agent_leg None) or
        bridged with the agent's channel `agent_leg`. Its queue place (queue_seq) is kept.
        `caller_answered` False: that process died before answering the caller."""
        flow = cls(ctx, call.channel_id, (call.dialled_number,))
        flow.call_id, flow.queue_seq, flow.hotline = call.id, call.queue_seq, hotline
        flow.language = flow.language_of(hotline.language)  # the channel has it already
        flow.caller_number = call.caller_number or ""
        flow._adoption = (call, agent_leg)
        flow._adopted_unanswered = not caller_answered
        return flow

    async def start(self) -> None:
        if self._adoption is None:
            return  # a new call: StasisStart comes through the inbox
        call, agent_leg = self._adoption
        assert self.hotline is not None
        if agent_leg is None:
            waited = (_now() - call.entered_at).total_seconds()
            await self._enter_queue(
                self.hotline,
                "adopted",
                waited_s=max(0.0, waited),
                answer=self._adopted_unanswered,
            )
            return
        leg = Leg(agent_leg, call.agent_id, "", TargetKind.DEVICE, answered=True)
        self.legs[agent_leg] = leg
        self.connected, self.bridge_id = leg, call.bridge_id
        self.ctx.registry.claim(agent_leg, self)
        self.answered_at = self.queued_at = time.monotonic()
        self._transition(InboundState.BRIDGED, "adopted")

    # -- hangups --------------------------------------------------------------------------
    async def on_StasisEnd(self, event: StasisEnd) -> None:
        if event.channel.id == self.channel_id:
            await self._caller_left()
        elif self.connected is not None and event.channel.id == self.connected.channel_id:
            self.ended.add(event.channel.id)  # an agent leg leaves Stasis hung up
            await self._call_over("agent hung up")

    async def on_ChannelDestroyed(self, event: ChannelDestroyed) -> None:
        if event.channel.id == self.channel_id:
            await self._caller_left()
            return
        leg = self.legs.get(event.channel.id)
        if leg is None:
            self.ignore("ChannelDestroyed", f"of a channel that is no leg ({event.channel.id})")
            return
        self._forget_leg(leg)
        if leg is self.connected:
            await self._call_over("agent hung up")
            return
        if leg.agent_id is not None and self.call_id is not None:
            unanswered = not leg.cancelled and event.cause not in (CAUSE_BUSY, CAUSE_REJECTED)
            self.tried.add(leg.agent_id)
            await self._release(leg.agent_id, unanswered=unanswered)
        if self.state is InboundState.RINGING and not any(
            not x.cancelled for x in self.legs.values()
        ):
            self._transition(InboundState.QUEUED, f"no answer (cause {event.cause})")
            assert self.hotline is not None
            self.retry_at = time.monotonic() + self.hotline.retry_delay_s
            self.start_timer("distribute", self.hotline.retry_delay_s)
        elif self.state is InboundState.CONNECTING and leg is self.connecting:
            await self._back_to_queue(f"agent hung up before the bridge (cause {event.cause})")
        elif self.state is InboundState.FORWARDING and leg.agent_id is None:
            await self._close(self.reason)
            await self._announce_and_hang_up("sound:all-circuits-busy-now", "forward failed")

    async def _caller_left(self) -> None:
        if self.caller_gone:
            return
        self.caller_gone = True
        if self.state in (InboundState.QUEUED, InboundState.RINGING, InboundState.CONNECTING):
            await self._cancel_legs()
            await self._close(Outcome.ABANDONED)
            self._transition(InboundState.DONE, "caller hung up")
            self.finish()
        elif self.state in (InboundState.BRIDGED, InboundState.FORWARDED):
            await self._call_over("caller hung up")
        elif self.state is InboundState.RECORDING:
            self.start_timer("recording_lost", 5)  # RecordingFinished normally follows
        else:
            if self.state in (InboundState.VM_GREETING, InboundState.FORWARDING):
                await self._close(self.reason)
            elif self.state is InboundState.NEW:  # e.g. the answer failed while ARI was unreachable
                await self._close(Outcome.ABANDONED)
            self._transition(InboundState.DONE, "caller hung up")
            self.finish()

    async def on_Stop(self, event: Stop) -> None:
        """Shutdown after the grace period: a conversation ends as answered (agent released);
        a caller still waiting goes to the dialplan fallback rather than being dropped."""
        if self.state in (InboundState.BRIDGED, InboundState.FORWARDED):
            await self._call_over(f"stop: {event.reason}")
        elif (
            self.state in (InboundState.QUEUED, InboundState.RINGING, InboundState.CONNECTING)
            and not self.caller_gone
        ):
            await self._cancel_legs()
            await self._stop_media()
            await self._close(Outcome.TIMEOUT)
            await self._to_dialplan_fallback()
        else:
            self.finish()

    # -- actions --------------------------------------------------------------------------
    async def _run_action(self, action: Action, cause: str) -> None:
        self._leave_waiting()
        self.cancel_timer("announce")
        self.cancel_timer("distribute")
        self.cancel_timer("max_wait")
        await self._stop_media()
        if self.call_id is not None:
            # Out of the queue: no longer counted as waiting, nor ahead of later callers.
            async with self.ctx.sessions() as session, session.begin():
                await calls.set_status(session, self.call_id, CallStatus.ACTION)
                await calls.log_event(
                    session,
                    self.call_id,
                    f"EXIT_{self.reason.value.upper()}",
                    action=type(action).__name__.lower(),
                )
        if isinstance(action, VoicemailAction):
            assert self.hotline is not None
            async with self.ctx.sessions() as session:
                full = await voicemail.mailbox_full(session, self.hotline)
            if full:  # the oldest messages are kept: "mailbox full", then the usual goodbye
                await self._close(self.reason)
                self._transition(InboundState.ANNOUNCING, f"{cause}, mailbox full")
                await self._play([MAILBOX_FULL_SOUND, GOODBYE_SOUND])
                return
            self._transition(InboundState.VM_GREETING, cause)
            greeting = self.hotline.voicemail_greeting
            await self._play([f"sound:{greeting}" if greeting else DEFAULT_VM_GREETING])
        elif isinstance(action, Forward):
            await self._forward(action.number, cause)
        elif isinstance(action, Announce):
            await self._close(self.reason)
            await self._announce_and_hang_up(f"sound:{action.sound}", cause)

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if self.state is InboundState.CONNECTING:
            if event.playback.id == self.stopped_playback:
                await self._bridge_connecting("prompt stopped")
            else:
                self.ignore("PlaybackFinished", "not the stopped prompt the bridge waits for")
            return
        for leg in self.legs.values():
            if leg.prompt is not None and await leg.prompt.finished(event.playback.id) is not None:
                return  # the next item of a leg's prompt started, or the prompt is over
        played = await self.prompt.finished(event.playback.id)
        if played is None:
            self.ignore("PlaybackFinished", "a playback stopped or not ours")
            return
        if not played:
            return  # the prompt's next item started
        if self.state is InboundState.ANNOUNCING:
            self._transition(InboundState.DONE, "announcement played")
            self.finish()
        elif self.state is InboundState.VM_GREETING:
            await self._start_recording()
        elif self.state in (InboundState.QUEUED, InboundState.RINGING) and not self.caller_gone:
            await self._moh(True)

    async def cleanup(self) -> None:
        self._leave_waiting()
        await self._hang_up_all()
        for leg in list(self.legs.values()):
            if leg.agent_id is not None and self.call_id is not None and leg is not self.connected:
                await self._safe(self._release(leg.agent_id, unanswered=False))
        if self.call_id is not None and self.state is not InboundState.DONE:
            await self._safe(self._close(Outcome.ABANDONED))
        self.ctx.agents_changed.notify()
