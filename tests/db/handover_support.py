"""Driving a real handover flow (flows/handover.py) from DB tests with the fake ARI: a
stand-in for the requester's feature-code call that asks for the handover."""

from __future__ import annotations

import enum
from typing import Any

from flow_fakes import FakeAriClient, channel, event

from ari_app.ari.events import StasisStart
from ari_app.dispatch import Dispatcher
from ari_app.flows import handover
from ari_app.flows.base import CallFlow
from ari_app.flows.handover import HandoverAction, HandoverResult

RESULTS: dict[str, HandoverResult] = {}


class R(enum.Enum):
    NEW = "new"


class Requester(CallFlow[R]):
    """Stands in for the feature-code flow: asks for a handover and keeps the result.
    args: agent id, action, timeout."""

    name = "requester"
    initial = R.NEW

    async def on_StasisStart(self, event: StasisStart) -> None:
        agent_id, action, timeout = self.args
        RESULTS[self.channel_id] = await handover.start_handover(
            self, int(agent_id), [], action=HandoverAction(action), timeout_s=float(timeout)
        )
        self.finish()


def ask(
    dispatcher: Dispatcher,
    action: str = "logout",
    timeout: float = 10,
    *,
    agent_id: int = 1,
    number: str = "1001",
) -> None:
    """The requester (agent `agent_id`, calling from `number`) asks for a handover."""
    dispatcher.on_event(
        event(
            "StasisStart",
            channel=channel("req", number),
            args=["requester", str(agent_id), action, str(timeout)],
        )
    )


async def result(ari: FakeAriClient) -> HandoverResult:
    await ari.wait_for(lambda: "req" in RESULTS, timeout=5)
    return RESULTS["req"]


def finished(leg: str, playback_id: str) -> Any:
    return event(
        "PlaybackFinished",
        playback={
            "id": playback_id,
            "media_uri": "x",
            "target_uri": f"channel:{leg}",
            "state": "done",
        },
    )
