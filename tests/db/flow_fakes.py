"""A hand-written fake ARI client for flow tests: records every command, answers with
plausible models, and lets the test push events through the real dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ari_app.ari.events import Event, parse_event
from ari_app.ari.models import (
    Application,
    Bridge,
    Channel,
    DeviceState,
    LiveRecording,
    Playback,
    StoredRecording,
)
from ari_app.config import load_settings
from ari_app.dispatch import Dispatcher
from ari_app.flows.base import FlowContext


@dataclass
class Command:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FakeAriClient:
    commands: list[Command] = field(default_factory=list)
    device_states: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # what Asterisk still has, for reconciliation
    channels: list[Channel] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)

    def _note(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        self.commands.append(Command(name, args, kwargs))
        self.changed.set()

    def called(self, name: str) -> list[Command]:
        return [c for c in self.commands if c.name == name]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async def loop() -> None:
            # Woken by every command; the short poll covers state outside this fake.
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)

        await asyncio.wait_for(loop(), timeout)

    async def wait_command(self, name: str, count: int = 1, timeout: float = 3.0) -> Command:
        await self.wait_for(lambda: len(self.called(name)) >= count, timeout)
        return self.called(name)[count - 1]

    # --- the AriClient methods the flows use ---------------------------------------
    async def answer(self, channel_id: str) -> None:
        self._note("answer", channel_id)

    async def hangup(self, channel_id: str, reason: str | None = None, **_: Any) -> bool:
        self._note("hangup", channel_id)
        return True

    async def play(self, channel_id: str, media: str | Sequence[str], **kw: Any) -> Playback:
        self._note("play", channel_id, media, **kw)
        return Playback(
            kw.get("playback_id") or "pb", str(media), f"channel:{channel_id}", "queued"
        )

    async def record(self, channel_id: str, name: str, **kw: Any) -> LiveRecording:
        self._note("record", channel_id, name, **kw)
        return LiveRecording(name, "wav", "recording", f"channel:{channel_id}")

    async def originate(self, endpoint: str, **kw: Any) -> Channel:
        self._note("originate", endpoint, **kw)
        return Channel(kw.get("channel_id") or "leg", endpoint, "Down")

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        self._note("set_variable", channel_id, variable, value)

    async def continue_in_dialplan(self, channel_id: str, **kw: Any) -> None:
        self._note("continue_in_dialplan", channel_id)

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        self._note("start_moh", channel_id)

    async def stop_moh(self, channel_id: str) -> None:
        self._note("stop_moh", channel_id)

    async def stop_playback(self, playback_id: str, **_: Any) -> bool:
        self._note("stop_playback", playback_id)
        return True

    async def create_bridge(self, bridge_type: Any = "mixing", **kw: Any) -> Any:
        self._note("create_bridge", bridge_type, **kw)

    async def add_channel(self, bridge_id: str, channel: Any, **kw: Any) -> None:
        self._note("add_channel", bridge_id, channel)

    async def destroy_bridge(self, bridge_id: str, **_: Any) -> bool:
        self._note("destroy_bridge", bridge_id)
        return True

    async def list_channels(self) -> list[Channel]:
        return list(self.channels)

    async def list_bridges(self) -> list[Bridge]:
        return list(self.bridges)

    async def get_application(self, name: str | None = None) -> Application:
        return Application("hotline", channel_ids=tuple(c.id for c in self.channels))

    async def get_device_state(self, name: str) -> DeviceState:
        return DeviceState(name, self.device_states.get(name, "NOT_INUSE"))

    async def get_stored_recording(self, name: str) -> StoredRecording:
        return StoredRecording(name, "wav")

    async def delete_stored_recording(self, name: str, **_: Any) -> bool:
        self._note("delete_stored_recording", name)
        return True


def event(event_type: str, **fields: Any) -> Event:
    parsed = parse_event({"type": event_type, "application": "hotline", **fields})
    assert parsed is not None, (event_type, fields)
    return parsed


def playback_finished(playback_id: str, channel_id: str = "caller", media_uri: str = "x") -> Event:
    """Asterisk's word that a playback on `channel_id` has ended."""
    return event(
        "PlaybackFinished",
        playback={
            "id": playback_id,
            "media_uri": media_uri,
            "target_uri": f"channel:{channel_id}",
            "state": "done",
        },
    )


def channel(channel_id: str, number: str = "030123") -> dict[str, Any]:
    return {
        "id": channel_id,
        "name": f"PJSIP/x-{channel_id}",
        "state": "Up",
        "caller": {"number": number, "name": ""},
        "connected": {"number": "", "name": ""},
        "dialplan": {"context": "hotline-inbound", "exten": "500", "priority": 1},
        "creationtime": "2026-11-25T10:00:00.000+0000",
        "language": "en",
    }


def fake_dispatcher(
    sessions: Any, flows: Mapping[str, Any], **env: str
) -> tuple[FakeAriClient, Dispatcher]:
    """A real Dispatcher running `flows` against this fake ARI and the real database;
    `env` adds HOTLINE_* settings."""
    ari = FakeAriClient()
    settings = load_settings(
        {
            "HOTLINE_DATABASE_URL": "postgresql://x@localhost/x",
            "HOTLINE_EXTERNAL_DIAL": "PJSIP/{number}@trunk",
            # The flow tests predate languages and assert English core sounds.
            "HOTLINE_LANGUAGE": "en",
            **env,
        },
        need_ari=False,
    )
    ctx = FlowContext(
        ari=ari,  # type: ignore[arg-type]
        settings=settings,
        sessions=sessions,
    )
    return ari, Dispatcher(dict(flows), ctx)
