"""The offer phase of an inbound call: agents' legs are originated (rung), answer, are asked
to press 1 (external targets), or are dropped and their agents released."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDtmfReceived,
    StasisStart,
)
from ari_app.domain.enums import TargetKind
from ari_app.domain.presence import device_state_busy
from ari_app.flows import escalation
from ari_app.flows.base import Timer
from ari_app.flows.inbound.call import (
    InboundCall,
    InboundState,
    Leg,
)
from ari_app.flows.playlist import Playlist
from ari_app.services import calls, routing
from ari_app.services.routing import Offer

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 10  # prompt (about 3 s) + time to press 1


class OfferPhase(InboundCall):
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
            routing.agent_leg(self.call_id, offer.agent_id, self.legs_made),
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
                variables=self._leg_variables(),
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
