"""Telnyx's ed25519 and Plivo's V3 webhook signatures, replay protection, and the XML answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from voxpipe.errors import ConfigError, WebhookRejected, WebhookRejectReason
from voxpipe.telephony.answers import (
    connect_stream_texml,
    from_plivo_header_value,
    plivo_header_value,
    plivo_stream_xml,
)
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.replay import ReplayGuard
from voxpipe.telephony.signatures import (
    plivo_signature,
    telnyx_public_key,
    telnyx_signature,
    verify_plivo_signature,
    verify_telnyx_signature,
)

_R = WebhookRejectReason
KEY = Ed25519PrivateKey.generate()
PUBLIC_TEXT = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
PUBLIC = telnyx_public_key(PUBLIC_TEXT.decode())
BODY = b"CallSid=v3%3Aabc&From=%2B15550001"
NOW = 1_700_000_000.0


def test_telnyx_signs_the_timestamp_and_the_raw_body() -> None:
    signature = telnyx_signature(KEY, BODY, str(int(NOW)))
    # ed25519 over "<timestamp>|<body>", as Telnyx's libraries verify it.
    KEY.public_key().verify(base64.b64decode(signature), f"{int(NOW)}|".encode() + BODY)
    verify_telnyx_signature(PUBLIC, BODY, signature, str(int(NOW)), now_s=NOW + 299)


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "now_s", "reason"),
    [
        (BODY, None, str(int(NOW)), NOW, _R.MISSING),
        (BODY, "sig", None, NOW, _R.MISSING),
        (BODY + b"&To=1", "good", str(int(NOW)), NOW, _R.INVALID),  # another body
        (BODY, "good", str(int(NOW) + 1), NOW, _R.INVALID),  # another timestamp
        (BODY, "other-key", str(int(NOW)), NOW, _R.INVALID),
        (BODY, "%%%", str(int(NOW)), NOW, _R.INVALID),
        (BODY, "good", str(int(NOW)), NOW + 301, _R.STALE),  # five minutes old
        (BODY, "good", str(int(NOW)), NOW - 301, _R.STALE),  # from the future
    ],
)
def test_a_request_telnyx_did_not_sign_now_is_rejected(
    body: bytes, signature: str | None, timestamp: str | None, now_s: float, reason: _R
) -> None:
    if signature == "good":
        signature = telnyx_signature(KEY, BODY, str(int(NOW)))
    elif signature == "other-key":
        signature = telnyx_signature(Ed25519PrivateKey.generate(), BODY, str(int(NOW)))
    with pytest.raises(WebhookRejected) as caught:
        verify_telnyx_signature(PUBLIC, body, signature, timestamp, now_s=now_s)
    assert caught.value.reason is reason


def test_a_public_key_that_is_not_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        telnyx_public_key("not base64!")
    with pytest.raises(ConfigError):
        telnyx_public_key(base64.b64encode(b"short").decode())


TOKEN = "MAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
FORM = [("From", "+15550001"), ("CallUUID", "abc-123"), ("To", "+15550002")]


def _hmac(text: str) -> str:
    digest = hmac.new(TOKEN.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("method", "url", "params", "signed"),
    [
        # A POST: the URL, "?", each parameter sorted by name as name then value, ".", the nonce.
        (
            "POST",
            "https://voice.example.com/plivo/voice",
            FORM,
            "https://voice.example.com/plivo/voice?CallUUIDabc-123From+15550001To+15550002.n0nce",
        ),
        # With a query: "?query", then ".", then the parameters.
        (
            "POST",
            "https://voice.example.com/plivo/voice?b=2&a=1",
            FORM[:1],
            "https://voice.example.com/plivo/voice?a=1&b=2.From+15550001.n0nce",
        ),
        # A POST without parameters signs the URL alone; a GET its sorted query.
        ("POST", "https://voice.example.com/v", [], "https://voice.example.com/v.n0nce"),
        (
            "GET",
            "https://voice.example.com/v?z=1&a=2",
            [],
            "https://voice.example.com/v?a=2&z=1.n0nce",
        ),
    ],
)
def test_plivo_v3_signs_as_plivos_library_does(
    method: str, url: str, params: list[tuple[str, str]], signed: str
) -> None:
    assert plivo_signature(TOKEN, method, url, params, "n0nce") == _hmac(signed)
    verify_plivo_signature(TOKEN, method, url, params, "n0nce", _hmac(signed))


def test_any_one_of_plivos_signatures_is_enough() -> None:
    good = plivo_signature(TOKEN, "POST", "https://h/v", FORM, "n")
    verify_plivo_signature(TOKEN, "POST", "https://h/v", FORM, "n", f"c29tZXRoaW5n,{good}")


@pytest.mark.parametrize(
    ("nonce", "signature", "params", "reason"),
    [
        ("n", None, FORM, _R.MISSING),
        (None, "good", FORM, _R.MISSING),
        ("other-nonce", "good", FORM, _R.INVALID),
        ("n", "good", [*FORM, ("Digits", "1")], _R.INVALID),
        ("n", "forged", FORM, _R.INVALID),
    ],
)
def test_a_request_plivo_did_not_sign_is_rejected(
    nonce: str | None, signature: str | None, params: list[tuple[str, str]], reason: _R
) -> None:
    if signature == "good":
        signature = plivo_signature(TOKEN, "POST", "https://h/v", FORM, "n")
    elif signature == "forged":
        signature = plivo_signature("another token", "POST", "https://h/v", FORM, "n")
    with pytest.raises(WebhookRejected) as caught:
        verify_plivo_signature(TOKEN, "POST", "https://h/v", params, nonce, signature)
    assert caught.value.reason is reason


def test_a_signed_request_is_answered_once_within_the_window() -> None:
    guard = ReplayGuard(window_s=60)
    guard.admit("sig-1", 0)
    guard.admit("sig-2", 10)
    with pytest.raises(WebhookRejected) as caught:
        guard.admit("sig-1", 59)
    assert caught.value.reason is _R.REPLAYED
    guard.admit("sig-1", 60.5)  # forgotten once its window passed
    assert len(guard) == 2  # sig-2 (until 70) and sig-1 again


def test_the_replay_guard_is_bounded_and_says_when_it_forgot_early() -> None:
    guard = ReplayGuard(window_s=60, max_entries=2)
    for i in range(3):
        guard.admit(f"s{i}", 0)
    assert len(guard) == 2 and guard.forgotten_early == 1
    with pytest.raises(ConfigError):
        ReplayGuard(window_s=0)


def test_texml_connects_a_bidirectional_rtp_stream_in_the_chosen_law() -> None:
    root = ET.fromstring(
        connect_stream_texml("wss://h/telnyx", {"token": "a&b"}, AudioEncoding.ALAW)
    )
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://h/telnyx"
    assert stream.get("bidirectionalMode") == "rtp"
    assert stream.get("codec") == stream.get("bidirectionalCodec") == "PCMA"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"token": "a&b"}


def test_plivo_xml_streams_both_ways_with_the_token_as_an_extra_header() -> None:
    token = "AXC0.ul-Pf_6m7"
    xml = plivo_stream_xml("wss://h/plivo?x=1&y=2", {"token": plivo_header_value(token)})
    stream = ET.fromstring(xml).find("./Stream")
    assert stream is not None and stream.text == "wss://h/plivo?x=1&y=2"
    assert stream.get("bidirectional") == stream.get("keepCallAlive") == "true"
    assert stream.get("contentType") == "audio/x-mulaw;rate=8000"
    name, _, value = (stream.get("extraHeaders") or "").partition("=")
    assert name == "token" and value.isalnum() and from_plivo_header_value(value) == token
    assert from_plivo_header_value("zz") is None
    with pytest.raises(ConfigError):
        plivo_stream_xml("wss://h/plivo", {"token": "not.alnum"})


@pytest.mark.parametrize("law", list(AudioEncoding))
def test_g711_round_trips_within_its_quantisation(law: AudioEncoding) -> None:
    import numpy as np

    tone = (np.sin(np.arange(160) / 5) * 12000).astype("<i2")
    back = np.frombuffer(law.decode(law.encode(tone.tobytes())), dtype="<i2")
    assert len(law.encode(tone.tobytes())) == 160
    assert np.max(np.abs(back.astype(int) - tone)) < 12000 * 0.04
    quiet = np.frombuffer(law.decode(bytes([law.silence]) * 4), dtype="<i2")
    assert np.max(np.abs(quiet)) <= 8  # A-law has no exact zero: its quietest step
