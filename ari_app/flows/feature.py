"""Feature codes from internal phones (`[hotline-features]`, args: [dialled code]):
`*21[<hotline>]` log in, `*22[<hotline>]` log out, `*23` toggle not available, `*24<hotline>`
status, `*98<hotline>` voicemail (codes configurable, HOTLINE_FEATURE_CODES).

The calling device comes from the channel name (`PJSIP/1003-0000001a` -> `PJSIP/1003`),
never from typed digits. A device ops bound to an agent identifies the agent (voicemail
still asks for the PIN); any other phone is hot-desking: agent number + PIN, and a login
makes that phone the agent's target. Every action is confirmed by voice; the services
write state and the audit row.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from ari_app.ari.events import StasisStart
from ari_app.db.models import Agent
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import InvalidValue, NotFound, Refused
from ari_app.domain.features import FeatureRequest, parse_feature
from ari_app.flows.base import FlowContext
from ari_app.flows.handover import HandoverAction
from ari_app.flows.mailbox import MailboxBrowser
from ari_app.flows.prompts import NOT_AVAILABLE, InteractiveFlow, actor, dialogue_table
from ari_app.services import agents, auth
from ari_app.services.agents import OwnStatus, Target
from ari_app.services.audit import Path

log = logging.getLogger(__name__)

LOGGED_IN = ("sound:agent-loginok",)
LOGGED_OUT = ("sound:agent-loggedoff",)
PAUSED = ("sound:do-not-disturb", "sound:activated")
UNPAUSED = ("sound:do-not-disturb", "sound:de-activated")
# "Your call cannot be completed as dialed. Please check the number and try again."
NOT_DIALLED = ("sound:cannot-complete-as-dialed",)


def status_media(logged_in: bool, paused: bool, agents_in: int, waiting: int) -> list[str]:
    """Am I logged in (and not available), how many agents are logged in, callers waiting;
    never a name."""
    media = list(LOGGED_IN if logged_in else LOGGED_OUT)
    if logged_in and paused:
        media += PAUSED
    media += ["sound:queue-thereare", f"number:{agents_in}", *LOGGED_IN]
    media += ["sound:queue-thereare", f"number:{waiting}", "sound:queue-callswaiting"]
    return media


def own_status_media(told: OwnStatus) -> list[str]:
    return status_media(told.logged_in, told.paused, told.agents_in, told.waiting)


# What the agent hears after an action, and the cause in the flow's transition log.
Told = tuple[tuple[str, ...], str]


async def log_out(
    flow: InteractiveFlow[Any], agent: Agent, hotline_number: str | None, path: Path
) -> Told | None:
    """Log out by phone (*22[<hotline>], the service line's 2), for the feature-code and
    the service-line flow alike. None: the staffing rule refused (offer a handover)."""
    try:
        async with flow.sessions() as session, session.begin():
            await agents.logout(
                session, agent, hotline_number=hotline_number, path=path, actor=actor(agent)
            )
    except NotFound:
        return NOT_DIALLED, "not a member"
    except Refused as exc:
        log.info("call=%s logout refused: %s", flow.channel_id, exc.message)
        return None
    return LOGGED_OUT, "logged out"


async def toggle_pause(flow: InteractiveFlow[Any], agent: Agent, path: Path) -> Told | None:
    """Not available <-> available by phone (*23, the service line's 3), for both flows.
    None: the staffing rule refused (offer a handover)."""
    try:
        async with flow.sessions() as session, session.begin():
            paused = await agents.toggle_paused(session, agent, path=path, actor=actor(agent))
    except Refused as exc:
        log.info("call=%s pause refused: %s", flow.channel_id, exc.message)
        return None
    if paused is None:
        return LOGGED_OUT, "not logged in"
    if not paused:
        flow.ctx.agents_changed.notify()  # waiting callers may have an agent now
    return (PAUSED, "paused") if paused else (UNPAUSED, "available")


class FeatureState(enum.Enum):
    NEW = "new"
    AUTH = "auth"  # agent number and/or PIN
    ACTING = "acting"  # doing it, then the confirmation
    MAILBOX = "mailbox"
    DONE = "done"


class FeatureFlow(InteractiveFlow[FeatureState]):
    name = "feature"
    initial = FeatureState.NEW
    done = FeatureState.DONE
    table = dialogue_table(
        FeatureState,
        new=FeatureState.NEW,
        # A bound device acts at once (voicemail still asks for the PIN).
        start=(FeatureState.AUTH, FeatureState.ACTING),
        steps={
            FeatureState.AUTH: (FeatureState.ACTING, FeatureState.MAILBOX),
            FeatureState.ACTING: (),
            FeatureState.MAILBOX: (),
        },
        done=FeatureState.DONE,
    )

    def __init__(self, ctx: FlowContext, channel_id: str, args: tuple[str, ...]) -> None:
        super().__init__(ctx, channel_id, args)
        self.dialled = args[0] if args else ""
        self.request = FeatureRequest("login")
        self.device = ""
        self.path: Path = "device"

    async def on_StasisStart(self, event: StasisStart) -> None:
        if event.channel.id != self.channel_id:
            self.ignore("StasisStart", f"of another channel {event.channel.id}")
            return
        await self.ari.answer(self.channel_id)
        try:
            self.request = parse_feature(self.dialled, self.ctx.settings.feature_codes)
        except InvalidValue as exc:
            log.info("call=%s flow=%s %s", self.channel_id, self.name, exc.message)
            await self.end_call(NOT_DIALLED, "unknown code")
            return
        device = auth.device_of_channel(event.channel.name)
        if device is None:
            await self.end_call(NOT_AVAILABLE, f"no device in {event.channel.name!r}")
            return
        self.device = device
        async with self.sessions() as session:
            agent = await auth.agent_by_device(session, device)
        if agent is None:
            self.path = "hotdesk"
        elif self.request.kind != "voicemail":
            self.hear(agent)
            await self._act(agent)
            return
        self._transition(FeatureState.AUTH, f"{self.request.kind} from {self.path}")
        await self.authenticate(
            known=agent, caller=auth.device_subject(device), path=self.path, then=self._act
        )

    async def _act(self, agent: Agent) -> None:
        kind = self.request.kind
        self._transition(FeatureState.ACTING, f"{kind} agent {agent.number}")
        if kind == "login":
            await self._login(agent)
        elif kind == "logout":
            await self._logout(agent)
        elif kind == "pause":
            await self._toggle_pause(agent)
        elif kind == "status":
            await self._status(agent)
        else:
            await self._voicemail(agent)

    async def _login(self, agent: Agent) -> None:
        # Hot-desking: this phone takes the agent's calls; own device: the bound device.
        target = None if self.path == "device" else Target(self.device, TargetKind.DEVICE)
        try:
            async with self.sessions() as session, session.begin():
                await agents.login(
                    session,
                    agent,
                    target=target,
                    hotline_number=self.request.hotline,
                    path=self.path,
                    actor=actor(agent),
                )
        except NotFound:
            await self.end_call(NOT_DIALLED, "not a member")
            return
        except Refused as exc:
            log.info("call=%s login refused: %s", self.channel_id, exc.message)
            await self.end_call(NOT_AVAILABLE, "login refused")
            return
        self.ctx.agents_changed.notify()  # waiting callers may have an agent now
        await self.end_call(LOGGED_IN, "logged in")

    async def _logout(self, agent: Agent) -> None:
        told = await log_out(self, agent, self.request.hotline, self.path)
        if told is None:
            await self._hand_over(agent, HandoverAction.LOGOUT, self.request.hotline)
            return
        await self.end_call(*told)

    async def _toggle_pause(self, agent: Agent) -> None:
        told = await toggle_pause(self, agent, self.path)
        if told is None:
            await self._hand_over(agent, HandoverAction.PAUSE, None)
            return
        await self.end_call(*told)

    async def _hand_over(
        self, agent: Agent, action: HandoverAction, hotline_number: str | None
    ) -> None:
        async with self.sessions() as session:
            hotlines = await agents.member_hotlines(session, agent.id, hotline_number)
        media = await self.hand_over(agent, [h.id for h in hotlines], action, self.path)
        await self.end_call(media, f"{action.value} handed over")

    async def _status(self, agent: Agent) -> None:
        assert self.request.hotline is not None
        async with self.sessions() as session, session.begin():
            told = await agents.own_statuses(
                session, agent, self.request.hotline, path=self.path, actor=actor(agent)
            )
        if not told:
            await self.end_call(NOT_DIALLED, "not a member")
            return
        await self.end_call(own_status_media(told[0]), "status told")

    async def _voicemail(self, agent: Agent) -> None:
        async with self.sessions() as session:
            hotlines = await agents.member_hotlines(session, agent.id, self.request.hotline)
        if not hotlines:
            await self.end_call(NOT_DIALLED, "not a member")
            return
        self._transition(FeatureState.MAILBOX, "PIN ok")
        browser = MailboxBrowser(self, agent, hotlines, path=self.path, on_exit=self.goodbye)
        await browser.start()
