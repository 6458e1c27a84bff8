"""Caller IDs and dialled numbers as an attacker sends them (finding 3 of issue 13), through
the inbound flow with the fake ARI and the real Postgres: a caller ID made to become a
media list, caller IDs and dialled numbers longer than their columns. None of them may
send the caller to the dialplan's fallback (which skips opening hours and the queue and
leaves no call record)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import Call, Outcome, Voicemail
from ari_app.dispatch import Dispatcher
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.mailbox import header_media
from ari_app.services import admin, agents, mailbox

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]

MEDIA_CALLER = "0301,sound:vm-nomore"
LONG = "4" * 100


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow})
    yield ari, dispatcher
    await dispatcher.shutdown(0.1)


async def _hotline(sessions: Sessions, *, logged_in: bool) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Buergerbuero")
        agent = await admin.create_agent(session, "101", "Ada", device="PJSIP/1001")
        await admin.add_member(session, hotline, agent)
        if logged_in:
            await agents.login(session, agent, target=None, path="cli", actor="t")


def _start(dispatcher: Dispatcher, caller: str, number: str = "500") -> None:
    dispatcher.on_event(
        event("StasisStart", channel=channel("caller", caller), args=["inbound", number])
    )


async def _the_call(sessions: Sessions) -> Call:
    async with sessions() as session:
        (call,) = (await session.scalars(select(Call))).all()
    return call


def _finished(dispatcher: Dispatcher, kind: str, what: dict[str, Any]) -> None:
    dispatcher.on_event(event(kind, **what))


async def test_a_media_list_as_caller_id_is_never_played(sessions: Sessions, world: Any) -> None:
    ari, dispatcher = world
    await _hotline(sessions, logged_in=False)
    _start(dispatcher, MEDIA_CALLER)
    play = await ari.wait_command("play")
    _finished(
        dispatcher,
        "PlaybackFinished",
        {
            "playback": {
                "id": play.kwargs["playback_id"],
                "media_uri": "x",
                "target_uri": "channel:caller",
                "state": "done",
            }
        },
    )
    record = await ari.wait_command("record")
    _finished(
        dispatcher,
        "RecordingFinished",
        {
            "recording": {
                "name": record.args[1],
                "format": "wav",
                "state": "done",
                "target_uri": "channel:caller",
                "duration": 4,
                "talking_duration": 3,
            }
        },
    )
    await ari.wait_command("play", 2)
    async with sessions() as session:
        vm = await session.scalar(select(Voicemail))
        assert vm is not None and vm.caller_number == "anonymous"
        (message,) = await mailbox.open_messages(session, [vm.hotline_id])
    # what an agent listening to the mailbox hears about the caller
    media = header_media(1, message, with_hotline=False, now=datetime.now(UTC))
    assert "sound:vm-unknown-caller" in media
    # nor from a row stored before the edge checked caller IDs
    old_row = replace(message, caller_number=MEDIA_CALLER)
    media += header_media(1, old_row, with_hotline=False, now=datetime.now(UTC))
    assert not [m for m in media if "vm-nomore" in m or "0301" in m]
    assert (await _the_call(sessions)).caller_number == "anonymous"
    assert ari.called("continue_in_dialplan") == []


async def test_an_over_long_caller_id_still_reaches_the_queue(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, logged_in=True)
    _start(dispatcher, LONG)
    originate = await ari.wait_command("originate")  # queued, an agent rung
    assert originate.args[0] == "PJSIP/1001" and LONG not in originate.kwargs["caller_id"]
    call = await _the_call(sessions)
    assert call.caller_number == "anonymous" and call.hotline_id is not None
    assert ari.called("continue_in_dialplan") == []
    dispatcher.on_event(event("StasisEnd", channel=channel("caller")))
    await ari.wait_for(lambda: dispatcher.active_calls == 0)
    assert (await _the_call(sessions)).outcome is Outcome.ABANDONED


async def test_an_over_long_dialled_number_is_refused_cleanly(
    sessions: Sessions, world: Any
) -> None:
    ari, dispatcher = world
    await _hotline(sessions, logged_in=True)
    _start(dispatcher, "030123", number="5" * 200)
    play = await ari.wait_command("play")
    assert play.args[1] == "sound:ss-noservice"  # "this number is not in service"
    call = await _the_call(sessions)
    assert call.outcome is Outcome.REJECTED_UNKNOWN_NUMBER and call.hotline_id is None
    assert call.dialled_number == "5" * 64
    assert ari.called("continue_in_dialplan") == [] and ari.called("originate") == []
