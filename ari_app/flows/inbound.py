"""The inbound hotline call: lookup, opening hours, queue with music on hold and position
announcements, distribution to agents, bridge on answer, wrap-up; actions (voicemail,
forward, announcement) when closed, nobody is logged in, or the wait is too long.

One task per call (see flows/base.py). Agent legs are originated into our Stasis app with
channel ids the flow claims first, so their events come to this flow too.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisEnd,
    StasisStart,
)
from ari_app.db.models import Call, Hotline
from ari_app.domain import numbers
from ari_app.domain.actions import Action, Announce, Forward, parse_action
from ari_app.domain.actions import Voicemail as VoicemailAction
from ari_app.domain.callbacks import offerable
from ari_app.domain.enums import CallStatus, Outcome, TargetKind
from ari_app.domain.errors import HotlineError
from ari_app.domain.hours import OpeningHours
from ari_app.domain.presence import device_state_busy
from ari_app.domain.waits import media as spoken_wait
from ari_app.flows import escalation
from ari_app.flows.base import START, CallFlow, FlowContext, Stop, Table, Timer, but, on
from ari_app.flows.playlist import Playlist
from ari_app.services import callbacks, calls, routing, voicemail
from ari_app.services.routing import Offer, QueueFacts
from ari_app.services.waits import estimate as estimated_wait

log = logging.getLogger(__name__)

UNKNOWN_NUMBER_SOUND = "sound:ss-noservice"
DEFAULT_VM_GREETING = "sound:vm-intro"
GOODBYE_SOUND = "sound:auth-thankyou"
MAILBOX_FULL_SOUND = "sound:vm-mailboxfull"
CONFIRM_TIMEOUT_S = 10  # prompt (about 3 s) + time to press 1
POLL_S = 2.0  # covers agents freed by other nodes
RING_BEFORE_MUSIC_S = 1.0  # an agent rung at once: music on hold only after this
CAUSE_BUSY, CAUSE_REJECTED = 17, 21
CALLBACK_OFFER = ["sound:callback-offer"]  # "to be called back, press 1; you keep your place"
CALLBACK_CONFIRMED = ["sound:callback-confirmed"]  # "we call you back in your turn; goodbye"
CALLBACK_OFFER_LATER_S = 2.0  # the offer waits for an announcement or a ringing agent


class InboundState(enum.Enum):
    NEW = "new"
    ANNOUNCING = "announcing"  # an announcement, then hang up
    QUEUED = "queued"
    RINGING = "ringing"
    BRIDGED = "bridged"
    VM_GREETING = "vm_greeting"
    RECORDING = "recording"
    FORWARDING = "forwarding"
    FORWARDED = "forwarded"
    DONE = "done"


@dataclass
class Leg:
    """An outgoing channel the flow created: an agent offer or a forward."""

    channel_id: str
    agent_id: int | None
    target: str
    kind: TargetKind
    answered: bool = False
    confirming: bool = False
    cancelled: bool = False  # hung up by us: not the agent's fault
    prompt: Playlist | None = None  # "press 1" prompt of an external leg


def _now() -> datetime:
    return datetime.now(UTC)


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
            on(s.RINGING, "StasisStart", to=s.BRIDGED),
            on(s.FORWARDING, "StasisStart", to=s.FORWARDED),
            on([x for x in live if x not in (s.NEW, s.RINGING, s.FORWARDING)], "StasisStart"),
            on(s.RINGING, "timer:confirm"),
            # The agent's 1, or the caller's 1 after the callback offer.
            on(s.RINGING, "ChannelDtmfReceived", to=(s.BRIDGED, s.ANNOUNCING)),
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


class InboundFlow(CallFlow[InboundState]):
    name = "inbound"
    initial = InboundState.NEW
    table = _table()

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        super().__init__(ctx, channel_id, args)
        self.dialled = args[0] if args else ""
        self.caller_number = ""
        self.call_id: uuid.UUID | None = None
        self.hotline: Hotline | None = None
        self.queue_seq = 0
        self.legs: dict[str, Leg] = {}
        self.legs_made = 0  # leg ids stay unique for the call, even after a leg is gone
        self.ended: set[str] = set()  # channels hung up and bridges destroyed by us
        self.tried: set[int] = set()
        self.bridge_id: str | None = None
        self.connected: Leg | None = None
        self.reason = Outcome.NO_AGENTS  # why an action runs: closed/no_agents/timeout
        self.playback_id: str | None = None
        self.moh_on = False
        self.caller_gone = False
        self.recording: str | None = None
        self.started = time.monotonic()
        self.retry_at = 0.0  # no new ring before this (retry delay after a no-answer)
        self.queued_at: float | None = None
        self.answered_at: float | None = None
        self.outcome_counted = False
        self.outcome_stored = False  # a call has exactly one outcome: the first one stored
        self.first_originate_logged = False
        self._wake_pending = False  # one distribute wake-up in the inbox at a time
        self.language = ctx.settings.language  # the hotline's, once it is known
        self._adoption: tuple[Call, str | None] | None = None
        self._adopted_unanswered = False
        self.callback_offered = False  # "press 1 to be called back" was played

    def _wake(self) -> bool:
        """An agent may be free (signals.WaitQueue asks the callers in queue order). Wake-ups
        coalesce: a burst of agent changes costs a waiting caller one reservation attempt,
        not one per change. False: this caller will not try now (ringing an agent, or in
        its retry delay), the next one's turn."""
        if self.state is not InboundState.QUEUED or self.retry_at > time.monotonic():
            return False
        if not self._wake_pending:
            self._wake_pending = True
            self.deliver(Timer("distribute"))
        return True

    def _leave_waiting(self) -> None:
        if self.hotline is not None:
            self.ctx.waiting.remove(self.hotline.id, self.queue_seq)

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
            # Two statements, each committing on its own: the hotline with its facts, then
            # the call's insert with its agents' reservation (services/routing.py).
            async with self.ctx.one_statement()() as session, session.begin():
                found = await routing.start_facts(session, dialled, now) if dialled else None
                hotline, facts = found if found is not None else (None, None)
                decision = self._decide(hotline, facts)
                queued = hotline is not None and facts is not None and decision is None
                chosen = (
                    routing.choose(hotline, facts, self.tried, ahead=facts.unserved)
                    if queued and hotline is not None and facts is not None
                    else []
                )
                queue_seq, _, offers = await routing.enqueue(
                    session,
                    call_id=call_id,
                    channel_id=self.channel_id,
                    dialled=numbers.dialled_record(self.dialled),
                    caller_number=self.caller_number,
                    hotline=hotline,
                    node=self.ctx.node,
                    waiting=queued,
                    agents=chosen,
                    now=now,
                )
        except (SQLAlchemyError, OSError) as exc:
            # No database: the dialplan's fallback takes the caller, never dead air.
            log.error(
                "call=%s database unavailable, handing back to the dialplan: %s",
                self.channel_id,
                exc,
            )
            await self._to_dialplan_fallback()
            return
        self.call_id, self.queue_seq, self.hotline = call_id, queue_seq, hotline
        await self._set_language(hotline, event.channel.language)
        if hotline is None:
            if answer:
                await self.ari.answer(self.channel_id)
            await self._close(Outcome.REJECTED_UNKNOWN_NUMBER)
            await self._announce_and_hang_up(UNKNOWN_NUMBER_SOUND, "unknown number")
            return
        if decision is not None:
            if answer:
                await self.ari.answer(self.channel_id)
            await self._run_action(decision, "StasisStart")
            return
        await self._enter_queue(hotline, "StasisStart", waited_s=0.0, answer=answer, first=offers)

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

    async def _enter_queue(
        self,
        hotline: Hotline,
        cause: str,
        *,
        waited_s: float,
        answer: bool = False,
        first: list[Offer] | None = None,
    ) -> None:
        """`first`: agents already reserved for the call with its insert (a new call)."""
        self._transition(InboundState.QUEUED, cause)
        self.queued_at = time.monotonic() - waited_s
        self.ctx.waiting.add(hotline.id, self.queue_seq, self._wake)
        self.start_timer("max_wait", max(1.0, hotline.max_wait_s - waited_s))
        if hotline.announce_frequency_s > 0:
            self.start_timer("announce", hotline.announce_frequency_s)
        if hotline.callback_after_s > 0 and offerable(self.caller_number):
            # Only to the number the call came from: withheld numbers get no offer.
            self.start_timer("callback_offer", max(0.1, hotline.callback_after_s - waited_s))
        # Agents ring first; answering the caller takes Asterisk a while (about 200 ms) and
        # must not delay them. The agent's answer is handled after this (one inbox).
        await self._distribute(first)
        if answer:
            await self.ari.answer(self.channel_id)
        greeting = [f"sound:{hotline.greeting_sound}"] if hotline.greeting_sound else []
        if waited_s == 0 and self.state is InboundState.QUEUED and hotline.announce_frequency_s > 0:
            # Nobody could be rung: the caller really waits, and hears where and how long.
            greeting += await self._position_media()
        if greeting and waited_s == 0:
            await self._play(greeting)
        elif self.state is InboundState.RINGING:
            # An agent rings at once: most answer within a second, and music started and
            # stopped around that costs two requests; a longer ring gets the music.
            self.start_timer("hold_music", RING_BEFORE_MUSIC_S)
        else:
            await self._moh(True)

    async def on_timer_hold_music(self, _: Timer) -> None:
        if (
            self.state in (InboundState.QUEUED, InboundState.RINGING)
            and not self.moh_on
            and self.playback_id is None
        ):
            await self._moh(True)

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

    def _decide(self, hotline: Hotline | None, facts: QueueFacts | None) -> Action | None:
        """None: queue the caller; else the action to run instead (reason in self.reason)."""
        if hotline is None or facts is None:
            return None
        hours = OpeningHours.parse(hotline.opening_hours or "")
        if not hours.is_open(_now(), hotline.timezone, facts.holidays):
            self.reason = Outcome.CLOSED
            return parse_action(hotline.closed_action)
        if facts.logged_in == 0:
            self.reason = Outcome.NO_AGENTS
            return parse_action(hotline.no_agent_action)
        if facts.waiting >= hotline.max_queue_len:
            self.reason = Outcome.TIMEOUT
            return parse_action(hotline.timeout_action)
        return None

    async def on_database_unavailable(self, event: Any) -> None:
        # Waiting callers keep their place and their music; distribution resumes later.
        if self.state in (InboundState.QUEUED, InboundState.RINGING):
            self.start_timer("distribute", POLL_S)

    # -- waiting --------------------------------------------------------------------------
    async def on_timer_distribute(self, _: Timer) -> None:
        self._wake_pending = False
        if self.state is not InboundState.QUEUED or self.call_id is None or self.hotline is None:
            return
        wait = self.retry_at - time.monotonic()
        if wait > 0:  # a wake-up during the retry delay: not yet
            self.start_timer("distribute", wait)
            return
        await self._distribute(None)

    async def _distribute(self, first: list[Offer] | None) -> None:
        """Reserve and ring agents for the waiting caller (`first`: already reserved). The
        reservation records the first ring and the RING events (services/routing.py)."""
        assert self.call_id is not None and self.hotline is not None
        hotline = self.hotline
        while True:
            tried = len(self.tried)
            if first:
                offers, first = first, None
            else:
                # Single statements (the facts, then `hotline_reserve`, which re-checks
                # under the hotline's lock): no BEGIN and COMMIT round trips per attempt.
                async with self.ctx.one_statement()() as session, session.begin():
                    offers = await routing.reserve_agents(
                        session,
                        call_id=self.call_id,
                        hotline=hotline,
                        queue_seq=self.queue_seq,
                        tried=self.tried,
                        node=self.ctx.node,
                        now=_now(),
                    )
            rung = [offer for offer in offers if await self._ring(offer)]
            # Agents that could not be rung (busy phone, failed originate) are `tried` now:
            # the next ones are offered at once, but nobody twice in one round.
            if rung or len(self.tried) == tried:
                break
        if rung or self.tried:
            # More agents may be free, or this caller's own earlier tries kept it from one
            # the next caller may take: the next waiting caller's turn.
            self.ctx.waiting.pass_on(hotline.id, self.queue_seq)
        if rung:
            self._transition(InboundState.RINGING, "agents reserved")
        else:
            self.start_timer("distribute", POLL_S)

    async def _ring(self, offer: Offer) -> bool:
        """Originate to one reserved agent; False (and the agent released) if impossible."""
        assert self.hotline is not None and self.call_id is not None
        hotline = self.hotline
        if (
            offer.target_kind is TargetKind.DEVICE
            and offer.target not in self.ctx.followed_devices()
            and await self._device_busy(offer.target)
        ):
            self.tried.add(offer.agent_id)
            await self._release(offer.agent_id, unanswered=False, wake=False)
            return False
        endpoint = (
            offer.target
            if offer.target_kind is TargetKind.DEVICE
            else self.ctx.settings.dial_external(offer.target)
        )
        shown = hotline.number if hotline.caller_id_to_agent == "hotline" else self.caller_number
        leg = Leg(
            f"{self.call_id}-a{offer.agent_id}-{self.legs_made}",
            offer.agent_id,
            offer.target,
            offer.target_kind,
        )
        self.legs[leg.channel_id] = leg
        self.legs_made += 1
        self.ctx.registry.claim(leg.channel_id, self)
        try:
            await self.ari.originate(
                endpoint,
                app=self.ctx.app_name,
                app_args=["agentleg", str(self.call_id)],
                caller_id=f'"{hotline.name}" <{shown or hotline.number}>',
                timeout=hotline.ring_timeout_s,
                channel_id=leg.channel_id,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning(
                "call=%s originate to agent %s failed: %s", self.channel_id, offer.agent_id, exc
            )
            self._forget_leg(leg)
            self.tried.add(offer.agent_id)
            await self._release(offer.agent_id, unanswered=False, wake=False)
            return False
        if not self.first_originate_logged:
            self.first_originate_logged = True
            log.info(
                "call=%s flow=%s first originate after %.1f ms",
                self.channel_id,
                self.name,
                (time.monotonic() - self.started) * 1000,
            )
        return True

    async def _device_busy(self, device: str) -> bool:
        """Any other call on the agent's device, hotline or not, keeps it from ringing."""
        try:
            state = await self.ari.get_device_state(device)
        except AriError:
            return False
        return device_state_busy(state.state)

    async def on_timer_announce(self, _: Timer) -> None:
        if self.state not in (InboundState.QUEUED, InboundState.RINGING) or self.call_id is None:
            return
        assert self.hotline is not None
        # Not over an announcement still playing: Asterisk queues a second playback behind
        # the first on the channel's control queue, and the bridge request of an agent who
        # answers meanwhile would wait behind both (only the newest playback can be stopped).
        if self.playback_id is None:
            media = await self._position_media()
            if media:
                await self._play(media)
        else:
            log.debug("call=%s announcement still playing: next one skipped", self.channel_id)
        self.start_timer("announce", self.hotline.announce_frequency_s)

    async def _position_media(self) -> list[str]:
        """The caller's position and, when there is enough data, the estimated wait."""
        assert self.hotline is not None
        wait = None
        try:
            async with self.ctx.sessions() as session:
                position = await routing.position_of(session, self.call_id)
                wait = await estimated_wait(session, self.hotline, position, _now())
        except (SQLAlchemyError, OSError) as exc:
            log.warning("call=%s position unknown: %s", self.channel_id, exc)
            return []
        media = (
            ["sound:queue-youarenext"]
            if position <= 1
            else ["sound:queue-thereare", f"number:{position - 1}", "sound:queue-callswaiting"]
        )
        return media + (spoken_wait(wait) if wait is not None else [])

    async def on_timer_max_wait(self, _: Timer) -> None:
        if self.state not in (InboundState.QUEUED, InboundState.RINGING):
            return
        await self._cancel_legs()
        self.reason = Outcome.TIMEOUT
        assert self.hotline is not None
        await self._run_action(parse_action(self.hotline.timeout_action), "max_wait")

    # -- callback keeping the place (issue 15) --------------------------------------------
    async def on_timer_callback_offer(self, _: Timer) -> None:
        if self.caller_gone or self.state not in (InboundState.QUEUED, InboundState.RINGING):
            return
        if self.state is InboundState.RINGING or self.playback_id is not None:
            # An agent rings for the caller (the offer comes if that fails), or a position
            # announcement plays: not over it.
            self.start_timer("callback_offer", CALLBACK_OFFER_LATER_S)
            return
        self.callback_offered = True
        await self._play(CALLBACK_OFFER)

    async def _accept_callback(self) -> None:
        """The caller pressed 1: a virtual entry keeps the call's place and entry time
        (services/callbacks.py); the caller hears the confirmation and the call ends."""
        assert self.call_id is not None
        call_id, now = self.call_id, _now()
        try:
            async with self.ctx.sessions() as session, session.begin():
                await callbacks.request(session, call_id, now)
        except HotlineError as exc:  # e.g. the hotline stopped offering callbacks meanwhile
            log.info("call=%s no callback: %s", self.channel_id, exc)
            return
        self.outcome_stored = True  # the call goes on as a callback: no outcome now
        self.outcome_counted = True
        self._leave_waiting()
        for timer in ("announce", "distribute", "max_wait", "callback_offer", "hold_music"):
            self.cancel_timer(timer)
        await self._cancel_legs()  # agents ringing for the caller are released
        await self._stop_media()
        self.ctx.agents_changed.notify()  # the place is the callback's now
        self._transition(InboundState.ANNOUNCING, "callback requested")
        await self._play(CALLBACK_CONFIRMED)

    # -- agent legs -----------------------------------------------------------------------
    async def _leg_answered(self, event: StasisStart) -> None:
        leg = self.legs.get(event.channel.id)
        if leg is None:
            self.ignore("StasisStart", f"of a channel that is no leg ({event.channel.id})")
            return
        leg.answered = True
        if self.state is InboundState.FORWARDING and leg.agent_id is None:
            await self._connect(leg, InboundState.FORWARDED, "forward answered")
            return
        if self.state is not InboundState.RINGING:
            await self._drop_leg(leg)
            return
        assert self.hotline is not None
        if leg.kind is TargetKind.EXTERNAL and self.hotline.accept_confirm:
            # A mobile voicemail must never take a hotline call: the agent presses 1.
            leg.confirming = True
            # One playback per item (Playlist), stopped when 1 is pressed: the leg joins the
            # bridge only after its playback ends (seen on 16.28 and 22.10), so a media-list
            # playback kept the caller apart for the rest of the prompt (on 22 both waited).
            leg.prompt = Playlist(self.ari, leg.channel_id, await self._agent_language(leg))
            media = [f"digits:{self.hotline.number}", "sound:if-correct-press", "digits:1"]
            if not await leg.prompt.play(media):
                await self._drop_leg(leg)
                return
            self.start_timer(f"confirm:{leg.channel_id}", CONFIRM_TIMEOUT_S)
            return
        await self._connect(leg, InboundState.BRIDGED, "agent answered")

    async def on_ChannelDtmfReceived(self, event: ChannelDtmfReceived) -> None:
        if event.channel.id == self.channel_id:
            if (
                event.digit == "1"
                and self.callback_offered
                and self.state in (InboundState.QUEUED, InboundState.RINGING)
                and not self.caller_gone
            ):
                await self._accept_callback()
            return
        leg = self.legs.get(event.channel.id)
        if leg is None or not leg.confirming or self.state is not InboundState.RINGING:
            self.ignore("ChannelDtmfReceived", "not of a leg asked to press 1")
            return
        if event.digit == "1":
            leg.confirming = False
            self.cancel_timer(f"confirm:{leg.channel_id}")
            if leg.prompt is not None:
                await leg.prompt.stop()
            await self._connect(leg, InboundState.BRIDGED, "agent confirmed")

    async def on_timer_confirm(self, event: Timer) -> None:
        leg = self.legs.get(event.subject)
        if leg is not None and leg.confirming:
            log.info("call=%s agent %s did not confirm", self.channel_id, leg.agent_id)
            await self._drop_leg(leg, unanswered=True)

    async def _connect(self, leg: Leg, state: InboundState, cause: str) -> None:
        assert self.call_id is not None and self.hotline is not None
        for other in list(self.legs.values()):
            if other is not leg:
                await self._drop_leg(other)
        self.cancel_timer("max_wait")
        self.cancel_timer("announce")
        self.cancel_timer("distribute")
        self._leave_waiting()
        await self._stop_media()
        self.bridge_id = f"{self.call_id}-bridge"
        # The caller sees the hotline, never the agent's device or number: name and number
        # in one request each ("name" <number>, the form CONNECTEDLINE/CALLERID(all) read).
        shown = '"{}" <{}>'.format(self.hotline.name.replace('"', ""), self.hotline.number)
        try:
            await self.ari.create_bridge("mixing", bridge_id=self.bridge_id, name="hotline")
            await self.ari.set_variable(self.channel_id, "CONNECTEDLINE(all,i)", shown)
            await self.ari.set_variable(leg.channel_id, "CALLERID(all)", shown)
            await self.ari.add_channel(self.bridge_id, [self.channel_id, leg.channel_id])
        except AriError as exc:
            log.warning("call=%s bridging failed: %s", self.channel_id, exc)
            self.finish()  # never connected: cleanup releases the agent
            return
        # Only now: a connection that failed half-way must leave the agent to cleanup.
        self.connected = leg
        now = _now()
        self.answered_at = time.monotonic()
        async with self.ctx.one_statement()() as session, session.begin():
            await routing.connect_call(
                session,
                call_id=self.call_id,
                agent_id=leg.agent_id,
                bridge_id=self.bridge_id,
                target_kind=leg.kind,
                now=now,
            )
        self._transition(state, cause)

    async def _drop_leg(self, leg: Leg, *, unanswered: bool = False) -> None:
        """Hang up a leg we no longer want; the agent is released when it is destroyed."""
        leg.cancelled = not unanswered
        leg.confirming = False
        try:
            await self.ari.hangup(leg.channel_id)
            self.ended.add(leg.channel_id)
        except AriError as exc:
            # Best effort: what called this (the caller left, an agent answered) must go on;
            # cleanup hangs up again, and reconciliation after a reconnect catches the rest.
            log.warning(
                "call=%s could not hang up leg %s: %s", self.channel_id, leg.channel_id, exc
            )

    async def _cancel_legs(self) -> None:
        for leg in list(self.legs.values()):
            await self._drop_leg(leg)

    def _forget_leg(self, leg: Leg) -> None:
        self.legs.pop(leg.channel_id, None)
        self.ctx.registry.release(leg.channel_id)

    async def _release(self, agent_id: int, *, unanswered: bool, wake: bool = True) -> None:
        """Free a reserved agent. `wake=False` when the agent could not be rung at all (busy
        device, failed originate): waking the waiting callers would offer them the same
        agent at once, round and round; the distribution poll retries instead."""
        assert self.call_id is not None and self.hotline is not None
        call_id, limit = self.call_id, self.hotline.no_answer_limit

        async def store(session: AsyncSession) -> bool:
            paused = await routing.release_agent(
                session, agent_id=agent_id, call_id=call_id, unanswered=unanswered, limit=limit
            )
            if unanswered:
                await calls.log_event(session, call_id, "RINGNOANSWER", agent_id=agent_id)
            return paused

        paused = await self.persist("agent release", store)
        if paused:
            log.warning(
                "call=%s agent %s set not available after %d unanswered calls",
                self.channel_id,
                agent_id,
                self.hotline.no_answer_limit,
            )
            await escalation.check_staffing(self.ctx, "auto_pause")  # below min_agents now?
        if wake:
            self.ctx.agents_changed.notify()

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
        elif self.state is InboundState.FORWARDING and leg.agent_id is None:
            await self._close(self.reason)
            await self._announce_and_hang_up("sound:all-circuits-busy-now", "forward failed")

    async def _caller_left(self) -> None:
        if self.caller_gone:
            return
        self.caller_gone = True
        if self.state in (InboundState.QUEUED, InboundState.RINGING):
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
        elif self.state in (InboundState.QUEUED, InboundState.RINGING) and not self.caller_gone:
            await self._cancel_legs()
            await self._stop_media()
            await self._close(Outcome.TIMEOUT)
            await self._to_dialplan_fallback()
        else:
            self.finish()

    async def _call_over(self, cause: str) -> None:
        if self.state is InboundState.DONE:
            return
        leg = self.connected
        now = _now()
        assert self.call_id is not None and self.hotline is not None
        call_id, wrapup_s = self.call_id, self.hotline.wrapup_s
        outcome = Outcome.FORWARDED if self.state is InboundState.FORWARDED else Outcome.ANSWERED
        self.outcome_stored = True
        self._transition(InboundState.DONE, cause)
        self.finish()
        # Both parties are released before anything is stored: a slow or absent database
        # must never keep a phone line open.
        await self._hang_up_all()

        async def store(session: AsyncSession) -> None:
            await routing.finish_call(
                session,
                call_id=call_id,
                agent_id=leg.agent_id if leg is not None else None,
                wrapup_s=wrapup_s,
                outcome=outcome,
                now=now,
            )

        await self.persist("call end", store, one_statement=True)
        self._count(outcome)

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

    async def _forward(self, number: str, cause: str) -> None:
        assert self.call_id is not None
        self._transition(InboundState.FORWARDING, cause)
        leg = Leg(f"{self.call_id}-fwd", None, number, TargetKind.EXTERNAL)
        self.legs[leg.channel_id] = leg
        self.ctx.registry.claim(leg.channel_id, self)
        await self._moh(True)
        try:
            await self.ari.originate(
                self.ctx.settings.dial_external(number),
                app=self.ctx.app_name,
                app_args=["forwardleg", str(self.call_id)],
                caller_id=self.caller_number or None,
                timeout=60,
                channel_id=leg.channel_id,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning("call=%s forward failed: %s", self.channel_id, exc)
            self._forget_leg(leg)
            await self._close(self.reason)
            await self._announce_and_hang_up("sound:all-circuits-busy-now", "forward failed")

    async def _announce_and_hang_up(self, sound: str, cause: str) -> None:
        self._transition(InboundState.ANNOUNCING, cause)
        await self._play([sound])

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        for leg in self.legs.values():
            if leg.prompt is not None and await leg.prompt.finished(event.playback.id) is not None:
                return  # the next item of a leg's prompt started, or the prompt is over
        if event.playback.id != self.playback_id:
            self.ignore("PlaybackFinished", "a playback stopped or not ours")
            return
        self.playback_id = None
        if self.state is InboundState.ANNOUNCING:
            self._transition(InboundState.DONE, "announcement played")
            self.finish()
        elif self.state is InboundState.VM_GREETING:
            await self._start_recording()
        elif self.state in (InboundState.QUEUED, InboundState.RINGING) and not self.caller_gone:
            await self._moh(True)

    async def _start_recording(self) -> None:
        assert self.hotline is not None and self.call_id is not None
        self.recording = f"hotline-vm-{self.call_id}"
        try:
            await self.ari.record(
                self.channel_id,
                self.recording,
                format="wav",
                max_duration_seconds=self.hotline.voicemail_max_s,
                max_silence_seconds=10,
                beep=True,
                terminate_on="#",
                if_exists="overwrite",
            )
        except AriError as exc:
            log.warning("call=%s recording failed: %s", self.channel_id, exc)
            await self._close(self.reason)
            self.finish()
            return
        self._transition(InboundState.RECORDING, "greeting played")

    async def on_RecordingFinished(self, event: RecordingFinished) -> None:
        await self._recording_done(event.recording.duration, event.recording.talking_duration)

    async def on_RecordingFailed(self, event: RecordingFailed) -> None:
        await self._recording_done(0, 0)

    async def on_timer_recording_lost(self, _: Timer) -> None:
        await self._recording_done(None, None)

    async def _recording_done(self, duration: int | None, talking: int | None) -> None:
        if self.state is not InboundState.RECORDING or self.recording is None:
            return
        assert self.hotline is not None and self.call_id is not None
        self.cancel_timer("recording_lost")
        if duration is None:  # no event: trust what Asterisk stored
            try:
                await self.ari.get_stored_recording(self.recording)
                duration = 1
            except AriError:
                duration = 0
        # Nothing is kept when the caller hung up before saying anything.
        spoke = (talking if talking is not None else duration or 0) > 0 and (duration or 0) > 0
        if spoke:
            now = _now()
            async with self.ctx.sessions() as session, session.begin():
                await voicemail.store_voicemail(
                    session,
                    self.hotline,
                    call_id=self.call_id,
                    caller_number=self.caller_number or None,
                    duration_s=duration or 0,
                    recording_name=self.recording,
                    now=now,
                    node=self.ctx.node,
                    link_url=self.ctx.settings.vm_link_url,
                )
                await calls.close_call(session, self.call_id, Outcome.VOICEMAIL, now=now)
            self.outcome_stored = True
            self._count(Outcome.VOICEMAIL)
        else:
            await self.ari.delete_stored_recording(self.recording, missing_ok=True)
            await self._close(self.reason)
        if self.caller_gone:
            self._transition(InboundState.DONE, "recording finished")
            self.finish()
        else:
            await self._announce_and_hang_up(GOODBYE_SOUND, "recording finished")

    # -- helpers --------------------------------------------------------------------------
    async def _to_dialplan_fallback(self) -> None:
        self.caller_gone = True  # no longer ours: cleanup must not hang it up
        try:
            await self.ari.set_variable(self.channel_id, "HOTLINE_FALLBACK", "1")
            await self.ari.continue_in_dialplan(self.channel_id)
        except AriError as exc:
            log.error("call=%s could not hand back to the dialplan: %s", self.channel_id, exc)
            self.caller_gone = False
        self._transition(InboundState.DONE, "fallback")
        self.finish()

    async def _close(self, outcome: Outcome) -> None:
        if self.call_id is None or self.outcome_stored:
            return
        self.outcome_stored = True
        call_id, now = self.call_id, _now()

        async def store(session: AsyncSession) -> None:
            await calls.close_call(session, call_id, outcome, now=now)

        await self.persist("call outcome", store)
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        """Metrics: one outcome per call; the wait only for callers who were queued."""
        if self.outcome_counted or self.ctx.metrics is None:
            return
        self.outcome_counted = True
        number = self.hotline.number if self.hotline else "unknown"
        wait = None
        if self.queued_at is not None:
            wait = (self.answered_at or time.monotonic()) - self.queued_at
        self.ctx.metrics.call_ended(number, outcome.value, wait)

    async def _play(self, media: list[str]) -> None:
        if self.moh_on:
            await self._moh(False)
        self.playback_id = f"{self.channel_id}-p{uuid.uuid4().hex[:8]}"
        try:
            await self.play(self.channel_id, media, self.language, playback_id=self.playback_id)
        except AriError as exc:
            log.warning("call=%s playback failed: %s", self.channel_id, exc)
            self.playback_id = None

    async def _agent_language(self, leg: Leg) -> str:
        """What the agent on `leg` hears (asked once the leg answered: off the hot path)."""
        if leg.agent_id is None:
            return self.language
        try:
            async with self.ctx.sessions() as session:
                return self.language_of(await calls.agent_language(session, leg.agent_id))
        except (SQLAlchemyError, OSError) as exc:  # the agent still hears the announcement
            log.warning("call=%s agent language unknown: %s", self.channel_id, exc)
            return self.language

    async def _moh(self, on: bool) -> None:
        try:
            if on:
                assert self.hotline is not None
                await self.ari.start_moh(self.channel_id, self.hotline.moh_class)
            else:
                await self.ari.stop_moh(self.channel_id)
            self.moh_on = on
        except AriError as exc:
            log.debug("call=%s moh %s failed: %s", self.channel_id, on, exc)

    async def _stop_media(self) -> None:
        if self.playback_id is not None:
            await self.ari.stop_playback(self.playback_id)
            self.playback_id = None
        if self.moh_on:
            await self._moh(False)

    async def _hang_up_all(self) -> None:
        """Hang up every channel of this call and destroy its bridge (404s are races).
        What was already ended is not asked again (cleanup follows `_call_over`)."""
        for leg in list(self.legs.values()):
            await self._end_once(leg.channel_id, self.ari.hangup)
        if self.bridge_id is not None:
            await self._end_once(self.bridge_id, self.ari.destroy_bridge)
        if not self.caller_gone:
            await self._end_once(self.channel_id, self.ari.hangup)

    async def _end_once(self, resource_id: str, request: Callable[[str], Awaitable[Any]]) -> None:
        """A failed request is tried again by cleanup, then by reconciliation."""
        if resource_id not in self.ended and await self._safe(request(resource_id)):
            self.ended.add(resource_id)

    async def cleanup(self) -> None:
        self._leave_waiting()
        await self._hang_up_all()
        for leg in list(self.legs.values()):
            if leg.agent_id is not None and self.call_id is not None and leg is not self.connected:
                await self._safe(self._release(leg.agent_id, unanswered=False))
        if self.call_id is not None and self.state is not InboundState.DONE:
            await self._safe(self._close(Outcome.ABANDONED))
        self.ctx.agents_changed.notify()

    async def _safe(self, awaitable: Any) -> bool:
        """Run one cleanup step; False (logged) when it failed."""
        try:
            await awaitable
            return True
        except AriError as exc:  # Asterisk unreachable: reconciliation cleans up after it
            log.warning("call=%s cleanup step failed: %s", self.channel_id, exc)
        except Exception:
            log.exception("call=%s cleanup step failed", self.channel_id)
        return False
