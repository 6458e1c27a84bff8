"""The ARI event filter the app asks Asterisk for: every event type a flow, device presence
or the stream handles, and none of the per-call noise no code reads."""

from __future__ import annotations

from ari_app.app import handled_event_types


def test_handled_event_types_cover_the_handlers_and_leave_out_the_noise() -> None:
    wanted = handled_event_types()
    assert {
        "StasisStart",
        "StasisEnd",
        "ChannelDestroyed",
        "ChannelDtmfReceived",
        "PlaybackFinished",
        "RecordingFinished",
        "DeviceStateChanged",
        "ApplicationReplaced",
    } <= wanted
    assert not {"ChannelVarset", "ChannelDialplan", "Dial", "ChannelStateChange"} & wanted
