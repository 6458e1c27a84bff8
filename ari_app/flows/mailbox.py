"""Voicemail retrieval by phone (`*98<hotline>` and service-line option 5), shared by the
feature-code and service-line flows: the open messages of the agent's hotline(s), newest
first; for each the caller's number and the time are read out, the recording plays, and
keys (the usual voicemail keys, so core prompts can announce them) act on it:

    5 replay   6 next   7 delete   9 mark done   * menu again   # leave

Who listened is recorded when a message starts to play (services/mailbox.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ari_app.db.models import Agent, Hotline
from ari_app.domain import numbers
from ari_app.domain.errors import NotFound
from ari_app.flows.prompts import InteractiveFlow, Question, Then, actor, spoken_number
from ari_app.services import mailbox
from ari_app.services.audit import Path
from ari_app.services.mailbox import Message

log = logging.getLogger(__name__)

REPLAY, NEXT, DELETE, DONE, HELP, LEAVE = "5", "6", "7", "9", "*", "#"
KEYS = REPLAY + NEXT + DELETE + DONE + HELP + LEAVE
# "press 5 to repeat", "press 6 for the next message", "press 7 to delete", "press 9 to
# save (= mark done)", "press star for help or pound to exit"
MENU = (
    "sound:vm-repeat",
    "sound:vm-next",
    "sound:vm-delete",
    "sound:vm-savemessage",
    "sound:vm-helpexit",
)
MARKED_DONE = ("sound:vm-msgsaved",)
DELETED = ("sound:vm-deleted",)
NO_MORE = ("sound:vm-nomore",)


def count_media(count: int) -> list[str]:
    """ "You have no messages" / "You have 1 message" / "You have 3 messages"."""
    if count == 0:
        return ["sound:vm-youhave", "sound:vm-no", "sound:vm-messages"]
    noun = "sound:vm-message" if count == 1 else "sound:vm-messages"
    return ["sound:vm-youhave", f"number:{count}", noun]


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def time_media(at: datetime, timezone: str, now: datetime, lang: str = "en") -> list[str]:
    """When a message came, in the hotline's time zone: today / yesterday / a weekday (in
    the last week) / month and day, then the hour and minute (24 h; German: "14 Uhr 5")."""
    zone = _zone(timezone)
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    days = (today - local.date()).days
    if days == 0:
        media = ["sound:digits/today"]
    elif days == 1:
        media = ["sound:digits/yesterday"]
    elif 1 < days < 7:
        media = [f"sound:digits/day-{local.isoweekday() % 7}"]  # day-0 is Sunday
    else:
        media = [f"sound:digits/mon-{local.month - 1}", f"number:{local.day}"]
    media.append(f"number:{local.hour}")
    if lang == "de":
        return [
            *media,
            "sound:digits/oclock",
            *([f"number:{local.minute}"] if local.minute else []),
        ]
    if local.minute == 0:
        media.append("sound:digits/oclock")
    else:
        media += (["sound:digits/oh"] if local.minute < 10 else []) + [f"number:{local.minute}"]
    return media


def header_media(
    position: int, message: Message, *, with_hotline: bool, now: datetime, lang: str = "en"
) -> list[str]:
    """ "Message 1 [for 500] from phone number 0 3 0 ... received today 14 32"."""
    media = ["sound:vm-message", f"number:{position}"]
    if with_hotline:
        media += ["sound:for", spoken_number(message.hotline_number)]
    # Only a number is spoken: a stored caller ID is never trusted into a media list.
    if numbers.is_caller_number(message.caller_number):
        media += ["sound:vm-from-phonenumber", spoken_number(message.caller_number)]
    else:
        media.append("sound:vm-unknown-caller")
    return [
        *media,
        "sound:vm-received",
        *time_media(message.recorded_at, message.timezone, now, lang),
    ]


class MailboxBrowser:
    """The retrieval dialogue on an interactive flow; `on_exit` runs when the agent leaves
    or no message is left."""

    def __init__(
        self,
        flow: InteractiveFlow[Any],
        agent: Agent,
        hotlines: Sequence[Hotline],
        *,
        path: Path,
        on_exit: Then,
    ) -> None:
        self.flow = flow
        self.agent = agent
        self.hotlines = list(hotlines)
        self.path = path
        self.on_exit = on_exit
        self.messages: list[Message] = []
        self.index = 0

    async def start(self) -> None:
        async with self.flow.sessions() as session:
            self.messages = await mailbox.open_messages(session, [h.id for h in self.hotlines])
        log.info(
            "call=%s agent %s listens to %d message(s)",
            self.flow.channel_id,
            self.agent.number,
            len(self.messages),
        )
        intro = count_media(len(self.messages))
        if not self.messages:
            await self.flow.say(intro, then=self.on_exit)
            return
        await self._present(intro)

    @property
    def current(self) -> Message:
        return self.messages[self.index]

    async def _present(self, lead: Sequence[str] = ()) -> None:
        """Announce and play the current message, then offer the keys."""
        now = datetime.now(UTC)
        while self.index < len(self.messages):
            async with self.flow.sessions() as session, session.begin():
                still_there = await mailbox.heard(
                    session,
                    self.current,
                    agent_id=self.agent.id,
                    now=now,
                    path=self.path,
                    actor=actor(self.agent),
                )
            if still_there:
                break
            self.index += 1  # deleted meanwhile (another agent, the CLI)
        else:
            await self.flow.say([*lead, *NO_MORE], then=self.on_exit)
            return
        message = self.current
        prompt = [
            *lead,
            *header_media(
                self.index + 1,
                message,
                with_hotline=len(self.hotlines) > 1,
                now=now,
                lang=self.flow.language,
            ),
            f"recording:{message.recording_name}",
            *MENU,
        ]
        await self.flow.ask(Question.menu(prompt, KEYS, "voicemail key"), self._key)

    async def _key(self, key: str) -> None:
        message = self.current
        if key == REPLAY:
            await self._present()
        elif key == NEXT:
            self.index += 1
            await self._present()
        elif key == HELP:
            await self.flow.ask(Question.menu(MENU, KEYS, "voicemail key"), self._key)
        elif key == LEAVE:
            await self.on_exit()
        elif key in (DONE, DELETE):
            lead = await self._act(message, key)
            self.index += 1
            await self._present(lead)

    async def _act(self, message: Message, key: str) -> Sequence[str]:
        try:
            async with self.flow.sessions() as session, session.begin():
                if key == DONE:
                    await mailbox.mark_done(
                        session,
                        message,
                        agent_id=self.agent.id,
                        now=datetime.now(UTC),
                        path=self.path,
                        actor=actor(self.agent),
                    )
                    return MARKED_DONE
                await mailbox.delete(
                    session,
                    message,
                    self.flow.ari,
                    agent_id=self.agent.id,
                    path=self.path,
                    actor=actor(self.agent),
                )
                return DELETED
        except NotFound:
            log.info("call=%s voicemail %s is gone already", self.flow.channel_id, message.id)
            return DELETED
