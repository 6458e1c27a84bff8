"""LostAsterisk: a process whose Asterisk died (a cluster node) ends its flows, so their
agents are released for the other nodes; an Asterisk whose REST API still answers (only
the event socket is down) keeps its calls."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ari_app.ari.events import ChannelDestroyed
from ari_app.reconcile import LostAsterisk


class Flow:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def deliver(self, event: Any) -> None:
        self.events.append(event)


class Registry:
    def __init__(self, owners: dict[str, Flow]) -> None:
        self.owners = owners

    def owned_channels(self) -> list[str]:
        return list(self.owners)

    def owner(self, channel_id: str) -> Flow | None:
        return self.owners.get(channel_id)


class Ari:
    def __init__(self, alive: bool) -> None:
        self.alive = alive

    async def asterisk_info(self) -> object:
        if not self.alive:
            raise ConnectionRefusedError("connect call failed")
        return object()


def _watch(alive: bool, owners: dict[str, Flow]) -> LostAsterisk:
    ctx = SimpleNamespace(ari=Ari(alive), app_name="hotline")
    return LostAsterisk(ctx, Registry(owners), lost_after=0.0)  # type: ignore[arg-type]


async def test_connected_or_not_yet_lost_does_nothing() -> None:
    caller = Flow()
    watch = _watch(False, {"c1": caller})
    assert await watch.check() == 0  # never disconnected
    watch.lost_after = 60.0
    await watch.on_disconnect()
    assert await watch.check() == 0  # not long enough
    assert caller.events == []


async def test_a_dead_asterisk_ends_every_owned_leg_once() -> None:
    caller, agent_leg_owner = Flow(), Flow()
    watch = _watch(False, {"c1": caller, "a1": agent_leg_owner})
    await watch.on_disconnect()
    assert await watch.check() == 2
    assert [type(e) for e in caller.events] == [ChannelDestroyed]
    assert caller.events[0].channel.id == "c1"
    assert agent_leg_owner.events[0].channel.id == "a1"
    assert await watch.check() == 0, "each leg is told once"
    await watch.on_connect()  # Asterisk back: a later loss is told again
    await watch.on_disconnect()
    assert await watch.check() == 2


async def test_rest_still_answering_keeps_the_calls() -> None:
    caller = Flow()
    watch = _watch(True, {"c1": caller})
    await watch.on_disconnect()
    assert await watch.check() == 0
    assert caller.events == []
