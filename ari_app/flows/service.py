"""The remote agent service line (`[hotline-service]`, args: [dialled number]) for phones
outside the PBX: agent number + PIN always (caller ID can be spoofed), then a menu:

    1 log in   2 log out   3 toggle not available   4 status   5 voicemail   6 hand over

A login delivers calls to the agent's configured external number that is the caller ID;
a number ops never configured for the agent is refused (and audited). After each action
the menu comes back; the agent hangs up when done.
"""

from __future__ import annotations

import enum
import logging

from ari_app.ari.events import StasisStart
from ari_app.db.models import Agent
from ari_app.domain.errors import Refused
from ari_app.flows.base import FlowContext
from ari_app.flows.feature import (
    LOGGED_IN,
    LOGGED_OUT,
    log_out,
    own_status_media,
    toggle_pause,
)
from ari_app.flows.handover import HandoverAction
from ari_app.flows.mailbox import MailboxBrowser
from ari_app.flows.prompts import (
    NOT_AVAILABLE,
    InteractiveFlow,
    Question,
    actor,
    dialogue_table,
    spoken_number,
)
from ari_app.services import admin, agents, auth

log = logging.getLogger(__name__)

LOGIN, LOGOUT, PAUSE, STATUS, VOICEMAIL, HANDOVER = "123456"
# "For <x>, press <n>" from core sounds: agent logged in / agent logged off / do not
# disturb / calls waiting / messages / transfer.
_OPTIONS = (
    (LOGIN, "sound:agent-loginok"),
    (LOGOUT, "sound:agent-loggedoff"),
    (PAUSE, "sound:do-not-disturb"),
    (STATUS, "sound:queue-callswaiting"),
    (VOICEMAIL, "sound:vm-messages"),
    (HANDOVER, "sound:transfer"),
)
MENU = Question.menu(
    [m for key, what in _OPTIONS for m in ("sound:for", what, "sound:vm-press", f"digits:{key}")],
    "".join(key for key, _ in _OPTIONS),
    "service menu",
)


class ServiceState(enum.Enum):
    NEW = "new"
    AUTH = "auth"
    MENU = "menu"
    ACTING = "acting"
    MAILBOX = "mailbox"
    DONE = "done"


_IN_MENU = (ServiceState.MENU, ServiceState.ACTING, ServiceState.MAILBOX)


class ServiceFlow(InteractiveFlow[ServiceState]):
    name = "service"
    initial = ServiceState.NEW
    done = ServiceState.DONE
    table = dialogue_table(
        ServiceState,
        new=ServiceState.NEW,
        start=(ServiceState.AUTH,),
        # Back in the menu, an option typed ahead is taken at once: the PIN, an option's
        # confirmation or leaving the mailbox may lead through the menu to the next option.
        steps={state: _IN_MENU for state in (ServiceState.AUTH, *_IN_MENU)},
        done=ServiceState.DONE,
    )

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        super().__init__(ctx, channel_id, args)
        self.caller: str | None = None
        self.agent: Agent | None = None

    async def on_StasisStart(self, event: StasisStart) -> None:
        if event.channel.id != self.channel_id:
            self.ignore("StasisStart", f"of another channel {event.channel.id}")
            return
        await self.ari.answer(self.channel_id)
        self.caller = auth.caller_number(event.channel.caller.number)
        # Caller numbers are personal data: only DEBUG lines show them (retention).
        log.debug("call=%s flow=%s caller %s", self.channel_id, self.name, self.caller)
        self._transition(
            ServiceState.AUTH, "caller=<redacted>" if self.caller else "caller withheld"
        )
        await self.authenticate(
            known=None,
            caller=auth.number_subject(self.caller),
            path="service",
            then=self._logged_on,
        )

    async def _logged_on(self, agent: Agent) -> None:
        self.agent = agent
        await self._menu("PIN ok")

    async def _menu(self, cause: str) -> None:
        self._transition(ServiceState.MENU, cause)
        await self.ask(MENU, self._chosen)

    async def _then_menu(self, media: list[str] | tuple[str, ...], cause: str) -> None:
        async def back() -> None:
            await self._menu(cause)

        await self.say(media, then=back)

    async def _chosen(self, key: str) -> None:
        agent = self.agent
        assert agent is not None
        self._transition(ServiceState.ACTING, f"option {key}")
        if key == LOGIN:
            await self._login(agent)
        elif key == LOGOUT:
            await self._logout(agent)
        elif key == PAUSE:
            await self._toggle_pause(agent)
        elif key == STATUS:
            await self._status(agent)
        elif key == VOICEMAIL:
            await self._voicemail(agent)
        else:
            await self._hand_over(agent, HandoverAction.LOGOUT, logged_in_only=True)

    async def _login(self, agent: Agent) -> None:
        try:
            async with self.sessions() as session, session.begin():
                hotlines = await agents.login_from_number(
                    session, agent, self.caller, path="service", actor=actor(agent)
                )
        except Refused as exc:
            log.info("call=%s login refused: %s", self.channel_id, exc.message)
            hotlines = None
        if hotlines is None:
            log.debug("call=%s login refused for caller %s", self.channel_id, self.caller)
            log.info(
                "call=%s agent %s: login from %s refused",
                self.channel_id,
                agent.number,
                "caller=<redacted>" if self.caller else "a withheld number",
            )
            await self._then_menu(NOT_AVAILABLE, "login refused")
            return
        self.ctx.agents_changed.notify()
        await self._then_menu(LOGGED_IN, "logged in")

    async def _logout(self, agent: Agent) -> None:
        told = await log_out(self, agent, None, "service")
        if told is None:
            await self._hand_over(agent, HandoverAction.LOGOUT, logged_in_only=False)
            return
        await self._then_menu(*told)

    async def _toggle_pause(self, agent: Agent) -> None:
        told = await toggle_pause(self, agent, "service")
        if told is None:
            await self._hand_over(agent, HandoverAction.PAUSE, logged_in_only=False)
            return
        await self._then_menu(*told)

    async def _hand_over(
        self, agent: Agent, action: HandoverAction, *, logged_in_only: bool
    ) -> None:
        async with self.sessions() as session:
            hotlines = [
                hotline
                for hotline, logged_in in await admin.hotlines_of(session, agent)
                if logged_in or not logged_in_only
            ]
        if not hotlines:
            await self._then_menu(LOGGED_OUT, "nothing to hand over")
            return
        media = await self.hand_over(agent, [h.id for h in hotlines], action, "service")
        await self._then_menu(media, f"{action.value} handover over")

    async def _status(self, agent: Agent) -> None:
        """Each of the agent's hotlines: its number, then as for *24."""
        async with self.sessions() as session, session.begin():
            told = await agents.own_statuses(session, agent, path="service", actor=actor(agent))
        media = [
            m
            for one in told
            for m in ("sound:for", spoken_number(one.hotline.number), *own_status_media(one))
        ]
        await self._then_menu(media or list(NOT_AVAILABLE), "status told")

    async def _voicemail(self, agent: Agent) -> None:
        """The voicemail of all the agent's hotlines together, newest first."""
        async with self.sessions() as session:
            hotlines = await agents.member_hotlines(session, agent.id)
        if not hotlines:
            await self._then_menu(NOT_AVAILABLE, "no hotline")
            return
        self._transition(ServiceState.MAILBOX, "option 5")

        async def back() -> None:
            await self._menu("mailbox left")

        await MailboxBrowser(self, agent, hotlines, path="service", on_exit=back).start()
