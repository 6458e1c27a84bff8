"""Reconnect, then reconcile (DESIGN.md, convention 8).

After every (re)connect to ARI, Postgres is compared with the channels and bridges
Asterisk still has:
- live flows whose channels vanished while the link was down are told so;
- calls a previous process left open are adopted: waiting callers go back to the queue
  in their original order (Asterisk kept them, with their music, while we were away),
  bridged calls are followed until they end so their records are closed;
- records of calls whose channels are gone are closed, their agents released;
- channels left in our app that nothing can take over hear an apology and are hung up;
- callback attempts a previous process had in flight go back to pending in their place
  (their legs are hung up, their agents released), to be dialled again (issue 15).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ari_app.ari.errors import AriError, AriNotFound, AriUnprocessable
from ari_app.ari.events import ChannelDestroyed
from ari_app.ari.models import Channel
from ari_app.domain.enums import CallStatus
from ari_app.flows import callback
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.orphan import OrphanFlow
from ari_app.services import admin, callbacks, recovery, routing

if TYPE_CHECKING:
    from ari_app.dispatch import Dispatcher
    from ari_app.flows.base import FlowContext

log = logging.getLogger(__name__)

# An Asterisk whose events and REST API have both been gone this long has lost every call
# (a restarted Asterisk has no channels; a dead node is out of the dispatcher by then).
ASTERISK_LOST_S = 10.0


@dataclass
class Reconciled:
    adopted_waiting: int = 0
    adopted_bridged: int = 0
    closed: int = 0
    orphans: list[str] = field(default_factory=list)
    vanished: int = 0


async def reconcile(ctx: FlowContext, dispatcher: Dispatcher) -> Reconciled:
    result = Reconciled()
    ari = ctx.ari
    channels = {c.id: c for c in await ari.list_channels()}
    bridges = {b.id: b for b in await ari.list_bridges()}
    in_app = set((await ari.get_application()).channel_ids)

    # Live flows (a reconnect without restart) may have missed their channels' end.
    for channel_id in dispatcher.owned_channels():
        if channel_id not in channels:
            flow = dispatcher.owner(channel_id)
            if flow is not None:
                result.vanished += 1
                flow.deliver(_destroyed(ctx.app_name, channel_id))

    # Ends (and connections) this process has not written yet go first: the calls would
    # look open, and be closed again at this time instead of their own.
    await ctx.pending.flush()
    now = datetime.now(UTC)
    async with ctx.sessions() as session, session.begin():
        open_calls = await recovery.open_calls(session, ctx.node)
        hotlines = {h.id: h for h in await admin.list_hotlines(session)}
        # Calls another process drives: their channels, and their agents' legs
        # ("<call id>-a..."), are not orphans.
        elsewhere = await recovery.calls_elsewhere(session, ctx.node)
        taken: set[str] = set()  # channels a flow (live or adopted) looks after
        leftover: list[str] = []
        dead_bridges: list[str] = []  # of calls closed here: nothing uses them any more
        # Agents of callback attempts this process runs stay reserved; attempts nobody runs
        # any more are given back, and their legs ("<call id>-cb...") hung up.
        keep_reserved: set[uuid.UUID] = set(callback.running_calls(ctx))
        recovered = await callbacks.recover(
            session, node=ctx.node, running=callback.running(ctx), now=now
        )
        stale_legs = [
            channel_id
            for channel_id in channels
            if any(channel_id.startswith(f"{call_id}-cb") for call_id in recovered)
        ]
        for call in open_calls:
            if dispatcher.owner(call.channel_id) is not None:
                keep_reserved.add(call.id)
                continue
            hotline = hotlines.get(call.hotline_id) if call.hotline_id else None
            # Named after the call (routing.bridge_of): found even when its process died
            # before writing the connection (routing.PendingWrites).
            bridge = bridges.get(call.bridge_id or routing.bridge_of(call.id))
            others = [c for c in (bridge.channels if bridge else ()) if c != call.channel_id]
            if (
                hotline
                and call.channel_id in channels
                and call.status in (CallStatus.WAITING, CallStatus.NEW)
                and bridge
                and len(others) == 1
            ):
                await recovery.connect_unwritten(session, call, bridge.id, others[0], now)
            if call.channel_id not in channels:
                await recovery.close_vanished(session, call, now)
                result.closed += 1
                if bridge is not None:
                    dead_bridges.append(bridge.id)
            elif hotline and call.status is CallStatus.BRIDGED and bridge and len(others) == 1:
                gone = await _follow(ctx, [call.channel_id, others[0]], in_app)
                flow = InboundFlow.adopt(ctx, call, hotline, agent_leg=others[0])
                dispatcher.adopt(flow, [call.channel_id, others[0]])
                for channel_id in gone:  # hung up since the snapshot: no event will come
                    flow.deliver(_destroyed(ctx.app_name, channel_id))
                taken |= {call.channel_id, others[0]}
                keep_reserved.add(call.id)
                result.adopted_bridged += 1
            elif hotline and call.status in (CallStatus.WAITING, CallStatus.NEW):
                await recovery.release_all(session, call.id)
                answered = channels[call.channel_id].state == "Up"
                gone = await _follow(ctx, [call.channel_id], in_app)
                flow = InboundFlow.adopt(ctx, call, hotline, caller_answered=answered)
                dispatcher.adopt(flow, [call.channel_id])
                for channel_id in gone:
                    flow.deliver(_destroyed(ctx.app_name, channel_id))
                taken.add(call.channel_id)
                result.adopted_waiting += 1
            else:
                await recovery.close_vanished(session, call, now)  # half-done action: apologise
                result.closed += 1
                if bridge is not None:  # e.g. the agent hung up while nobody watched
                    dead_bridges.append(bridge.id)
                if call.channel_id not in in_app:
                    # Held by a dead sibling's app (services/nodes.py): ours to apologise to.
                    leftover.append(call.channel_id)
        await recovery.release_stuck(session, ctx.node, keep_reserved)

    for channel_id in stale_legs:
        taken.add(channel_id)
        try:
            await ari.hangup(channel_id)
        except AriError as exc:
            log.warning("could not hang up callback leg %s: %s", channel_id, exc)
    for bridge_id in dead_bridges:
        try:
            await ari.destroy_bridge(bridge_id)
        except AriError as exc:
            log.warning("could not destroy bridge %s: %s", bridge_id, exc)
    await _follow(ctx, leftover, in_app)
    driven_elsewhere = set(elsewhere.values())
    for channel_id in sorted((in_app | set(leftover)) & set(channels)):
        if channel_id in taken or dispatcher.owner(channel_id) is not None:
            continue
        if channel_id in driven_elsewhere or channel_id[:36] in elsewhere:
            continue
        result.orphans.append(channel_id)
        dispatcher.adopt(OrphanFlow(ctx, channel_id, ()), [channel_id])
    ctx.agents_changed.notify()
    log.info(
        "reconciled: %d waiting and %d bridged call(s) adopted, %d closed, %d orphan"
        " channel(s), %d vanished, %d callback attempt(s) given back",
        result.adopted_waiting,
        result.adopted_bridged,
        result.closed,
        len(result.orphans),
        result.vanished,
        len(recovered),
    )
    return result


async def _follow(ctx: FlowContext, channel_ids: list[str], in_app: set[str]) -> list[str]:
    """Channels a dead sibling's Stasis app holds (another worker, services/nodes.py): our
    app subscribes to them to get their events; Asterisk lets any app control them.
    Returns those that are gone meanwhile (their ChannelDestroyed went to nobody)."""
    foreign = [channel_id for channel_id in channel_ids if channel_id not in in_app]
    gone = []
    for channel_id in foreign:
        try:
            await ctx.ari.subscribe(f"channel:{channel_id}")
        except (AriNotFound, AriUnprocessable):  # 404/422: no such channel (any more)
            gone.append(channel_id)
        except AriError as exc:
            log.warning("could not follow adopted channel %s: %s", channel_id, exc)
    return gone


def _destroyed(app: str, channel_id: str) -> ChannelDestroyed:
    return ChannelDestroyed(
        type="ChannelDestroyed",
        application=app,
        channel=Channel(id=channel_id, name="", state="Down"),
        cause=16,
        cause_txt="gone while the ARI link was down",
    )


class LostAsterisk:
    """Ends the flows of an Asterisk that died and does not come back (a cluster node).

    Without it a process whose Asterisk is gone keeps its flows waiting for events that
    never come: their agents stay reserved ("on a call") for every node, and queued callers
    keep reserving agents they cannot ring. Once the event stream has been down for
    ASTERISK_LOST_S and the REST API does not answer either, every channel a flow owns is
    told it was destroyed, as `reconcile` would on a reconnect to an Asterisk without them;
    the flows then close their records and release their agents as after any hangup.
    Wiring (app.py): `on_connect`/`on_disconnect` as stream hooks, `run()` as a task.
    """

    def __init__(
        self, ctx: FlowContext, dispatcher: Dispatcher, lost_after: float = ASTERISK_LOST_S
    ) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        self.lost_after = lost_after
        self.down_since: float | None = None
        self._told: set[str] = set()  # channels already declared destroyed

    async def on_connect(self) -> None:
        self.down_since = None
        self._told.clear()

    async def on_disconnect(self) -> None:
        self.down_since = asyncio.get_running_loop().time()

    async def check(self) -> int:
        """Declare the owned channels destroyed if the Asterisk is lost; how many were."""
        loop = asyncio.get_running_loop()
        if self.down_since is None or loop.time() - self.down_since < self.lost_after:
            return 0
        owned = [c for c in self.dispatcher.owned_channels() if c not in self._told]
        if not owned:
            return 0
        try:
            await self.ctx.ari.asterisk_info()
            return 0  # REST answers: Asterisk lives and its calls may too; wait for events
        except Exception as exc:
            log.warning(
                "Asterisk lost (%s, no events for %.0fs): ending %d call leg(s) it held",
                exc,
                loop.time() - self.down_since,
                len(owned),
            )
        for channel_id in owned:
            flow = self.dispatcher.owner(channel_id)
            if flow is not None:
                self._told.add(channel_id)
                flow.deliver(_destroyed(self.ctx.app_name, channel_id))
        return len(owned)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception as exc:
                log.warning("lost-Asterisk check failed: %s", exc)
