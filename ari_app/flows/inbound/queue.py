"""The queue phase of an inbound call: waiting with music on hold and position
announcements, distribution to agents (reserve, then ring: offer.py), the callback offer,
and the hotline's action when the wait is too long."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ari_app.db.models import Hotline
from ari_app.domain.actions import parse_action
from ari_app.domain.callbacks import offerable
from ari_app.domain.enums import Outcome
from ari_app.domain.errors import HotlineError
from ari_app.domain.waits import media as spoken_wait
from ari_app.flows.base import Timer
from ari_app.flows.inbound.call import (
    InboundCall,
    InboundState,
    _now,
)
from ari_app.services import callbacks, routing
from ari_app.services.routing import Offer
from ari_app.services.waits import estimate as estimated_wait

log = logging.getLogger(__name__)

# Waiting callers try again at least this often (HotlineApp.sweep wakes them through the
# WaitQueue, one chain per hotline, not one poll per caller): covers agents freed that no
# notification reached this process for (a wrap-up another node ended, an unpause by the
# CLI). Also the retry after the database was unavailable.
POLL_S = 2.0
RING_BEFORE_MUSIC_S = 1.0  # an agent rung at once: music on hold only after this
CALLBACK_OFFER = ["sound:callback-offer"]  # "to be called back, press 1; you keep your place"
CALLBACK_CONFIRMED = ["sound:callback-confirmed"]  # "we call you back in your turn; goodbye"
CALLBACK_OFFER_LATER_S = 2.0  # the offer waits for an announcement or a ringing agent


class QueuePhase(InboundCall):
    async def _enter_queue(
        self,
        hotline: Hotline,
        cause: str,
        *,
        waited_s: float,
        answer: bool = False,
        first: list[Offer] | None = None,
    ) -> None:
        """`first`: agents already reserved for the call with its insert (a new call; none:
        it waits for a wake-up); None: a reservation is tried now."""
        self._transition(InboundState.QUEUED, cause)
        self.queued_at = time.monotonic() - waited_s
        self._wait(hotline, waited_s)
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

    def _wait(self, hotline: Hotline, waited_s: float) -> None:
        """In the waiting queue, with the timers of the wait (`waited_s` already waited)."""
        self.ctx.waiting.add(hotline.id, self.queue_seq, self._wake, self._wants_agent)
        self.start_timer("max_wait", max(1.0, hotline.max_wait_s - waited_s))
        if hotline.announce_frequency_s > 0:
            self.start_timer("announce", hotline.announce_frequency_s)
        if (
            hotline.callback_after_s > 0
            and offerable(self.caller_number)
            and not self.callback_offered
        ):
            # Only to the number the call came from: withheld numbers get no offer.
            self.start_timer("callback_offer", max(0.1, hotline.callback_after_s - waited_s))

    async def _back_to_queue(self, cause: str) -> None:
        """The agent hung up in CONNECTING, before the bridge: the caller waits again in
        its place, as after a ring nobody answered (the next ring after the retry delay)."""
        assert self.hotline is not None
        self.connecting, self.stopped_playback = None, None
        self.cancel_timer("bridge")
        self._transition(InboundState.QUEUED, cause)
        now = time.monotonic()
        self._wait(self.hotline, now - (self.queued_at or now))
        self.retry_at = now + self.hotline.retry_delay_s
        self.start_timer("distribute", self.hotline.retry_delay_s)
        await self._moh(True)

    async def on_timer_hold_music(self, _: Timer) -> None:
        if (
            self.state in (InboundState.QUEUED, InboundState.RINGING)
            and not self.moh_on
            and not self.prompt.playing
        ):
            await self._moh(True)

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
        """Reserve and ring agents for the waiting caller (`first`: already reserved, None:
        reserve now). The reservation records the first ring and the RING events
        (services/routing.py)."""
        assert self.call_id is not None and self.hotline is not None
        hotline = self.hotline
        while True:
            tried = len(self.tried)
            if first is not None:
                offers, first = first, None
            else:
                # One statement (`hotline_reserve` chooses and reserves under the
                # hotline's lock): no BEGIN and COMMIT round trips per attempt.
                async with self.ctx.statement() as connection:
                    offers = await routing.reserve_agents(
                        connection,
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
        # Else the caller waits for the next wake-up: an agent freed here or announced by
        # Postgres, the caller ahead passing one on, or the process's poll (POLL_S). No
        # timer of its own: with many callers waiting, one poll a hotline, not one each.

    async def on_timer_announce(self, _: Timer) -> None:
        if self.state not in (InboundState.QUEUED, InboundState.RINGING) or self.call_id is None:
            return
        assert self.hotline is not None
        # Not over an announcement still playing: it would be cut off for a new one.
        if not self.prompt.playing:
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
        if self.state is InboundState.RINGING or self.prompt.playing:
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
