"""Plivo audio stream messages as Plivo documents them: read into events, built to send."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    ClearAcknowledged,
    ClearConfirmation,
    DtmfReceived,
    MalformedReason,
    MarkEchoed,
    MediaReceived,
    MessageMalformed,
    StreamStarted,
    StreamState,
    StreamStopped,
)
from voxpipe.telephony.plivo import PlivoStream, extra_headers

SID = "87654321-4321-4321-4321-cba987654321"
CALL = "12345678-1234-1234-1234-123456789abc"
START = {
    "event": "start",
    "sequenceNumber": 1,
    "start": {
        "callId": CALL,
        "streamId": SID,
        "accountId": "MAXXXXXXXXXXXXXXXXXX",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
    },
    "extra_headers": "token=abc123;other=9",
}


def media() -> dict[str, Any]:
    body = {"track": "inbound", "timestamp": "1728", "chunk": 3}
    body["payload"] = base64.b64encode(b"\xff" * 160).decode()
    return {"event": "media", "sequenceNumber": 3, "streamId": SID, "media": body}


def started() -> PlivoStream:
    stream = PlivoStream()
    stream.receive(json.dumps(START))
    return stream


def test_a_stream_is_read_in_plivos_order() -> None:
    stream = PlivoStream()
    assert stream.receive(json.dumps(START)) == StreamStarted(
        SID,
        CALL,
        "MAXXXXXXXXXXXXXXXXXX",
        ("inbound",),
        8000,
        {"token": "abc123", "other": "9"},
        AudioEncoding.MULAW,
    )
    assert stream.receive(json.dumps(media())) == MediaReceived(b"\xff" * 160, 3, 1728, "inbound")
    dtmf = {"event": "dtmf", "sequenceNumber": 4, "streamId": SID}
    dtmf["dtmf"] = {"track": "inbound", "digit": "5", "timestamp": "1800"}
    assert stream.receive(json.dumps(dtmf)) == DtmfReceived("5")
    played = {"event": "playedStream", "sequenceNumber": 5, "streamId": SID, "name": "a@0ms/1"}
    assert stream.receive(json.dumps(played)) == MarkEchoed("a@0ms/1")
    cleared = {"sequenceNumber": 6, "event": "clearedAudio", "streamId": SID}
    assert stream.receive(json.dumps(cleared)) == ClearAcknowledged()
    assert stream.receive(json.dumps({"event": "stop", "streamId": SID})) == StreamStopped()
    assert stream.state is StreamState.STOPPED


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        (None, {}),
        ("", {}),
        ("token=abc", {"token": "abc"}),
        ("a=1,b=2", {"a": "1", "b": "2"}),  # as the XML attribute writes them
        ("a=1;b=2", {"a": "1", "b": "2"}),  # as the start's example shows them
    ],
)
def test_extra_headers_are_read_either_way_plivo_writes_them(
    text: str | None, headers: dict[str, str]
) -> None:
    assert extra_headers(text) == headers


_M = MalformedReason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (json.dumps({"event": "connected"}), _M.UNKNOWN_EVENT),  # Plivo sends none
        (json.dumps({"event": "playedStream", "streamId": SID}), _M.MISSING_FIELD),
        (json.dumps({**media(), "streamId": "another"}), _M.WRONG_STREAM),
        (json.dumps(START), _M.OUT_OF_ORDER),
    ],
)
def test_a_message_plivo_would_not_send_is_skipped(message: str, reason: _M) -> None:
    stream = started()
    event = stream.receive(message)
    assert isinstance(event, MessageMalformed) and event.reason is reason, event
    assert isinstance(stream.receive(json.dumps(media())), MediaReceived)


def test_linear_pcm_is_refused_since_our_stream_asks_for_mu_law() -> None:
    message = json.loads(json.dumps(START))
    message["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": 8000}
    event = PlivoStream().receive(json.dumps(message))
    assert isinstance(event, MessageMalformed) and event.reason is _M.UNSUPPORTED_FORMAT


def test_outbound_messages_are_plivos_and_clears_are_acknowledged() -> None:
    stream = started()
    assert PlivoStream.clear_confirmation is ClearConfirmation.ACKNOWLEDGED
    assert json.loads(stream.media(b"\xff")) == {
        "event": "playAudio",
        "streamId": SID,
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "/w=="},
    }
    assert json.loads(stream.mark("a@0ms/1")) == {
        "event": "checkpoint",
        "streamId": SID,
        "name": "a@0ms/1",
    }
    assert json.loads(stream.clear()) == {"event": "clearAudio", "streamId": SID}
