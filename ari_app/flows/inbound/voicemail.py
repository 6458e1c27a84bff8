"""The voicemail deposit of an inbound call: after the greeting the caller's message is
recorded, stored (a notification follows, services/voicemail.py), or discarded when
nothing was said."""

from __future__ import annotations

import logging

from ari_app.ari.errors import AriError
from ari_app.ari.events import (
    RecordingFailed,
    RecordingFinished,
)
from ari_app.domain.enums import Outcome
from ari_app.flows.base import Timer
from ari_app.flows.inbound.call import (
    InboundCall,
    InboundState,
    _now,
)
from ari_app.services import calls, voicemail

log = logging.getLogger(__name__)

GOODBYE_SOUND = "sound:auth-thankyou"


class VoicemailPhase(InboundCall):
    async def _start_recording(self) -> None:
        assert self.hotline is not None and self.call_id is not None
        self.recording = f"hotline-vm-{self.call_id}"
        try:
            await self.ari.record(
                self.channel_id,
                self.recording,
                format="wav",
                max_duration_seconds=self.hotline.voicemail_max_s,
                max_silence_seconds=10,
                beep=True,
                terminate_on="#",
                if_exists="overwrite",
            )
        except AriError as exc:
            log.warning("call=%s recording failed: %s", self.channel_id, exc)
            await self._close(self.reason)
            self.finish()
            return
        self._transition(InboundState.RECORDING, "greeting played")

    async def on_RecordingFinished(self, event: RecordingFinished) -> None:
        await self._recording_done(event.recording.duration, event.recording.talking_duration)

    async def on_RecordingFailed(self, event: RecordingFailed) -> None:
        await self._recording_done(0, 0)

    async def on_timer_recording_lost(self, _: Timer) -> None:
        await self._recording_done(None, None)

    async def _recording_done(self, duration: int | None, talking: int | None) -> None:
        if self.state is not InboundState.RECORDING or self.recording is None:
            return
        assert self.hotline is not None and self.call_id is not None
        self.cancel_timer("recording_lost")
        if duration is None:  # no event: trust what Asterisk stored
            try:
                await self.ari.get_stored_recording(self.recording)
                duration = 1
            except AriError:
                duration = 0
        # Nothing is kept when the caller hung up before saying anything.
        spoke = (talking if talking is not None else duration or 0) > 0 and (duration or 0) > 0
        if spoke:
            now = _now()
            async with self.ctx.sessions() as session, session.begin():
                await voicemail.store_voicemail(
                    session,
                    self.hotline,
                    call_id=self.call_id,
                    caller_number=self.caller_number or None,
                    duration_s=duration or 0,
                    recording_name=self.recording,
                    now=now,
                    node=self.ctx.node,
                    link_url=self.ctx.settings.vm_link_url,
                )
                await calls.close_call(session, self.call_id, Outcome.VOICEMAIL, now=now)
            self.outcome_stored = True
            self._count(Outcome.VOICEMAIL)
        else:
            await self.ari.delete_stored_recording(self.recording, missing_ok=True)
            await self._close(self.reason)
        if self.caller_gone:
            self._transition(InboundState.DONE, "recording finished")
            self.finish()
        else:
            await self._announce_and_hang_up(GOODBYE_SOUND, "recording finished")
