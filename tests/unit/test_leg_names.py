"""A call's channels are named after it (services/routing.py): reconciliation reads the
agent back from the leg that sits in the call's bridge."""

from __future__ import annotations

import uuid

from ari_app.services import routing


def test_the_agent_is_read_back_from_the_leg() -> None:
    call = uuid.uuid4()
    assert routing.agent_of_leg(call, routing.agent_leg(call, 17, 3)) == 17
    assert routing.agent_of_leg(call, routing.agent_leg(call, 2, 0)) == 2


def test_other_channels_have_no_agent() -> None:
    call, other = uuid.uuid4(), uuid.uuid4()
    for channel in (
        f"{call}-fwd",
        routing.agent_leg(other, 17, 0),  # another call's leg
        f"{call}-a17",  # not a leg of ours
        f"{call}-ax-0",
        "caller",
        routing.bridge_of(call),
    ):
        assert routing.agent_of_leg(call, channel) is None, channel
