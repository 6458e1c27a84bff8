"""Bounds on how long a caller can hold the PBX (finding 7 of issue 13), with the fake ARI
and the real Postgres: a prompt ends after a total time however keys keep coming, and a
full voicemail box takes no more messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_fakes import FakeAriClient, channel, event, fake_dispatcher, playback_finished
from phone_support import Caller, Sessions, phone_world, seed
from sqlalchemy import select

from ari_app.db.models import Call, Outcome, Voicemail
from ari_app.dispatch import Dispatcher
from ari_app.flows import prompts
from ari_app.flows.inbound import GOODBYE_SOUND, MAILBOX_FULL_SOUND, InboundFlow
from ari_app.services import admin

pytestmark = pytest.mark.db


@pytest.fixture
async def world(sessions: Sessions) -> AsyncIterator[tuple[FakeAriClient, Dispatcher]]:
    async with phone_world(sessions) as w:
        yield w


@pytest.mark.parametrize("key", ["1", "*"])  # digits (then too many), or `*` (clears)
async def test_a_prompt_ends_however_keys_keep_coming(
    sessions: Sessions, world: Any, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setattr(prompts, "ANSWER_WITHIN_S", 1.0)
    await seed(sessions)
    ari, dispatcher = world
    caller = Caller(ari, dispatcher, name="PJSIP/trunk-00000001", number="+4915112345")
    caller.start("service", "0800")
    assert await caller.heard() == ["sound:agent-user"]
    started = time.monotonic()
    # a key every 0.2 s, well inside the digit timeout (5 s), for as long as it takes
    pressing = asyncio.create_task(_keep_pressing(caller, key))
    try:
        # the first try times out: "please try again", the question again
        assert (await caller.heard())[0] == "sound:please-try-again"
        # the second one too: goodbye, hung up
        assert await caller.heard() == list(prompts.GOODBYE)
        await caller.done()
    finally:
        pressing.cancel()
    assert time.monotonic() - started < 6.0  # two tries of about 1 s, not forever


async def _keep_pressing(caller: Caller, key: str) -> None:
    while True:
        caller.press(key)
        await asyncio.sleep(0.2)


async def test_a_full_mailbox_takes_no_new_message(sessions: Sessions) -> None:
    ari, dispatcher = fake_dispatcher(sessions, {"inbound": InboundFlow})
    try:
        async with sessions() as session, session.begin():
            hotline = await admin.create_hotline(session, "500", "Buergerbuero", voicemail_quota=2)
            for i in range(2):
                session.add(Voicemail(hotline_id=hotline.id, recording_name=f"old-{i}"))
        dispatcher.on_event(
            event("StasisStart", channel=channel("caller"), args=["inbound", "500"])
        )
        for count, sound in enumerate((MAILBOX_FULL_SOUND, GOODBYE_SOUND), 1):
            play = await ari.wait_command("play", count)  # "mailbox full", the usual end
            assert play.args[1] == sound
            dispatcher.on_event(playback_finished(play.kwargs["playback_id"]))
        await ari.wait_for(lambda: any(c.args[0] == "caller" for c in ari.called("hangup")))
        assert ari.called("record") == []
        async with sessions() as session:
            kept = list(await session.scalars(select(Voicemail.recording_name)))
            call = await session.scalar(select(Call))
        assert sorted(kept) == ["old-0", "old-1"]  # the oldest are kept
        assert call is not None and call.outcome is Outcome.NO_AGENTS
    finally:
        await dispatcher.shutdown(0.1)
