"""Voice and keypad dialogue for interactive call flows (feature codes, service line,
voicemail retrieval; any flow may derive from `InteractiveFlow`).

- `say(media, then)`: play, and continue when the playback finished.
- `ask(question, on_answer)`: play a prompt and collect keys with `domain.features.collect`
  (terminator, maximum length, `*` clears); a key stops the prompt (barge-in), keys typed
  while nothing is asked are kept for the next question (type-ahead), so a caller who
  knows the dialogue can type ahead. Wrong input (no digits, a timeout, too many digits, a
  key that is not on the menu) gets one "please try again", the second a polite goodbye.
- `authenticate(...)`: agent number (unless the device identified the agent) and PIN,
  checked by `services.auth` with the lockout of the agent and of the calling number.
- `hand_over(...)`: the one place a flow hands a duty over (flows/handover.py).

Prompts are core Asterisk sounds (`sound:`), `digits:` and `number:` media only.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ari_app.ari.errors import AriError
from ari_app.ari.events import ChannelDestroyed, ChannelDtmfReceived, PlaybackFinished, StasisEnd
from ari_app.db.models import Agent
from ari_app.domain.errors import InvalidValue
from ari_app.domain.features import collect
from ari_app.domain.pin import PIN_MAX_LENGTH
from ari_app.flows.base import CallFlow, FlowContext, FlowEvent, Table, Timer, but, on
from ari_app.flows.handover import HandoverAction, start_handover
from ari_app.services import auth
from ari_app.services.audit import Path

log = logging.getLogger(__name__)

S = TypeVar("S", bound=enum.Enum)
Then = Callable[[], Awaitable[None]]
OnAnswer = Callable[[str], Awaitable[None]]
OnAgent = Callable[[Agent], Awaitable[None]]

# --- prompts (core sounds; one place to swap in recorded ones) ---------------------------
GOODBYE = ("sound:goodbye",)
RETRY = ("sound:please-try-again",)
SORRY = ("sound:im-sorry", "sound:please-try-call-later", "sound:goodbye")  # we failed
NOT_AVAILABLE = ("sound:feature-not-avail-line",)
ASK_AGENT = ("sound:agent-user",)  # "Agent login. Please enter your agent number, then #"
ASK_PIN = ("sound:agent-pass",)  # "Please enter your password followed by the pound key"
WRONG_AGENT_OR_PIN = ("sound:agent-incorrect",)  # "Login incorrect. ... agent number ..."
WRONG_PIN = ("sound:auth-incorrect",)  # "Password incorrect. Please enter your password ..."
REFUSED_LOGIN = ("sound:vm-incorrect", "sound:please-try-call-later", "sound:goodbye")

ENTRY_TIMEOUT_S = 8.0  # for the first key once the prompt has been played
DIGIT_TIMEOUT_S = 5.0  # between keys
# From the end of the prompt (or the first key) to the answer, whatever is typed: keys
# restart the digit timeout, so without this bound a caller pressing one every few seconds
# (or `*`, which clears the entry) would hold the line forever. MAX_TRIES bounds the retries.
ANSWER_WITHIN_S = 45.0
MAX_TRIES = 2  # wrong input: one retry, then goodbye
PIN_TRIES_PER_CALL = 3  # the lockout policy usually ends it sooner
TYPEAHEAD_MAX = 40
AGENT_NUMBER_MAX = 10


class InputError(enum.StrEnum):
    EMPTY = "no digits"
    TIMEOUT = "timeout"
    TOO_LONG = "too many digits"
    BAD_KEY = "wrong key"


@dataclass(frozen=True)
class Question:
    """What to ask: an entry of up to `max_len` digits ended by `terminator`, or (with
    `keys`) a menu answered by one of those keys."""

    prompt: tuple[str, ...]
    name: str
    max_len: int = 1
    terminator: str | None = "#"
    keys: frozenset[str] | None = None
    timeout_s: float = ENTRY_TIMEOUT_S
    secret: bool = False  # never log what was typed

    @classmethod
    def menu(cls, prompt: Sequence[str], keys: str, name: str) -> Question:
        return cls(tuple(prompt), name, 1, None, frozenset(keys))

    @classmethod
    def entry(
        cls, prompt: Sequence[str], name: str, max_len: int, *, secret: bool = False
    ) -> Question:
        return cls(tuple(prompt), name, max_len, "#", secret=secret)


AGENT_QUESTION = Question.entry(ASK_AGENT, "agent number", AGENT_NUMBER_MAX)
PIN_QUESTION = Question.entry(ASK_PIN, "PIN", PIN_MAX_LENGTH, secret=True)


@dataclass
class _Login:
    """The agent number + PIN dialogue in progress."""

    known: Agent | None  # identified by the device: only the PIN is asked
    caller: str | None  # lockout subject of the calling number or device; None: withheld
    path: Path
    then: OnAgent
    number: str = ""
    attempts: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def actor(agent: Agent) -> str:
    """The audit actor for what an agent does by phone."""
    return f"agent:{agent.number}"


# The events of a dialogue: a prompt ends, a key, the entry's timers. Each may carry the
# dialogue on to its next step (the callback of `say` or `ask`), and with it the flow.
DIALOGUE = ("PlaybackFinished", "ChannelDtmfReceived", "timer:entry", "timer:answer_by")
HANG_UPS = ("StasisEnd", "ChannelDestroyed")


def dialogue_table(
    states: type[S], *, new: S, start: Iterable[S], steps: Mapping[S, Iterable[S]], done: S
) -> Table[S]:
    """The table of an interactive flow: StasisStart in `new` leads to `start`; in each
    state of `steps` the dialogue's events lead to the states given. Any of them may end
    the call (`done`: a goodbye, a failed request), and so does the caller hanging up."""
    rows = [on(new, "StasisStart", to=(*start, done)), on(but(states, done), "Stop")]
    # `new` too: a call refused at once (unknown code, no database) hears why first.
    rows += [on(state, DIALOGUE, to=(*to, done)) for state, to in {new: (), **steps}.items()]
    rows.append(on(but(states, done), HANG_UPS, to=done))
    return Table(states, rows)


class InteractiveFlow(CallFlow[S]):
    """A flow talking with its caller by voice and keypad. Subclasses set `done` (the final
    state) besides `name` and `initial`."""

    done: S

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        super().__init__(ctx, channel_id, args)
        self.caller_gone = False
        self.playback_id: str | None = None
        self.question: Question | None = None
        self._after_play: Then | None = None
        self._on_answer: OnAnswer | None = None
        self._prompting = False  # the question's prompt is still playing
        self._entry = ""
        self._discarding = False  # too many digits: wait for the terminator, then retry
        self._tries = 0
        self._asked = 0  # generation of the current question
        self._typeahead: list[str] = []
        self._credentials: _Login | None = None
        self.sessions = ctx.sessions
        # What the caller hears: the server's default until the agent is known (hear()).
        self.language = ctx.settings.language

    # -- playing ------------------------------------------------------------------------
    def hear(self, agent: Agent) -> None:
        """From now on the caller hears `agent`'s language."""
        self.language = self.language_of(agent.language)

    async def say(self, media: Sequence[str], then: Then | None = None) -> None:
        """Play `media` (one playback), then run `then`; nothing is being asked meanwhile,
        so keys typed now are kept for the next question."""
        await self.stop_playback()
        self.cancel_timer("entry")
        self.cancel_timer("answer_by")
        self.question, self._on_answer = None, None
        self._after_play = then
        if not await self._play(media):
            self._after_play = None
            if then is not None:
                await then()

    async def end_call(self, media: Sequence[str], cause: str) -> None:
        """Play `media`, then hang up."""

        async def hang_up() -> None:
            self.hang_up(cause)

        await self.say(media, then=hang_up)

    async def goodbye(self, cause: str = "goodbye") -> None:
        await self.end_call(GOODBYE, cause)

    def hang_up(self, cause: str) -> None:
        if not self.finished:
            self._transition(self.done, cause)
            self.finish()  # cleanup() hangs up the caller

    async def _play(self, media: Sequence[str]) -> bool:
        if self.caller_gone:
            return False
        self.playback_id = f"{self.channel_id}-p{uuid.uuid4().hex[:8]}"
        try:
            await self.play(self.channel_id, media, self.language, playback_id=self.playback_id)
        except AriError as exc:
            log.warning("call=%s flow=%s playback failed: %s", self.channel_id, self.name, exc)
            self.playback_id = None
            return False
        return True

    async def stop_playback(self) -> None:
        playback_id, self.playback_id = self.playback_id, None
        self._after_play = None
        self._prompting = False
        if playback_id is not None:
            try:
                await self.ari.stop_playback(playback_id)
            except AriError as exc:
                log.debug("call=%s stop playback: %s", self.channel_id, exc)

    async def on_PlaybackFinished(self, event: PlaybackFinished) -> None:
        if event.playback.id != self.playback_id:
            return  # one we stopped (barge-in) or someone else's
        self.playback_id = None
        then, self._after_play = self._after_play, None
        if then is not None:
            await then()

    # -- asking -------------------------------------------------------------------------
    async def ask(self, question: Question, on_answer: OnAnswer) -> None:
        """Ask `question`; `on_answer(value)` runs with the entry (a menu: the key)."""
        self._tries = 0
        await self._ask(question, on_answer, lead=())

    async def _ask(self, question: Question, on_answer: OnAnswer, lead: Sequence[str]) -> None:
        await self.stop_playback()
        self.cancel_timer("answer_by")  # each try gets its own time
        self._asked += 1
        generation = self._asked
        self.question, self._on_answer = question, on_answer
        self._entry, self._discarding = "", False
        while self._typeahead and self._asked == generation:
            await self._key(self._typeahead.pop(0))
        if self._asked != generation or self.question is None:
            return  # answered (or failed) from what was typed ahead
        if self._entry or self._discarding:
            self.start_timer("entry", DIGIT_TIMEOUT_S)  # typing under way: no prompt
            return
        self._prompting = True
        self._after_play = self._prompt_played
        if not await self._play([*lead, *question.prompt]):
            await self._prompt_played()

    async def _prompt_played(self) -> None:
        self._prompting = False
        if self.question is not None:
            self.start_timer("entry", self.question.timeout_s)
            self._answer_by()

    def _answer_by(self) -> None:
        """The entry began (prompt played, or a first key): it must be answered in time."""
        if "answer_by" not in self._timers:
            self.start_timer("answer_by", ANSWER_WITHIN_S)

    async def on_timer_answer_by(self, _: Timer) -> None:
        if self.question is not None:
            await self._fail(InputError.TIMEOUT)

    async def on_ChannelDtmfReceived(self, event: ChannelDtmfReceived) -> None:
        if event.channel.id != self.channel_id:
            return
        if self.question is None:
            if len(self._typeahead) < TYPEAHEAD_MAX:
                self._typeahead.append(event.digit)
            return
        if self._prompting:
            await self.stop_playback()  # barge-in
        await self._key(event.digit)

    async def _key(self, digit: str) -> None:
        question = self.question
        assert question is not None
        self.cancel_timer("entry")
        self._answer_by()
        if self._discarding:
            if digit == question.terminator:
                await self._fail(InputError.TOO_LONG)
            else:
                self.start_timer("entry", DIGIT_TIMEOUT_S)
            return
        if question.keys is not None:
            if digit in question.keys:
                await self._answer(digit)
            else:
                await self._fail(InputError.BAD_KEY)
            return
        if digit.isdigit() and len(self._entry) >= question.max_len:
            # The rest of a too long entry is let through to its terminator, so it does
            # not spill into the retry.
            self._discarding = True
            self.start_timer("entry", DIGIT_TIMEOUT_S)
            return
        try:
            got = collect(
                self._entry, digit, max_len=question.max_len, terminator=question.terminator
            )
        except (InvalidValue, ValueError):
            await self._fail(InputError.BAD_KEY)
            return
        if got.done:
            if got.value:
                await self._answer(got.value)
            else:
                await self._fail(InputError.EMPTY)
            return
        self._entry = got.value
        if question.terminator is None and len(got.value) == question.max_len:
            await self._answer(got.value)
            return
        self.start_timer("entry", DIGIT_TIMEOUT_S)

    async def on_timer_entry(self, _: Timer) -> None:
        if self.question is None:
            return
        if self._discarding:
            await self._fail(InputError.TOO_LONG)
        elif self._entry:
            await self._answer(self._entry)  # the caller paused instead of pressing #
        else:
            await self._fail(InputError.TIMEOUT)

    async def _answer(self, value: str) -> None:
        question, on_answer = self.question, self._on_answer
        assert question is not None and on_answer is not None
        self.question, self._on_answer = None, None
        self._entry, self._prompting = "", False
        self.cancel_timer("entry")
        self.cancel_timer("answer_by")
        log.info(
            "call=%s flow=%s %s: %s",
            self.channel_id,
            self.name,
            question.name,
            "*" * len(value) if question.secret else value,
        )
        await on_answer(value)

    async def _fail(self, why: InputError) -> None:
        question, on_answer = self.question, self._on_answer
        assert question is not None and on_answer is not None
        self.question, self._on_answer = None, None
        self.cancel_timer("entry")
        self.cancel_timer("answer_by")
        self._typeahead.clear()  # what was typed after a mistake is not trusted
        self._tries += 1
        log.info(
            "call=%s flow=%s %s: %s (try %d of %d)",
            self.channel_id,
            self.name,
            question.name,
            why.value,
            self._tries,
            MAX_TRIES,
        )
        if self._tries >= MAX_TRIES:
            await self.goodbye(f"{question.name}: {why.value}")
            return
        await self._ask(question, on_answer, lead=RETRY)

    # -- agent number + PIN -------------------------------------------------------------
    async def authenticate(
        self, *, known: Agent | None, caller: str | None, path: Path, then: OnAgent
    ) -> None:
        """Ask for the PIN (and the agent number unless `known`), check it with the
        lockout of the agent and of `caller` (a lockout subject), then run `then(agent)`."""
        self._credentials = _Login(known, caller, path, then)
        if known is not None:
            self.hear(known)
            self._credentials.number = known.number
            await self.ask(PIN_QUESTION, self._got_pin)
        else:
            await self.ask(AGENT_QUESTION, self._got_agent_number)

    async def _got_agent_number(self, number: str) -> None:
        assert self._credentials is not None
        self._credentials.number = number
        await self.ask(PIN_QUESTION, self._got_pin)

    async def _got_pin(self, pin: str) -> None:
        login = self._credentials
        assert login is not None
        # Two short transactions around the hash, none held while it runs (services/auth).
        result = await auth.check_pin(
            self.sessions,
            agent_number=login.number,
            pin=pin,
            caller=login.caller,
            path=login.path,
            policy=self.ctx.settings.pin_lockout,
            now=_now(),
            device_identified=login.known is not None,
        )
        if self.ctx.metrics is not None:
            self.ctx.metrics.pin_checked(result.verdict.value, alert=result.alert)
        login.attempts += 1
        if result.verdict is auth.Verdict.OK:
            assert result.agent is not None
            self._credentials = None
            self.hear(result.agent)
            await login.then(result.agent)
            return
        log.info(
            "call=%s flow=%s login %s (attempt %d)",
            self.channel_id,
            self.name,
            result.verdict.value,
            login.attempts,
        )
        if (
            result.verdict is auth.Verdict.LOCKED
            or result.locked_now
            or login.attempts >= PIN_TRIES_PER_CALL
        ):
            # Locked and wrong sound alike: "login incorrect, try later, goodbye".
            await self.end_call(REFUSED_LOGIN, f"login {result.verdict.value}")
            return
        if login.known is not None:
            await self.ask(
                Question.entry(WRONG_PIN, "PIN", PIN_MAX_LENGTH, secret=True), self._got_pin
            )
        else:
            await self.ask(
                Question.entry(WRONG_AGENT_OR_PIN, "agent number", AGENT_NUMBER_MAX),
                self._got_agent_number,
            )

    # -- handing a duty over ------------------------------------------------------------
    async def hand_over(
        self, agent: Agent, hotline_ids: Sequence[int], action: HandoverAction, path: Path
    ) -> list[str]:
        """Hand the agent's duty over to a colleague (the staffing rule refused a logout or
        pause, or the agent asked for it): the caller hears music on hold meanwhile.
        Returns what to tell the agent afterwards."""
        await self.stop_playback()
        self.cancel_timer("entry")
        self.cancel_timer("answer_by")
        self.question = None
        result = await start_handover(self, agent.id, list(hotline_ids), action=action, path=path)
        log.info(
            "call=%s flow=%s handover %s: %s",
            self.channel_id,
            self.name,
            action.value,
            result.outcome.value,
        )
        return list(result.requester_media)

    # -- hang-ups, errors, cleanup ------------------------------------------------------
    async def on_StasisEnd(self, event: StasisEnd) -> None:
        if event.channel.id == self.channel_id:
            self._caller_left()

    async def on_ChannelDestroyed(self, event: ChannelDestroyed) -> None:
        if event.channel.id == self.channel_id:
            self._caller_left()

    def _caller_left(self) -> None:
        if self.caller_gone:
            return
        self.caller_gone = True
        self.playback_id = None
        self.question = None
        self.hang_up("caller hung up")

    async def _handle(self, event: FlowEvent) -> None:
        try:
            await super()._handle(event)
        except (SQLAlchemyError, OSError) as exc:
            # No database: say sorry rather than leave the caller in silence.
            log.error("call=%s flow=%s database unavailable: %s", self.channel_id, self.name, exc)
            if not self.finished:
                await self.end_call(SORRY, "database unavailable")
        except AriError as exc:
            log.warning("call=%s flow=%s ARI request failed: %s", self.channel_id, self.name, exc)
            self.hang_up("ARI error")

    async def cleanup(self) -> None:
        if not self.caller_gone:
            try:
                await self.ari.hangup(self.channel_id)
            except AriError as exc:
                log.debug("call=%s hangup: %s", self.channel_id, exc)


def spoken_number(number: str) -> str:
    """`digits:` media for a phone or hotline number (the `+` is not spoken)."""
    return f"digits:{number.lstrip('+')}"
