"""The inbound call's state, shared by its phases: the states, the agent and forward legs,
the call's record (its one outcome, counted once) and the caller's media (prompts, music
on hold), and the hang-ups of cleanup. The phases (queue.py, offer.py, bridge.py,
voicemail.py) derive from `InboundCall`; flow.py's `InboundFlow` joins them and owns the
call's lifecycle."""

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
from ari_app.db.models import Call, Hotline
from ari_app.domain.actions import Action
from ari_app.domain.enums import Outcome, TargetKind
from ari_app.flows.base import CallFlow, FlowContext, Timer
from ari_app.flows.playlist import Playlist
from ari_app.services import calls
from ari_app.services.routing import Connected, Offer

log = logging.getLogger(__name__)


class InboundState(enum.Enum):
    NEW = "new"
    ANNOUNCING = "announcing"  # an announcement, then hang up
    QUEUED = "queued"
    RINGING = "ringing"
    # An agent answered while the caller's prompt played: its stop was asked, the bridge
    # waits for that playback's PlaybackFinished (a number ends only after its last digit).
    CONNECTING = "connecting"
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


class InboundCall(CallFlow[InboundState]):
    """What every phase of the call knows and does (see the module's docstring)."""

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
        # Its record for the database, made when this flow bridged it (PendingWrites).
        self.connection: Connected | None = None
        # CONNECTING: the leg to bridge, and the stopped playback whose end it waits for.
        self.connecting: Leg | None = None
        self.stopped_playback: str | None = None
        self.reason = Outcome.NO_AGENTS  # why an action runs: closed/no_agents/timeout
        # What the caller hears, one ARI playback per item (flows/playlist.py): an agent may
        # answer at any moment, and Asterisk 16 ignores the stop of a media-list playback
        # while a `number:` or `digits:` item speaks (the list plays on and the bridge
        # request waits behind it on the channel's control queue, up to the ARI timeout).
        # A stop ends the item playing (a number finishes itself) and nothing follows.
        self.prompt = Playlist(ctx.ari, channel_id, ctx.settings.language)
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

    def _wants_agent(self) -> bool:
        """Waiting for an agent now: queued (not ringing one, nor being connected)."""
        return self.state is InboundState.QUEUED

    def _leave_waiting(self) -> None:
        if self.hotline is not None:
            self.ctx.waiting.remove(self.hotline.id, self.queue_seq)

    async def _announce_and_hang_up(self, sound: str, cause: str) -> None:
        self._transition(InboundState.ANNOUNCING, cause)
        await self._play([sound])

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
        """Play `media` to the caller item by item (a failure is logged by the Playlist)."""
        if self.moh_on:
            await self._moh(False)
        self.prompt.lang = self.language  # the hotline's, known once the call started
        await self.prompt.play(media)

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
        """No request when nothing plays (an agent answering a caller who hears nothing)."""
        await self.prompt.stop()
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

    def _hotline_id_shown(self) -> str:
        """What the caller sees of whoever answers: the hotline, never the agent's device or
        number ("name" <number>, the form CALLERID(all) and CONNECTEDLINE(all) read)."""
        assert self.hotline is not None
        return '"{}" <{}>'.format(self.hotline.name.replace('"', ""), self.hotline.number)

    def _leg_variables(self) -> dict[str, str]:
        """The variables of a leg this call originates: the ones of every leg, and the leg's
        own caller ID set to the hotline. Bridging two channels sends each the other's
        caller ID as its connected line: the caller sees the hotline. Set in the originate
        (after its caller_id, which stays the leg's connected line: what the agent's phone
        shows), not by a request after the answer."""
        return self.ctx.settings.leg_variables() | {"CALLERID(all)": self._hotline_id_shown()}

    # -- what one phase asks of another (each is defined in the module of its phase) -------
    async def _ring(self, offer: Offer) -> bool:
        raise NotImplementedError  # offer.py

    async def _drop_leg(self, leg: Leg, *, unanswered: bool = False) -> None:
        raise NotImplementedError  # offer.py

    async def _cancel_legs(self) -> None:
        raise NotImplementedError  # offer.py

    def _forget_leg(self, leg: Leg) -> None:
        raise NotImplementedError  # offer.py

    async def _connect(self, leg: Leg, state: InboundState, cause: str) -> None:
        raise NotImplementedError  # bridge.py

    async def _bridge_connecting(self, cause: str) -> None:
        raise NotImplementedError  # bridge.py

    async def _back_to_queue(self, cause: str) -> None:
        raise NotImplementedError  # queue.py

    async def _accept_callback(self) -> None:
        raise NotImplementedError  # queue.py

    async def _run_action(self, action: Action, cause: str) -> None:
        raise NotImplementedError  # flow.py
