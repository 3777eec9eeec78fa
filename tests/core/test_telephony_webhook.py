"""Twilio's webhook signature and the TwiML that connects a call to a Media Stream."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from voxpipe.errors import WebhookRejected, WebhookRejectReason
from voxpipe.telephony.webhook import (
    connect_stream_twiml,
    twilio_signature,
    verify_twilio_signature,
)

# Twilio's worked example ("Validating requests", its security documentation).
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
DOCUMENTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_the_documented_example_signs_as_twilio_says() -> None:
    assert twilio_signature(TOKEN, URL, PARAMS) == DOCUMENTED
    assert twilio_signature(TOKEN, URL, reversed(PARAMS)) == DOCUMENTED  # sorted by name
    verify_twilio_signature(TOKEN, URL, PARAMS, DOCUMENTED)


@pytest.mark.parametrize(
    ("url", "params", "signature", "reason"),
    [
        (URL, PARAMS, None, WebhookRejectReason.MISSING),
        (URL, PARAMS, "", WebhookRejectReason.MISSING),
        (URL, PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ", WebhookRejectReason.INVALID),
        (URL, [*PARAMS[:-1], ("To", "+18005550000")], DOCUMENTED, WebhookRejectReason.INVALID),
        (
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            PARAMS,
            DOCUMENTED,
            WebhookRejectReason.INVALID,
        ),
        (
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            PARAMS,
            DOCUMENTED,
            WebhookRejectReason.INVALID,
        ),
    ],
)
def test_a_request_twilio_did_not_sign_is_rejected(
    url: str, params: list[tuple[str, str]], signature: str | None, reason: WebhookRejectReason
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_twilio_signature(TOKEN, url, params, signature)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("signed_url", "seen_url"),
    [
        ("https://mycompany.com:443/voice", "https://mycompany.com/voice"),
        ("https://mycompany.com/voice", "https://mycompany.com:443/voice"),
        ("http://127.0.0.1:8080/voice", "http://127.0.0.1:8080/voice"),
    ],
)
def test_the_default_port_may_be_written_out_or_left_off(signed_url: str, seen_url: str) -> None:
    signature = twilio_signature(TOKEN, signed_url, PARAMS)
    verify_twilio_signature(TOKEN, seen_url, PARAMS, signature)


def test_the_twiml_connects_a_bidirectional_stream_with_its_parameters() -> None:
    twiml = connect_stream_twiml("wss://example.com/twilio", {"token": 'a"b<c>&d'})
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://example.com/twilio"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters == {"token": 'a"b<c>&d'}  # escaped in the XML, intact once read
