"""SipMessage.reveals: the privacy assertion of the e2e tests matches identities, not counters."""

from devenv.sipp import parse_message

UPDATE = (
    "UPDATE sip:030111222@127.0.0.50:43264 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:42202;rport;branch=z9hG4bKPj1002\r\n"
    'From: "Buergerbuero" <sip:500@127.0.0.1>;tag=1002-abc\r\n'
    "To: <sip:030111222@127.0.0.50>;tag=77\r\n"
    "Call-ID: 1002-xyz\r\n"
    "CSeq: 31002 UPDATE\r\n"
    'P-Asserted-Identity: "Buergerbuero" <sip:500@127.0.0.1>\r\n'
    "Content-Length:  0\r\n\r\n"
    "v=0\r\no=- 1002 1002 IN IP4 127.0.0.1\r\nm=audio 1002 RTP/AVP 0\r\n"
)


def test_counters_ids_and_ports_do_not_count() -> None:
    message = parse_message(UPDATE, "received", 0.0)
    assert not message.reveals("1002")
    assert message.reveals("500")
    assert message.reveals("Buergerbuero")


def test_an_identity_in_any_header_or_the_body_counts() -> None:
    leaky = UPDATE.replace("sip:500@", "sip:1002@", 1)
    assert parse_message(leaky, "received", 0.0).reveals("1002")
    with_name = UPDATE.replace("v=0\r\n", "v=0\r\ns=Agent 2\r\n")
    assert parse_message(with_name, "received", 0.0).reveals("Agent 2")
    assert not parse_message(with_name, "received", 0.0).reveals("Agent 20")
