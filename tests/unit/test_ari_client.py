"""AriClient against the in-process fake ARI: what is sent, what comes back, error mapping."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from fake_ari import FakeAri

from ari_app.ari import (
    AriAuthError,
    AriBadRequest,
    AriClient,
    AriConflict,
    AriConnectionError,
    AriError,
    AriNotFound,
    AriServerError,
    AriUnprocessable,
    Channel,
    normalise_base_url,
)

PASSWORD = "s3cr3t-pw"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri(password=PASSWORD) as server:
        yield server


@pytest.fixture
async def ari(fake: FakeAri) -> AsyncIterator[AriClient]:
    async with fake.client(timeout=2.0) as client:
        yield client


# --- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "http://127.0.0.1:8088",
        "http://127.0.0.1:8088/",
        "http://127.0.0.1:8088/ari",
        "http://127.0.0.1:8088/ari/",
        " http://127.0.0.1:8088/ari?x=1 ",
    ],
)
def test_base_url_is_normalised(given: str) -> None:
    assert normalise_base_url(given) == "http://127.0.0.1:8088/ari"


def test_base_url_under_a_prefix_and_tls() -> None:
    assert normalise_base_url("https://pbx.example/asterisk") == "https://pbx.example/asterisk/ari"
    client = AriClient("https://pbx.example/asterisk/", "u", "p", "hotline")
    assert client.events_url == "wss://pbx.example/asterisk/ari/events"
    assert AriClient("http://h:8088", "u", "p", "a").events_url == "ws://h:8088/ari/events"


@pytest.mark.parametrize("bad", ["127.0.0.1:8088", "ftp://h/ari", "http://"])
def test_base_url_rejects_non_http(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_base_url(bad)


def test_credentials_in_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError) as info:
        AriClient("http://user:topsecret@127.0.0.1:8088", "u", "p", "hotline")
    assert "topsecret" not in str(info.value)


def test_repr_hides_the_password() -> None:
    client = AriClient("http://127.0.0.1:8088", "hotline", PASSWORD, "hotline")
    assert PASSWORD not in repr(client)
    assert "127.0.0.1:8088" in repr(client)


# --- channels -----------------------------------------------------------------------------------


async def test_originate_into_our_app_sends_params_and_variables(
    fake: FakeAri, ari: AriClient
) -> None:
    channel = await ari.originate(
        "PJSIP/1001",
        app_args=["agent", "call-7"],
        caller_id='"Hotline" <100>',
        timeout=20,
        variables={"CONNECTEDLINE(num)": "100", "HOTLINE": "yes"},
        channel_id="agent-leg-1",
        other_channel_id="agent-leg-1;2",
        originator="caller-1",
        formats=["ulaw", "alaw"],
    )
    assert isinstance(channel, Channel)
    assert channel.id == "agent-leg-1"
    assert channel.state == "Down"
    assert channel.caller.number == "100" and channel.caller.name == "Hotline"
    req = fake.last_request("POST", "/channels")
    assert req.query == {
        "endpoint": "PJSIP/1001",
        "app": "hotline",
        "appArgs": "agent,call-7",
        "callerId": '"Hotline" <100>',
        "timeout": "20",
        "channelId": "agent-leg-1",
        "otherChannelId": "agent-leg-1;2",
        "originator": "caller-1",
        "formats": "ulaw,alaw",
    }
    assert req.body == {"variables": {"CONNECTEDLINE(num)": "100", "HOTLINE": "yes"}}


async def test_originate_to_dialplan_sends_no_app(fake: FakeAri, ari: AriClient) -> None:
    await ari.originate("Local/100@hotline-inbound", context="hotline-inbound", extension="100")
    req = fake.last_request("POST", "/channels")
    assert "app" not in req.query
    assert req.query["context"] == "hotline-inbound"
    assert req.query["extension"] == "100"
    assert req.body is None


async def test_list_channels(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1", caller_number="0301234", caller_name="Citizen", exten="100")
    fake.add_channel("c2")
    channels = await ari.list_channels()
    assert [c.id for c in channels] == ["c1", "c2"]
    channel = channels[0]
    assert channel.caller.number == "0301234"
    assert channel.caller.name == "Citizen"
    assert channel.dialplan.exten == "100"
    assert channel.dialplan.priority == 1
    assert channel.creationtime
    with pytest.raises(AriNotFound) as info:
        await ari.answer("nope")
    assert info.value.status == 404
    assert "Channel not found" in str(info.value)


async def test_channel_operations_hit_the_right_resources(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1", state="Ring")
    await ari.answer("c1")
    assert fake.channels["c1"]["state"] == "Up"
    await ari.ring("c1")
    await ari.start_moh("c1", "default")
    await ari.stop_moh("c1")
    await ari.continue_in_dialplan("c1", context="hotline-fallback", extension="s", priority=1)
    seen = [(r.method, r.path, r.query) for r in fake.requests]
    assert seen == [
        ("POST", "/channels/c1/answer", {}),
        ("POST", "/channels/c1/ring", {}),
        ("POST", "/channels/c1/moh", {"mohClass": "default"}),
        ("DELETE", "/channels/c1/moh", {}),
        (
            "POST",
            "/channels/c1/continue",
            {"context": "hotline-fallback", "extension": "s", "priority": "1"},
        ),
    ]


async def test_set_variable(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1")
    await ari.set_variable("c1", "CALLERID(name)", "Hotline Bürgeramt")
    assert fake.last_request("POST", "/channels/c1/variable").query == {
        "variable": "CALLERID(name)",
        "value": "Hotline Bürgeramt",
    }


async def test_hangup_is_idempotent_by_default(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1")
    assert await ari.hangup("c1", "busy") is True
    assert fake.last_request("DELETE", "/channels/c1").query == {"reason": "busy"}
    assert "c1" not in fake.channels
    assert await ari.hangup("c1") is False  # 404: the expected race
    with pytest.raises(AriNotFound):
        await ari.hangup("c1", missing_ok=False)


async def test_play_sends_media_list_comma_separated(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1")
    playback = await ari.play(
        "c1", ["sound:hello-world", "sound:beep"], lang="de", playback_id="pb-1"
    )
    assert playback.id == "pb-1"
    assert playback.media_uri == "sound:hello-world"
    assert playback.next_media_uri == "sound:beep"
    assert playback.target_uri == "channel:c1"
    assert playback.channel_id == "c1" and playback.bridge_id is None
    assert playback.state == "queued"
    assert fake.last_request("POST", "/channels/c1/play").query == {
        "media": "sound:hello-world,sound:beep",
        "lang": "de",
        "playbackId": "pb-1",
    }
    await ari.play("c1", "sound:beep")
    assert fake.requests[-1].query["media"] == "sound:beep"


async def test_record_channel(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1")
    recording = await ari.record(
        "c1",
        "voicemail/100/msg-1",
        format="wav",
        max_duration_seconds=120,
        max_silence_seconds=5,
        if_exists="overwrite",
        beep=True,
        terminate_on="#",
    )
    assert recording.name == "voicemail/100/msg-1"
    assert recording.state == "queued"
    assert recording.channel_id == "c1"
    assert fake.last_request("POST", "/channels/c1/record").query == {
        "name": "voicemail/100/msg-1",
        "format": "wav",
        "maxDurationSeconds": "120",
        "maxSilenceSeconds": "5",
        "ifExists": "overwrite",
        "beep": "true",
        "terminateOn": "#",
    }
    with pytest.raises(AriConflict):
        await ari.record("c1", "voicemail/100/msg-1")


# --- bridges ------------------------------------------------------------------------------------


async def test_bridge_lifecycle(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("caller")
    fake.add_channel("agent")
    bridge = await ari.create_bridge("mixing", bridge_id="call-1", name="hotline 100")
    assert (bridge.id, bridge.bridge_type, bridge.name, bridge.channels) == (
        "call-1",
        "mixing",
        "hotline 100",
        (),
    )
    assert fake.last_request("POST", "/bridges").query == {
        "type": "mixing",
        "bridgeId": "call-1",
        "name": "hotline 100",
    }
    holding = await ari.create_bridge(["holding", "dtmf_events"])
    assert holding.bridge_type == "holding"
    assert fake.last_request("POST", "/bridges").query == {"type": "holding,dtmf_events"}

    await ari.add_channel("call-1", ["caller", "agent"], role="participant", mute=False)
    assert fake.last_request("POST", "/bridges/call-1/addChannel").query == {
        "channel": "caller,agent",
        "role": "participant",
        "mute": "false",
    }
    bridges = {b.id: b for b in await ari.list_bridges()}
    assert set(bridges) == {"call-1", holding.id}
    assert bridges["call-1"].channels == ("caller", "agent")
    assert await ari.destroy_bridge("call-1") is True
    assert await ari.destroy_bridge("call-1") is False
    with pytest.raises(AriNotFound):
        await ari.destroy_bridge("call-1", missing_ok=False)


async def test_add_unknown_channel_is_bad_request(fake: FakeAri, ari: AriClient) -> None:
    await ari.create_bridge(bridge_id="b1")
    with pytest.raises(AriBadRequest) as info:
        await ari.add_channel("b1", "ghost")
    assert info.value.status == 400


# --- playbacks and recordings -------------------------------------------------------------------


async def test_playbacks(fake: FakeAri, ari: AriClient) -> None:
    fake.add_channel("c1")
    await ari.play("c1", "sound:hello-world", playback_id="pb-1")
    assert await ari.stop_playback("pb-1") is True
    assert await ari.stop_playback("pb-1") is False
    with pytest.raises(AriNotFound):
        await ari.stop_playback("pb-1", missing_ok=False)


async def test_recordings(fake: FakeAri, ari: AriClient) -> None:
    fake.stored_recordings["vm/msg-1"] = {"name": "vm/msg-1", "format": "wav"}
    fake.recording_files["vm/msg-1"] = b"RIFF\x00\x01binary"
    assert [(r.name, r.format) for r in await ari.list_stored_recordings()] == [("vm/msg-1", "wav")]
    assert (await ari.get_stored_recording("vm/msg-1")).format == "wav"
    # A slash in a name is sent percent-encoded, as one path segment.
    assert fake.last_request("GET", "/recordings/stored/vm/msg-1").raw_path == (
        "/recordings/stored/vm%2Fmsg-1"
    )
    assert await ari.get_stored_recording_file("vm/msg-1") == b"RIFF\x00\x01binary"
    assert await ari.delete_stored_recording("vm/msg-1") is True
    with pytest.raises(AriNotFound):
        await ari.delete_stored_recording("vm/msg-1")
    assert await ari.delete_stored_recording("vm/msg-1", missing_ok=True) is False


# --- applications, device states, info --------------------------------------------------------


async def test_subscriptions_and_application(fake: FakeAri, ari: AriClient) -> None:
    fake.device_states["PJSIP/1001"] = "NOT_INUSE"
    app = await ari.subscribe(["deviceState:PJSIP/1001", "endpoint:PJSIP"])
    assert app.name == "hotline"
    assert app.device_names == ("PJSIP/1001",)
    assert app.endpoint_ids == ("PJSIP",)
    assert fake.last_request("POST", "/applications/hotline/subscription").query == {
        "eventSource": "deviceState:PJSIP/1001,endpoint:PJSIP"
    }
    app = await ari.unsubscribe("endpoint:PJSIP")
    assert app.endpoint_ids == ()
    assert fake.last_request("DELETE", "/applications/hotline/subscription").query == {
        "eventSource": "endpoint:PJSIP"
    }
    fake.add_channel("c1")
    assert (await ari.get_application()).channel_ids == ("c1",)
    with pytest.raises(AriUnprocessable) as info:
        await ari.subscribe("deviceState:PJSIP/9999")
    assert isinstance(info.value, AriConflict)  # 409 and 422: the same kind
    with pytest.raises(AriNotFound):
        await ari.get_application("other")


async def test_device_states_with_slash_in_name(fake: FakeAri, ari: AriClient) -> None:
    fake.device_states.update({"PJSIP/1001": "INUSE", "Stasis:agent-7": "NOT_INUSE"})
    state = await ari.get_device_state("PJSIP/1001")
    assert (state.name, state.state) == ("PJSIP/1001", "INUSE")
    assert fake.requests[-1].raw_path == "/deviceStates/PJSIP%2F1001"


async def test_asterisk_info(fake: FakeAri, ari: AriClient) -> None:
    info = await ari.asterisk_info()
    assert info.version.startswith("16.")
    assert info.entity_id
    assert info.default_language == "en"


# --- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, AriBadRequest),
        (401, AriAuthError),
        (404, AriNotFound),
        (409, AriConflict),
        (422, AriUnprocessable),
        (500, AriServerError),
        (503, AriServerError),
        (418, AriError),
    ],
)
async def test_http_errors_map_to_exceptions(
    fake: FakeAri, ari: AriClient, status: int, cls: type[AriError]
) -> None:
    fake.fail("GET", "/channels", status, "Asterisk says no")
    with pytest.raises(cls) as info:
        await ari.list_channels()
    err = info.value
    assert type(err) is cls
    assert err.status == status
    assert err.text == '{"message": "Asterisk says no"}'
    assert (err.method, err.path) == ("GET", "/channels")
    assert str(err) == f"GET /channels: HTTP {status}: Asterisk says no"


def test_conflict_kinds_share_a_base() -> None:
    assert issubclass(AriUnprocessable, AriConflict)
    assert issubclass(AriConflict, AriError)
    assert not issubclass(AriNotFound, AriConflict)


async def test_non_json_error_text_is_kept(fake: FakeAri, ari: AriClient) -> None:
    fake.fail("POST", "/bridges", 500, body="Internal Server Error")
    with pytest.raises(AriServerError) as info:
        await ari.create_bridge()
    assert info.value.text == "Internal Server Error"
    assert "Internal Server Error" in str(info.value)


async def test_malformed_answer_is_an_ari_error(fake: FakeAri, ari: AriClient) -> None:
    fake.respond("GET", "/deviceStates/PJSIP/1001", {"name": 12, "state": "INUSE"})
    with pytest.raises(AriError, match="unexpected answer"):
        await ari.get_device_state("PJSIP/1001")
    fake.respond("GET", "/channels", {"not": "a list"})
    with pytest.raises(AriError, match="unexpected answer"):
        await ari.list_channels()
    fake.respond("GET", "/bridges", "[not json", status=200)
    with pytest.raises(AriError, match="invalid JSON"):
        await ari.list_bridges()


async def test_wrong_password_is_auth_error_without_the_secret(fake: FakeAri) -> None:
    async with fake.client(password="wrong-" + PASSWORD) as client:
        with pytest.raises(AriAuthError) as info:
            await client.list_channels()
    assert info.value.status == 401
    assert PASSWORD not in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_refused() -> None:
    async with AriClient(
        f"http://127.0.0.1:{_closed_port()}", "hotline", PASSWORD, "hotline", timeout=2
    ) as client:
        with pytest.raises(AriConnectionError) as info:
            await client.asterisk_info()
    assert info.value.status is None
    assert "GET /asterisk/info" in str(info.value)
    assert PASSWORD not in str(info.value)


async def test_timeout_is_a_connection_error(fake: FakeAri) -> None:
    fake.hang("POST", "/channels/c1/answer")
    fake.add_channel("c1")
    async with fake.client(timeout=0.2) as client:
        with pytest.raises(AriConnectionError, match=r"no answer within 0\.2s"):
            await client.answer("c1")
        # The client stays usable after a timeout.
        assert [c.id for c in await client.list_channels()] == ["c1"]


async def test_per_call_timeout_for_recording_files(fake: FakeAri, ari: AriClient) -> None:
    fake.stored_recordings["big"] = {"name": "big", "format": "wav"}
    fake.hang("GET", "/recordings/stored/big/file")
    with pytest.raises(AriConnectionError, match=r"no answer within 0\.1s"):
        await ari.get_stored_recording_file("big", timeout=0.1)


async def test_closed_client_refuses_calls(fake: FakeAri) -> None:
    client = fake.client()
    await client.close()
    with pytest.raises(AriConnectionError, match="closed"):
        await client.list_channels()


async def test_external_session_is_not_closed(fake: FakeAri) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with fake.client(session=session) as client:
            assert await client.list_channels() == []
        assert not session.closed
        # Basic auth is sent per request, so a bare session works.
        assert fake.requests[-1].path == "/channels"


async def test_no_secret_in_logs(fake: FakeAri, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_channel("c1")
    async with fake.client() as client:
        await client.answer("c1")
        with pytest.raises(AriNotFound):
            await client.answer("zz")
        stream = client.events(lambda e: None)
        stream.start()
        await stream.wait_connected(5)
        await stream.close()
    async with fake.client(password="bad") as client:
        with pytest.raises(AriAuthError):
            await client.list_channels()
    assert caplog.records
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
    assert all(r.query.get("api_key") is None for r in fake.requests)


async def test_requests_beyond_the_connection_cap_wait_for_a_free_connection(
    fake: FakeAri,
) -> None:
    """Asterisk closes HTTP connections beyond its session limit unanswered: a burst of
    requests opens at most `max_connections` of them, the rest wait and then succeed."""
    release, three, more = asyncio.Event(), asyncio.Event(), asyncio.Event()
    in_flight = 0

    async def hold(_: object) -> None:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            three.set()
        elif in_flight > 3:
            more.set()
        await release.wait()
        in_flight -= 1

    fake.on_request = hold
    async with fake.client(timeout=5.0, max_connections=3) as ari:
        burst = [asyncio.create_task(ari.asterisk_info()) for _ in range(12)]
        await asyncio.wait_for(three.wait(), 2.0)
        # Without the cap the other nine reach the server at once (a new connection each).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(more.wait(), 0.5)
        release.set()
        infos = await asyncio.gather(*burst)
    assert len(infos) == 12


def test_too_few_connections_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        AriClient("http://127.0.0.1:8088", "u", "p", "app", max_connections=1)
