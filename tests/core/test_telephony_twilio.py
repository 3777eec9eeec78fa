"""Twilio Media Streams messages as Twilio documents them: read into events, built to send."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voxpipe.errors import LocalProtocolError
from voxpipe.telephony.twilio import (
    DtmfReceived,
    MalformedReason,
    MarkEchoed,
    MediaReceived,
    MessageMalformed,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
    TwilioStream,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC123",
        "streamSid": SID,
        "callSid": "CA123",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"token": "t0k3n"},
    },
    "streamSid": SID,
}


def media(payload: bytes = b"\xff" * 160, chunk: int = 2, timestamp: int = 20) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": "3",
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp),
            "payload": base64.b64encode(payload).decode(),
        },
        "streamSid": SID,
    }


def started() -> TwilioStream:
    stream = TwilioStream()
    stream.receive(json.dumps(CONNECTED))
    stream.receive(json.dumps(START))
    return stream


def test_a_stream_is_read_in_twilios_order() -> None:
    stream = TwilioStream()
    assert stream.receive(json.dumps(CONNECTED)) == StreamConnected("Call", "1.0.0")
    start = stream.receive(json.dumps(START))
    assert start == StreamStarted(SID, "CA123", "AC123", ("inbound",), 8000, {"token": "t0k3n"})
    assert stream.state is StreamState.STREAMING and stream.stream_sid == SID
    assert stream.receive(json.dumps(media(b"\x7f" * 160, 2, 20))) == MediaReceived(
        b"\x7f" * 160, 2, 20, "inbound"
    )
    dtmf = {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "5"}}
    assert stream.receive(json.dumps(dtmf)) == DtmfReceived("5")
    mark = {"event": "mark", "streamSid": SID, "mark": {"name": "item_1@100ms/3"}}
    assert stream.receive(json.dumps(mark)) == MarkEchoed("item_1@100ms/3")
    stop = {"event": "stop", "streamSid": SID, "stop": {"accountSid": "AC123", "callSid": "CA123"}}
    assert stream.receive(json.dumps(stop)) == StreamStopped()
    assert stream.state is StreamState.STOPPED


_M = MalformedReason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\x00\x01", _M.NOT_TEXT),
        ("x" * 70_000, _M.TOO_LARGE),
        ("{not json", _M.NOT_JSON),
        ("[1, 2]", _M.NOT_AN_OBJECT),
        (json.dumps({"event": "party"}), _M.UNKNOWN_EVENT),
        (json.dumps({"media": {}}), _M.UNKNOWN_EVENT),
        (json.dumps({"event": "media", "streamSid": SID}), _M.MISSING_FIELD),
        (json.dumps({"event": "media", "media": {"payload": 42}}), _M.MISSING_FIELD),
        (json.dumps({**media(), "media": {"payload": "%%%not base64"}}), _M.BAD_PAYLOAD),
        (json.dumps({**media(), "media": {"payload": "AA==", "chunk": "two"}}), _M.MISSING_FIELD),
        (json.dumps({"event": "dtmf", "dtmf": {"digit": "Z"}}), _M.MISSING_FIELD),
        (json.dumps({"event": "mark", "mark": {}}), _M.MISSING_FIELD),
        (json.dumps({**media(), "streamSid": "MZother"}), _M.WRONG_STREAM),
        (json.dumps(START), _M.OUT_OF_ORDER),  # a second start
    ],
)
def test_a_message_twilio_would_not_send_is_skipped_with_its_reason(
    message: str | bytes, reason: MalformedReason
) -> None:
    stream = started()
    event = stream.receive(message)
    assert isinstance(event, MessageMalformed) and event.reason is reason, event
    assert stream.state is StreamState.STREAMING  # the stream goes on
    assert isinstance(stream.receive(json.dumps(media())), MediaReceived)


def _start_with(**media_format: Any) -> str:
    start = json.loads(json.dumps(START))
    start["start"]["mediaFormat"].update(media_format)
    return json.dumps(start)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (json.dumps(media()), _M.OUT_OF_ORDER),  # media before start
        (_start_with(encoding="audio/x-alaw"), _M.UNSUPPORTED_FORMAT),
        (_start_with(sampleRate=16000), _M.UNSUPPORTED_FORMAT),
        (_start_with(channels=2), _M.UNSUPPORTED_FORMAT),
        (json.dumps({"event": "start", "start": {"streamSid": SID}}), _M.MISSING_FIELD),
    ],
)
def test_before_a_usable_start_the_stream_waits_for_one(
    message: str, reason: MalformedReason
) -> None:
    stream = TwilioStream()
    event = stream.receive(message)
    assert isinstance(event, MessageMalformed) and event.reason is reason, event
    assert stream.state is StreamState.AWAITING_START
    assert isinstance(stream.receive(json.dumps(START)), StreamStarted)


def test_after_stop_nothing_more_is_taken() -> None:
    stream = started()
    stream.receive(json.dumps({"event": "stop", "streamSid": SID}))
    event = stream.receive(json.dumps(media()))
    assert isinstance(event, MessageMalformed) and event.reason is _M.OUT_OF_ORDER


def test_outbound_messages_name_the_stream() -> None:
    stream = started()
    assert json.loads(stream.media(b"\xff\x7f")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert json.loads(stream.mark("item_1@0ms/1")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "item_1@0ms/1"},
    }
    assert json.loads(stream.clear()) == {"event": "clear", "streamSid": SID}


def test_nothing_is_sent_on_a_stream_that_has_not_started_or_has_stopped() -> None:
    with pytest.raises(LocalProtocolError):
        TwilioStream().clear()
    stream = started()
    stream.receive(json.dumps({"event": "stop", "streamSid": SID}))
    with pytest.raises(LocalProtocolError):
        stream.media(b"\xff")
