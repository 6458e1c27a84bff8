"""Callback attempts (issue 15): a caller who pressed 1 while waiting left a virtual queue
entry (services/callbacks.py); when its turn comes an agent is reserved and rung first,
hears "callback for <hotline>" (on an external leg also "if correct press 1"), and only
then is the citizen dialled over the trunk (HOTLINE_EXTERNAL_DIAL), showing the hotline's
number; the citizen's answer is bridged to the agent.

`CallbackDialler.run()` (one task per process, app.py) starts the attempts whose turn it is;
each runs as a `CallbackFlow`, an outbound flow like the escalation's: it has no channel
of its own and claims the legs it originates. One attempt per callback at a time is
enforced in Postgres (the claim), whichever process dials.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from ari_app.db.session import Db
from ari_app.domain.callbacks import CallbackState
from ari_app.domain.enums import Outcome, TargetKind
from ari_app.flows.base import START, CallFlow, FlowContext, Stop, Table, Timer, but, on
from ari_app.flows.playlist import Playlist
from ari_app.services import callbacks, calls, routing
from ari_app.services.callbacks import Attempt

log = logging.getLogger(__name__)

LEG_APP_ARG = "callbackleg"  # Stasis args[0] of both legs (dispatch.ORIGINATED_LEGS)
CITIZEN_RING_S = 30  # how long the citizen's phone rings
CONFIRM_S = 10  # an external agent leg: prompt (about 3 s) + time to press 1
POLL_S = 1.0  # the dialler looks for due callbacks this often (and when agents change)
CAUSE_BUSY, CAUSE_REJECTED = 17, 21


def _now() -> datetime:
    return datetime.now(UTC)


class AttemptState(enum.Enum):
    AGENT_RINGING = "agent_ringing"
    AGENT_PROMPT = "agent_prompt"  # "callback for <hotline>" (and press 1) to the agent
    CITIZEN_RINGING = "citizen_ringing"
    BRIDGED = "bridged"
    NOT_REACHED = "not_reached"  # the agent hears that the citizen did not answer
    DONE = "done"


# What dialling the citizen can lead to: ringing, or (no bridge, no originate) the attempt
# given back or not reached.
_DIAL = (AttemptState.CITIZEN_RINGING, AttemptState.NOT_REACHED, AttemptState.DONE)
TABLE = Table(
    AttemptState,
    [
        # The agent could not be rung: the attempt is given back.
        on(AttemptState.AGENT_RINGING, START, to=AttemptState.DONE),
        on(AttemptState.AGENT_RINGING, "StasisStart", to=(AttemptState.AGENT_PROMPT, *_DIAL)),
        on(
            AttemptState.CITIZEN_RINGING,
            "StasisStart",
            to=(AttemptState.BRIDGED, AttemptState.NOT_REACHED, AttemptState.DONE),
        ),
        # A leg answering when it is no longer wanted: hung up.
        on(
            (AttemptState.AGENT_PROMPT, AttemptState.BRIDGED, AttemptState.NOT_REACHED),
            "StasisStart",
        ),
        on(AttemptState.AGENT_PROMPT, ("PlaybackFinished", "ChannelDtmfReceived"), to=_DIAL),
        on(AttemptState.AGENT_PROMPT, "timer:confirm", to=AttemptState.DONE),
        on(
            (AttemptState.CITIZEN_RINGING, AttemptState.BRIDGED, AttemptState.NOT_REACHED),
            "PlaybackFinished",
        ),
        on(
            (AttemptState.AGENT_RINGING, AttemptState.AGENT_PROMPT, AttemptState.CITIZEN_RINGING),
            "ChannelDestroyed",
            to=(AttemptState.NOT_REACHED, AttemptState.DONE),
        ),
        on(
            (AttemptState.BRIDGED, AttemptState.NOT_REACHED),
            "ChannelDestroyed",
            to=AttemptState.DONE,
        ),
        on(AttemptState.BRIDGED, "StasisEnd", to=AttemptState.DONE),
        on(but(AttemptState, AttemptState.DONE), "Stop", to=AttemptState.DONE),
    ],
)


class CallbackFlow(CallFlow[AttemptState]):
    name = "callback"
    initial = AttemptState.AGENT_RINGING
    table = TABLE

    def __init__(self, ctx: FlowContext, attempt: Attempt) -> None:
        # Legs are named after the original call ("<call id>-cb<attempt>-..."), so that
        # reconciliation knows them after a restart.
        super().__init__(ctx, f"{attempt.call_id}-cb{attempt.attempt}", ())
        self.attempt = attempt
        self.hotline = attempt.hotline
        self.agent_leg = f"{self.channel_id}-a{attempt.offer.agent_id}"
        self.citizen_leg = f"{self.channel_id}-c"
        self.bridge_id: str | None = None
        self.live: set[str] = set()  # legs originated and not destroyed yet
        self.prompt: Playlist | None = None
        self.agent_lang = ctx.settings.language  # the agent's own, once the leg answered
        self.confirming = False
        self.ringback: str | None = None  # playback id of the ring tone the agent hears
        self.resolved = False  # the attempt's result is stored (given back/failed/connected)
        self.agent_released = False
        self.started = time.monotonic()

    # -- agent first ----------------------------------------------------------------------
    async def start(self) -> None:
        offer, hotline = self.attempt.offer, self.hotline
        endpoint = (
            offer.target
            if offer.target_kind is TargetKind.DEVICE
            else self.ctx.settings.dial_external(offer.target)
        )
        shown = hotline.number if hotline.caller_id_to_agent == "hotline" else self.attempt.number
        self.ctx.registry.claim(self.agent_leg, self)
        self.live.add(self.agent_leg)
        log.info(
            "call=%s flow=%s callback %d attempt %d: ringing agent %d",
            self.channel_id,
            self.name,
            self.attempt.callback_id,
            self.attempt.attempt,
            offer.agent_id,
        )
        try:
            await self.ari.originate(
                endpoint,
                app=self.ctx.app_name,
                app_args=[LEG_APP_ARG, str(self.attempt.call_id)],
                caller_id=f'"{hotline.name}" <{shown}>',
                timeout=hotline.ring_timeout_s,
                channel_id=self.agent_leg,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning("call=%s originate to agent failed: %s", self.channel_id, exc)
            self.live.discard(self.agent_leg)
            await self._give_back("agent not rung", unanswered=False)

    async def on_StasisStart(self, event: StasisStart) -> None:
        leg = event.channel.id
        if leg == self.agent_leg and self.state is AttemptState.AGENT_RINGING:
            await self._agent_answered()
        elif leg == self.citizen_leg and self.state is AttemptState.CITIZEN_RINGING:
            await self._citizen_answered()
        else:
            await self._hang_up(leg)

    async def _agent_answered(self) -> None:
        self._transition(AttemptState.AGENT_PROMPT, "agent answered")
        async with self.ctx.sessions() as session, session.begin():
            await routing.agent_connected(
                session, agent_id=self.attempt.offer.agent_id, call_id=self.attempt.call_id
            )
            self.agent_lang = self.language_of(
                await calls.agent_language(session, self.attempt.offer.agent_id)
            )
        media = ["sound:callback-for", f"digits:{self.hotline.number}"]
        # A mobile voicemail must never take a call: external legs confirm with 1.
        self.confirming = (
            self.attempt.offer.target_kind is TargetKind.EXTERNAL and self.hotline.accept_confirm
        )
        if self.confirming:
            media += ["sound:if-correct-press", "digits:1"]
            self.start_timer("confirm", CONFIRM_S)
        self.prompt = Playlist(self.ari, self.agent_leg, self.agent_lang)
        if not await self.prompt.play(media) and not self.confirming:
            await self._dial_citizen("prompt failed")

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if self.prompt is None or not await self.prompt.finished(event.playback.id):
            return
        if self.state is AttemptState.AGENT_PROMPT and not self.confirming:
            await self._dial_citizen("prompt played")
        elif self.state is AttemptState.NOT_REACHED:
            await self._hang_up(self.agent_leg)

    async def on_ChannelDtmfReceived(self, event: ChannelDtmfReceived) -> None:
        if event.channel.id != self.agent_leg or not self.confirming or event.digit != "1":
            return
        self.confirming = False
        self.cancel_timer("confirm")
        if self.prompt is not None:
            await self.prompt.stop()
        await self._dial_citizen("agent confirmed")

    async def on_timer_confirm(self, _: Timer) -> None:
        if self.state is AttemptState.AGENT_PROMPT and self.confirming:
            log.info("call=%s agent did not confirm the callback", self.channel_id)
            await self._give_back("agent did not confirm", unanswered=True)

    # -- then the citizen -----------------------------------------------------------------
    async def _dial_citizen(self, cause: str) -> None:
        self._transition(AttemptState.CITIZEN_RINGING, cause)
        hotline = self.hotline
        self.bridge_id = f"{self.channel_id}-bridge"
        try:
            await self.ari.create_bridge("mixing", bridge_id=self.bridge_id, name="hotline")
            await self.ari.add_channel(self.bridge_id, [self.agent_leg])
        except AriError as exc:
            log.warning("call=%s bridge for the callback failed: %s", self.channel_id, exc)
            await self._give_back("no bridge", unanswered=False)
            return
        self.ringback = f"{self.agent_leg}-ring"
        try:  # the agent hears the citizen's phone ring
            await self.play(self.agent_leg, "tone:ring", self.agent_lang, playback_id=self.ringback)
        except AriError as exc:
            log.debug("call=%s no ring tone for the agent: %s", self.channel_id, exc)
            self.ringback = None
        self.ctx.registry.claim(self.citizen_leg, self)
        self.live.add(self.citizen_leg)
        log.info("call=%s dialling the citizen back", self.channel_id)
        try:
            # Only the number the original call came from; the citizen sees the hotline.
            await self.ari.originate(
                self.ctx.settings.dial_external(self.attempt.number),
                app=self.ctx.app_name,
                app_args=[LEG_APP_ARG, str(self.attempt.call_id)],
                caller_id=f'"{hotline.name}" <{hotline.number}>',
                timeout=CITIZEN_RING_S,
                channel_id=self.citizen_leg,
                variables=self.ctx.settings.leg_variables(),
            )
        except AriError as exc:
            log.warning("call=%s originate to the citizen failed: %s", self.channel_id, exc)
            self.live.discard(self.citizen_leg)
            await self._not_reached("originate failed")

    async def _citizen_answered(self) -> None:
        assert self.bridge_id is not None
        if self.ringback is not None:
            await self._quietly(self.ari.stop_playback(self.ringback))
            self.ringback = None
        try:
            await self.ari.add_channel(self.bridge_id, [self.citizen_leg])
        except AriError as exc:
            log.warning("call=%s citizen not bridged: %s", self.channel_id, exc)
            await self._not_reached("not bridged")
            return
        attempt, node, bridge_id = self.attempt, self.ctx.node, self.bridge_id
        leg, now = self.citizen_leg, _now()

        async def store(session: AsyncSession) -> None:
            await callbacks.connected(
                session,
                attempt,
                channel_id=leg,
                bridge_id=bridge_id,
                node=node,
                target_kind=attempt.offer.target_kind,
                now=now,
            )

        await self.persist("callback connected", store)
        self.resolved = True
        self._transition(AttemptState.BRIDGED, "citizen answered")

    async def _not_reached(self, cause: str) -> None:
        """The citizen did not answer (or could not be dialled): a failed attempt, counted;
        the agent hears so and is released."""
        attempt, now = self.attempt, _now()

        async def store(session: AsyncSession) -> CallbackState:
            await self._release_agent(session, unanswered=False)
            return await callbacks.finish_attempt(
                session, attempt.callback_id, connected=False, now=now
            )

        state = await self.persist("callback attempt", store)
        self.resolved = self.agent_released = True
        log.info(
            "call=%s callback %d not reached (%s): %s",
            self.channel_id,
            attempt.callback_id,
            cause,
            state.value,
        )
        self.ctx.agents_changed.notify()
        if self.agent_leg not in self.live:
            self._transition(AttemptState.DONE, cause)
            self.finish()
            return
        self._transition(AttemptState.NOT_REACHED, cause)
        if self.ringback is not None:
            await self._quietly(self.ari.stop_playback(self.ringback))
            self.ringback = None
        self.prompt = Playlist(self.ari, self.agent_leg, self.agent_lang)
        if not await self.prompt.play(["sound:number-not-answering"]):
            await self._hang_up(self.agent_leg)

    # -- ends -----------------------------------------------------------------------------
    async def on_StasisEnd(self, event: StasisEnd) -> None:
        if self.state is AttemptState.BRIDGED and event.channel.id in (
            self.agent_leg,
            self.citizen_leg,
        ):
            await self._call_over(f"{event.channel.id} hung up")

    async def on_ChannelDestroyed(self, event: ChannelDestroyed) -> None:
        leg = event.channel.id
        if leg not in self.live:
            return
        self.live.discard(leg)
        self.ctx.registry.release(leg)
        if self.state is AttemptState.BRIDGED:
            await self._call_over(f"{leg} hung up")
        elif leg == self.agent_leg and self.state in (
            AttemptState.AGENT_RINGING,
            AttemptState.AGENT_PROMPT,
        ):
            # Not answered, or hung up on the prompt: counts towards the agent's no-answer
            # limit (a busy or rejecting phone does not).
            unanswered = event.cause not in (CAUSE_BUSY, CAUSE_REJECTED)
            await self._give_back(f"agent leg gone (cause {event.cause})", unanswered=unanswered)
        elif leg == self.agent_leg and self.state is AttemptState.CITIZEN_RINGING:
            # The agent hung up while the citizen's phone rang: not the citizen's attempt,
            # but the citizen was rung: the next try waits the callback interval.
            await self._give_back(
                "agent hung up", unanswered=True, delay_s=self.hotline.callback_interval_s
            )
        elif leg == self.citizen_leg and self.state is AttemptState.CITIZEN_RINGING:
            await self._not_reached(f"cause {event.cause}")
        elif self.state is AttemptState.NOT_REACHED and not self.live:
            self._transition(AttemptState.DONE, "agent released")
            self.finish()

    async def _call_over(self, cause: str) -> None:
        if self.state is AttemptState.DONE:
            return
        self._transition(AttemptState.DONE, cause)
        self.finish()
        await self._hang_up_all()
        attempt, wrapup_s, now = self.attempt, self.hotline.wrapup_s, _now()

        async def store(db: Db) -> None:
            await routing.finish_call(
                db,
                routing.Ended(
                    attempt.call_id, attempt.offer.agent_id, wrapup_s, Outcome.ANSWERED, now
                ),
            )

        await self.persist_statement("callback end", store)
        self.agent_released = True
        self.ctx.agents_changed.notify()

    async def _give_back(self, cause: str, *, unanswered: bool, delay_s: int | None = None) -> None:
        """The citizen was not reached for want of an agent: the attempt does not count,
        the callback keeps its place (after the hotline's retry delay, or `delay_s`)."""
        attempt, now = self.attempt, _now()
        delay = self.hotline.retry_delay_s if delay_s is None else delay_s

        async def store(session: AsyncSession) -> None:
            await self._release_agent(session, unanswered=unanswered)
            await callbacks.give_back(session, attempt.callback_id, now=now, delay_s=delay)

        if not self.resolved:
            await self.persist("callback given back", store)
            self.resolved = self.agent_released = True
            self.ctx.agents_changed.notify()
        self._transition(AttemptState.DONE, cause)
        self.finish()

    async def _release_agent(self, session: AsyncSession, *, unanswered: bool) -> None:
        """The attempt's agent is free again; `unanswered` counts towards auto-pause."""
        agent_id, call_id = self.attempt.offer.agent_id, self.attempt.call_id
        await routing.release_agent(
            session,
            agent_id=agent_id,
            call_id=call_id,
            unanswered=unanswered,
            limit=self.hotline.no_answer_limit,
        )
        if unanswered:
            await calls.log_event(session, call_id, "RINGNOANSWER", agent_id=agent_id)

    async def on_Stop(self, event: Stop) -> None:
        if self.state is AttemptState.BRIDGED:
            await self._call_over(f"stop: {event.reason}")
        else:
            self.finish()  # cleanup gives the attempt back

    async def cleanup(self) -> None:
        await self._hang_up_all()
        if not self.resolved:
            with contextlib.suppress(Exception):
                await self._give_back("flow ended", unanswered=False)
        elif not self.agent_released and self.state is not AttemptState.BRIDGED:
            log.warning("call=%s agent of the callback left reserved", self.channel_id)
        self.ctx.registry.release_flow(self)

    async def _hang_up_all(self) -> None:
        for leg in list(self.live):
            await self._hang_up(leg)
        if self.bridge_id is not None:
            await self._quietly(self.ari.destroy_bridge(self.bridge_id))
            self.bridge_id = None

    async def _hang_up(self, channel_id: str) -> None:
        await self._quietly(self.ari.hangup(channel_id))

    async def _quietly(self, request: Awaitable[Any]) -> None:
        try:
            await request
        except AriError as exc:  # gone already: an expected race
            log.debug("call=%s %s", self.channel_id, exc)


# -- the dialler: one per process ----------------------------------------------------------
def running(ctx: FlowContext) -> frozenset[int]:
    """Callbacks whose attempt a flow of this process runs (reconcile keeps them)."""
    return ctx.callbacks.keys()


def running_calls(ctx: FlowContext) -> frozenset[uuid.UUID]:
    """The original calls of those attempts: their agents stay reserved."""
    return frozenset(
        flow.attempt.call_id for flow in ctx.callbacks.flows() if isinstance(flow, CallbackFlow)
    )


class CallbackDialler:
    """Starts the callback attempts whose turn it is (services/callbacks.take_due), when
    agents may have become free and every POLL_S (agents freed on other nodes)."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._wake = asyncio.Event()
        self.none_pending = False  # as of the last look (unknown at first: look)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self.ctx.agents_changed.subscribe(self.wake)
        loop = asyncio.get_running_loop()
        try:
            poll_at = loop.time() + POLL_S
            while True:
                # The poll's deadline is not moved by wake-ups: under load agents change
                # more often than POLL_S, and a callback requested in another process
                # would otherwise never be looked for. (asyncio.timeout, not wait_for:
                # Python 3.11's wait_for can swallow a cancellation at shutdown.)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(poll_at):
                        await self._wake.wait()
                self._wake.clear()
                if loop.time() < poll_at and self.none_pending:
                    # An agent change, and no callback was pending at the last look: the
                    # poll looks again at its time (a routed call's agent changes cost no
                    # statement then).
                    continue
                poll_at = loop.time() + POLL_S
                try:
                    await self.dial_due()
                except Exception as exc:
                    log.warning("callback dialler: %s", exc)
        finally:
            self.ctx.agents_changed.unsubscribe(self.wake)
            await self.stop()

    async def dial_due(self) -> int:
        now = _now()
        # A single statement outside BEGIN/COMMIT first: every agent change wakes the
        # dialler, and a transaction for nothing cost each routed call about 3 round trips
        # per process.
        async with self.ctx.one_statement()() as session:
            waiting, due = await callbacks.pending(session, now)
        self.none_pending = waiting == 0
        if not due:
            return 0
        async with self.ctx.sessions() as session, session.begin():
            attempts = await callbacks.take_due(session, node=self.ctx.node, now=now)
        for attempt in attempts:
            self.ctx.callbacks.start(attempt.callback_id, CallbackFlow(self.ctx, attempt))
        if attempts:
            # The waiting callers' chain of wake-ups (signals.WaitQueue) stopped at the
            # first one behind a callback: the agents left free are theirs to try for now.
            self.ctx.waiting.notify()
        return len(attempts)

    async def stop(self, timeout: float = 5.0) -> None:
        """Shutdown: attempts not yet bridged are given back, conversations end."""
        await self.ctx.callbacks.stop(timeout)
