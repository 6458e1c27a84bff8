"""Routes ARI events to call tasks: StasisStart by flow name (args[0]) to a new flow task,
every later event by channel id to the task that owns the channel (DESIGN.md, conv. 1)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ari_app.ari.errors import AriError
from ari_app.ari.events import Event, StasisStart
from ari_app.flows.base import CallFlow, FlowContext, FlowFactory, Stop

log = logging.getLogger(__name__)

# args[0] of the legs flows originate into our app (flows/inbound/, handover.py,
# escalation.py, callback.py). Such a leg entering Stasis after its call is over (answered
# just as the call ended) has no dialplan to go back to, and must not run the admin's
# default context with an agent on the line: it is hung up.
ORIGINATED_LEGS = frozenset(
    {"agentleg", "forwardleg", "handoverleg", "escalationleg", "callbackleg"}
)


class Dispatcher:
    """Starts flows from `flows` with `ctx`; routes events by `ctx.registry` (which flow
    owns which channel)."""

    def __init__(self, flows: Mapping[str, FlowFactory], ctx: FlowContext) -> None:
        self._flows = dict(flows)
        self.ctx = ctx
        self.channels = ctx.registry
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True

    # -- channel owners (see flows/base.ChannelRegistry) ----------------------------
    def claim(self, channel_id: str, flow: CallFlow[Any]) -> None:
        self.channels.claim(channel_id, flow)

    def owner(self, channel_id: str) -> CallFlow[Any] | None:
        return self.channels.owner(channel_id)

    def owned_channels(self) -> list[str]:
        return self.channels.channels()

    def adopt(self, flow: CallFlow[Any], channel_ids: list[str]) -> None:
        """Run a flow for channels that entered Stasis under a previous process."""
        for channel_id in channel_ids:
            self.claim(channel_id, flow)
        task = asyncio.create_task(self._run(flow), name=f"call-{flow.channel_id}")
        self._keep(task)

    # -- routing --------------------------------------------------------------------
    @property
    def active_calls(self) -> int:
        return len(self._tasks)

    def on_event(self, event: Event) -> None:
        if isinstance(event, StasisStart) and self.channels.owner(event.channel.id) is None:
            self._start_flow(event)
            return
        delivered: set[int] = set()
        for channel_id in event.channel_ids:
            owner = self.channels.owner(channel_id)
            if owner is not None and id(owner) not in delivered:
                delivered.add(id(owner))
                owner.deliver(event)
        if not delivered:
            log.debug("event %s for no known call (ignored)", type(event).__name__)

    def _start_flow(self, event: StasisStart) -> None:
        channel = event.channel
        flow_name = event.args[0] if event.args else ""
        if flow_name in ORIGINATED_LEGS:
            log.info("call=%s %s of a call that is over: hung up", channel.id, flow_name)
            self._keep(asyncio.create_task(self._hang_up(channel.id)))
            return
        factory = self._flows.get(flow_name)
        if factory is None or not self.accepting:
            why = "unknown flow" if factory is None else "shutting down"
            log.warning("call=%s flow=%r refused: %s", channel.id, flow_name, why)
            # Back to the dialplan: its fallback (announcement, fallback number) takes over.
            task = asyncio.create_task(self._refuse(channel.id))
            self._keep(task)
            return
        flow = factory(self.ctx, channel.id, tuple(event.args[1:]))
        self.claim(channel.id, flow)
        flow.deliver(event)
        task = asyncio.create_task(self._run(flow), name=f"call-{channel.id}")
        self._keep(task)

    async def _refuse(self, channel_id: str) -> None:
        try:
            await self.ctx.ari.set_variable(channel_id, "HOTLINE_FALLBACK", "1")
            await self.ctx.ari.continue_in_dialplan(channel_id)
        except AriError as exc:  # gone meanwhile, or Asterisk unreachable
            log.warning("call=%s could not return the channel to the dialplan: %s", channel_id, exc)
        except Exception:
            log.exception("call=%s could not return the channel to the dialplan", channel_id)

    async def _hang_up(self, channel_id: str) -> None:
        try:
            await self.ctx.ari.hangup(channel_id)
        except AriError as exc:
            log.warning("call=%s could not hang up: %s", channel_id, exc)

    async def _run(self, flow: CallFlow[Any]) -> None:
        try:
            await flow.run()
        finally:
            self.channels.release_flow(flow)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting calls; let running flows finish for up to grace_s, then stop them."""
        self.accepting = False
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for flow in self.channels.flows():
            flow.deliver(Stop("shutdown"))
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.ctx.pending.close()
