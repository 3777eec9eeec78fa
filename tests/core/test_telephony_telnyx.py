"""Telnyx media streaming messages as Telnyx documents them: read into events, built to send."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from voxpipe.errors import LocalProtocolError
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    ClearConfirmation,
    DtmfReceived,
    MalformedReason,
    MarkEchoed,
    MediaReceived,
    MessageMalformed,
    StreamConnected,
    StreamErrored,
    StreamStarted,
    StreamState,
    StreamStopped,
)
from voxpipe.telephony.telnyx import TelnyxStream

SID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
CONTROL = "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"


def start(encoding: str = "PCMU", **media_format: Any) -> dict[str, Any]:
    fmt = {"encoding": encoding, "sample_rate": 8000, "channels": 1, **media_format}
    return {
        "event": "start",
        "sequence_number": "1",
        "start": {
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": CONTROL,
            "from": "+13122010094",
            "to": "+13122123456",
            "media_format": fmt,
            "custom_parameters": {"token": "t0k3n"},
        },
        "stream_id": SID,
    }


def media(payload: bytes = b"\xd5" * 160) -> dict[str, Any]:
    body = {"track": "inbound", "chunk": "2", "timestamp": "20"}
    body["payload"] = base64.b64encode(payload).decode()
    return {"event": "media", "sequence_number": "4", "media": body, "stream_id": SID}


def started(encoding: str = "PCMU") -> TelnyxStream:
    stream = TelnyxStream()
    stream.receive(json.dumps({"event": "connected", "version": "1.0.0"}))
    stream.receive(json.dumps(start(encoding)))
    return stream


def test_a_stream_is_read_in_telnyxs_order() -> None:
    stream = TelnyxStream()
    connected = stream.receive(json.dumps({"event": "connected", "version": "1.0.0"}))
    assert connected == StreamConnected("", "1.0.0")
    assert stream.receive(json.dumps(start("PCMA"))) == StreamStarted(
        SID,
        CONTROL,
        "3e6f995f-85f7-4705-9741-53b116d28237",
        ("inbound",),
        8000,
        {"token": "t0k3n"},
        AudioEncoding.ALAW,
    )
    assert stream.state is StreamState.STREAMING and stream.encoding is AudioEncoding.ALAW
    assert stream.receive(json.dumps(media(b"\x55" * 160))) == MediaReceived(
        b"\x55" * 160, 2, 20, "inbound"
    )
    dtmf = {"event": "dtmf", "stream_id": SID, "occurred_at": "2024", "dtmf": {"digit": "1"}}
    assert stream.receive(json.dumps(dtmf)) == DtmfReceived("1")
    mark = {"event": "mark", "sequence_number": "6", "stream_id": SID, "mark": {"name": "a@0ms/1"}}
    assert stream.receive(json.dumps(mark)) == MarkEchoed("a@0ms/1")
    error = {"event": "error", "payload": {"code": 100002, "title": "Unknown error"}}
    assert stream.receive(json.dumps(error)) == StreamErrored("100002", "Unknown error")
    stop = {"event": "stop", "stop": {"user_id": "u", "call_control_id": CONTROL}}
    assert stream.receive(json.dumps({**stop, "stream_id": SID})) == StreamStopped()
    assert stream.state is StreamState.STOPPED


def test_custom_parameters_may_come_as_a_list_of_names_and_values() -> None:
    message = start()
    message["start"]["custom_parameters"] = [{"name": "token", "value": "abc"}]
    event = TelnyxStream().receive(json.dumps(message))
    assert isinstance(event, StreamStarted) and event.custom_parameters == {"token": "abc"}


_M = MalformedReason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\x00", _M.NOT_TEXT),
        ("{not json", _M.NOT_JSON),
        (json.dumps({"event": "party"}), _M.UNKNOWN_EVENT),
        (json.dumps({"event": "media", "stream_id": SID}), _M.MISSING_FIELD),
        (json.dumps({**media(), "media": {"payload": "%%%"}}), _M.BAD_PAYLOAD),
        (json.dumps({**media(), "stream_id": "another"}), _M.WRONG_STREAM),
        (json.dumps({"event": "mark", "mark": {"name": 3}}), _M.MISSING_FIELD),
        (json.dumps(start()), _M.OUT_OF_ORDER),
    ],
)
def test_a_message_telnyx_would_not_send_is_skipped(message: str | bytes, reason: _M) -> None:
    stream = started()
    event = stream.receive(message)
    assert isinstance(event, MessageMalformed) and event.reason is reason, event
    assert isinstance(stream.receive(json.dumps(media())), MediaReceived)


@pytest.mark.parametrize(
    "message",
    [start("G722"), start("PCMU", sample_rate=16000), start("OPUS"), start("PCMU", channels=2)],
)
def test_a_codec_other_than_g711_at_8_khz_is_refused(message: dict[str, Any]) -> None:
    stream = TelnyxStream()
    event = stream.receive(json.dumps(message))
    assert isinstance(event, MessageMalformed) and event.reason is _M.UNSUPPORTED_FORMAT
    assert stream.state is StreamState.AWAITING_START


def test_outbound_messages_are_telnyxs_and_marks_come_back_with_a_clear() -> None:
    stream = started()
    assert TelnyxStream.clear_confirmation is ClearConfirmation.MARKS_RETURNED
    assert json.loads(stream.media(b"\xff\x7f")) == {
        "event": "media",
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert json.loads(stream.mark("a@0ms/1")) == {"event": "mark", "mark": {"name": "a@0ms/1"}}
    assert json.loads(stream.clear()) == {"event": "clear"}
    with pytest.raises(LocalProtocolError):
        TelnyxStream().clear()
