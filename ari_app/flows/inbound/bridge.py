"""The bridge phase of an inbound call: the caller with the agent who answered (or the
forward's number) in one bridge, and the end of that conversation."""

from __future__ import annotations

import logging
import time

from ari_app.ari.errors import AriError
from ari_app.db.session import Db
from ari_app.domain.enums import Outcome, TargetKind
from ari_app.flows.base import Timer
from ari_app.flows.inbound.call import (
    InboundCall,
    InboundState,
    Leg,
    _now,
)
from ari_app.services import routing

log = logging.getLogger(__name__)

# A stopped `number:` item ends after its last digit, well within this (about 1 s seen).
BRIDGE_AFTER_STOP_S = 2.0


class BridgePhase(InboundCall):
    async def _connect(self, leg: Leg, state: InboundState, cause: str) -> None:
        assert self.call_id is not None and self.hotline is not None
        for other in list(self.legs.values()):
            if other is not leg:
                await self._drop_leg(other)
        self.cancel_timer("max_wait")
        self.cancel_timer("announce")
        self.cancel_timer("distribute")
        self._leave_waiting()
        playing = self.prompt.current
        await self._stop_media()
        if playing is not None and state is InboundState.BRIDGED:
            # Asterisk adds the caller to a bridge only once its playback has ended, and a
            # stopped number ends after its last digit (up to about a second): the bridge
            # waits for that PlaybackFinished in CONNECTING, not in this handler (hang-ups
            # meanwhile are handled). No PlaybackFinished (lost): the timer bridges anyway.
            self.connecting, self.stopped_playback = leg, playing
            self.start_timer("bridge", BRIDGE_AFTER_STOP_S)
            self._transition(InboundState.CONNECTING, f"{cause}, prompt stopping")
            return
        await self._bridge(leg, state, cause)

    async def _bridge_connecting(self, cause: str) -> None:
        """CONNECTING: the stopped prompt has ended (or the timer gave up on its end)."""
        leg, self.connecting, self.stopped_playback = self.connecting, None, None
        self.cancel_timer("bridge")
        assert leg is not None
        await self._bridge(leg, InboundState.BRIDGED, cause)

    async def on_timer_bridge(self, _: Timer) -> None:
        log.warning(
            "call=%s no end of the stopped prompt %s after %.1f s: bridging anyway",
            self.channel_id,
            self.stopped_playback,
            BRIDGE_AFTER_STOP_S,
        )
        await self._bridge_connecting("prompt end not seen")

    async def _bridge(self, leg: Leg, state: InboundState, cause: str) -> None:
        assert self.call_id is not None and self.hotline is not None
        self.bridge_id = routing.bridge_of(self.call_id)
        # The caller sees the hotline, never the agent's device or number: bridging sends the
        # caller the leg's caller ID as its connected line, and that was set to the hotline
        # in the leg's originate (_leg_variables).
        try:
            await self.ari.create_bridge("mixing", bridge_id=self.bridge_id, name="hotline")
            await self.ari.add_channel(self.bridge_id, [self.channel_id, leg.channel_id])
        except AriError as exc:
            log.warning("call=%s bridging failed: %s", self.channel_id, exc)
            self.finish()  # never connected: cleanup releases the agent
            return
        # Only now: a connection that failed half-way must leave the agent to cleanup.
        self.connected = leg
        self.answered_at = time.monotonic()
        # Written by the process's next start or end, the call's own at the latest
        # (routing.PendingWrites): the bridge in Asterisk is the record until then.
        self.connection = routing.Connected(
            self.call_id, leg.agent_id, self.bridge_id, leg.kind, _now()
        )
        self.ctx.pending.add(self.connection)
        self._transition(state, cause)

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

        # The end writes the call's connection too, unless it was written already (the
        # statement leaves a written one as it is). It waits for the process's next start
        # or end when that loses nothing (routing.PendingWrites.end); else it goes now,
        # with whatever else is pending.
        ended = routing.Ended(
            call_id, leg.agent_id if leg is not None else None, wrapup_s, outcome, now,
            self.connection,
        )  # fmt: skip
        if not self.ctx.pending.end(ended, needed_now=self.ctx.waiting.wants_agent()):

            async def stored(carried: routing.Carried) -> None:
                async def store(db: Db) -> None:
                    await routing.finish_call(db, ended, carried)

                await self.persist_statement("call end", store)

            await self.ctx.pending.carried_by(stored)
        self._count(outcome)

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
                variables=self._leg_variables(),
            )
        except AriError as exc:
            log.warning("call=%s forward failed: %s", self.channel_id, exc)
            self._forget_leg(leg)
            await self._close(self.reason)
            await self._announce_and_hang_up("sound:all-circuits-busy-now", "forward failed")
