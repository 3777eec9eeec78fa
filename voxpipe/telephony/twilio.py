"""Twilio Media Streams, sans-I/O: one WebSocket text message in, one typed event out.

A bidirectional stream (TwiML ``<Connect><Stream>``) sends, in order,
``connected``, one ``start`` (``streamSid``, ``callSid``, ``accountSid``,
``tracks``, ``mediaFormat`` and the ``<Parameter>``\\ s as ``customParameters``),
then ``media`` (base64 mu-law, 8 kHz mono, 20 ms per message), ``dtmf``,
``mark`` (a mark we sent, echoed once the audio before it has played, or at
once when a ``clear`` dropped that audio) and a final ``stop``. We send
``media``, ``mark`` and ``clear``, each naming the ``streamSid``.

:class:`TwilioStream` reads messages into frozen, past-tense events and
builds the messages to send. Anything it cannot use is a
:class:`MessageMalformed` naming the reason, for the driver to log and skip:
a bad message never ends a call. A message before ``start`` (other than
``connected``), a second ``start``, or anything after ``stop``, is
``OUT_OF_ORDER``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

from voxpipe.errors import LocalProtocolError

MULAW_8K = "audio/x-mulaw"
MAX_MESSAGE_CHARS = 64 * 1024  # a 20 ms media message is ~300 characters
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class StreamState(enum.Enum):
    """Where a Media Stream is."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class MalformedReason(enum.Enum):
    """Why a message from Twilio was skipped."""

    NOT_TEXT = "not_text"  # a binary frame: Twilio sends JSON text only
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT = "unknown_event"
    MISSING_FIELD = "missing_field"  # or of the wrong type
    BAD_PAYLOAD = "bad_payload"  # media that is not base64
    UNSUPPORTED_FORMAT = "unsupported_format"  # a start whose audio is not mu-law 8 kHz mono
    WRONG_STREAM = "wrong_stream"  # names another streamSid
    OUT_OF_ORDER = "out_of_order"


@dataclasses.dataclass(frozen=True)
class MessageMalformed:
    """A message that was skipped, and why (the driver logs it; the call goes on)."""

    reason: MalformedReason
    detail: str


@dataclasses.dataclass(frozen=True)
class StreamConnected:
    """The socket is Twilio's (``connected``)."""

    protocol: str
    version: str


@dataclasses.dataclass(frozen=True)
class StreamStarted:
    """The stream's metadata (``start``); the ``<Parameter>``\\ s are ``custom_parameters``."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    sample_rate: int
    custom_parameters: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class MediaReceived:
    """20 ms (usually) of the caller's audio, mu-law bytes; ``timestamp_ms`` into the stream."""

    payload: bytes
    chunk: int
    timestamp_ms: int
    track: str


@dataclasses.dataclass(frozen=True)
class DtmfReceived:
    """The caller pressed a key."""

    digit: str


@dataclasses.dataclass(frozen=True)
class MarkEchoed:
    """Twilio returned the mark named ``name``: the audio before it played, or was cleared."""

    name: str


@dataclasses.dataclass(frozen=True)
class StreamStopped:
    """The stream ended (the caller hung up, or the call left the ``<Connect>``)."""


StreamEvent = (
    StreamConnected
    | StreamStarted
    | MediaReceived
    | DtmfReceived
    | MarkEchoed
    | StreamStopped
    | MessageMalformed
)


class TwilioStream:
    """One Media Stream: messages from Twilio become events; ours are built with its sid."""

    def __init__(self, *, max_message_chars: int = MAX_MESSAGE_CHARS) -> None:
        self.state = StreamState.AWAITING_START
        self.stream_sid: str | None = None
        self._max_chars = max_message_chars

    def receive(self, message: str | bytes) -> StreamEvent:
        """Read one WebSocket message."""
        if not isinstance(message, str):
            return _malformed(MalformedReason.NOT_TEXT, f"{len(message)} bytes")
        if len(message) > self._max_chars:
            return _malformed(MalformedReason.TOO_LARGE, f"{len(message)} characters")
        try:
            data = json.loads(message)
        except ValueError as exc:
            return _malformed(MalformedReason.NOT_JSON, str(exc))
        if not isinstance(data, dict):
            return _malformed(MalformedReason.NOT_AN_OBJECT, type(data).__name__)
        try:
            return self._event(data)
        except _Missing as exc:
            return _malformed(MalformedReason.MISSING_FIELD, str(exc))

    def _event(self, data: dict[str, Any]) -> StreamEvent:
        kind = data.get("event")
        if kind == "connected":
            return StreamConnected(_text(data, "protocol", ""), _text(data, "version", ""))
        if kind != "start" and kind not in _READERS:
            return _malformed(MalformedReason.UNKNOWN_EVENT, repr(kind)[:40])
        if self.state is StreamState.STOPPED:
            return _malformed(MalformedReason.OUT_OF_ORDER, f"{kind} after stop")
        if kind == "start":
            return self._start(data)
        if self.state is StreamState.AWAITING_START:
            return _malformed(MalformedReason.OUT_OF_ORDER, f"{kind} before start")
        sid = data.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            return _malformed(MalformedReason.WRONG_STREAM, f"{kind} for {str(sid)[:40]}")
        event = _READERS[kind](data)
        if isinstance(event, StreamStopped):
            self.state = StreamState.STOPPED
        return event

    def _start(self, data: dict[str, Any]) -> StreamEvent:
        if self.state is not StreamState.AWAITING_START:
            return _malformed(MalformedReason.OUT_OF_ORDER, "a second start")
        start = _object(data, "start")
        media_format = _object(start, "mediaFormat")
        encoding = _text(media_format, "encoding")
        rate = media_format.get("sampleRate")
        channels = media_format.get("channels", 1)
        if encoding != MULAW_8K or rate != 8000 or channels != 1:
            detail = f"{encoding} at {rate} Hz, {channels} channel(s)"
            return _malformed(MalformedReason.UNSUPPORTED_FORMAT, detail)
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise _Missing("start.customParameters")
        started = StreamStarted(
            stream_sid=_text(start, "streamSid"),
            call_sid=_text(start, "callSid"),
            account_sid=_text(start, "accountSid", ""),
            tracks=tuple(str(t) for t in start.get("tracks") or ("inbound",)),
            sample_rate=8000,
            custom_parameters={str(k): str(v) for k, v in params.items()},
        )
        self.state = StreamState.STREAMING
        self.stream_sid = started.stream_sid
        return started

    # -- what we send ------------------------------------------------------------------

    def media(self, mulaw: bytes) -> str:
        """A ``media`` message playing ``mulaw`` (8 kHz) to the caller."""
        payload = base64.b64encode(mulaw).decode("ascii")
        return self._send("media", media={"payload": payload})

    def mark(self, name: str) -> str:
        """A ``mark`` message: Twilio returns ``name`` once the audio sent before it played."""
        return self._send("mark", mark={"name": name})

    def clear(self) -> str:
        """A ``clear`` message: Twilio drops the audio it holds and returns its pending marks."""
        return self._send("clear")

    def _send(self, event: str, **body: Any) -> str:
        if self.stream_sid is None or self.state is not StreamState.STREAMING:
            raise LocalProtocolError(f"cannot send {event}: the stream is {self.state.value}")
        return json.dumps({"event": event, "streamSid": self.stream_sid, **body})


class _Missing(Exception):
    """A required field is absent or of the wrong type."""


def _malformed(reason: MalformedReason, detail: str) -> MessageMalformed:
    return MessageMalformed(reason, detail)


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _Missing(key)
    return value


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _Missing(key)
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key, "0")  # Twilio sends numbers as strings
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Missing(key) from None


def _media(data: dict[str, Any]) -> StreamEvent:
    media = _object(data, "media")
    try:
        payload = base64.b64decode(_text(media, "payload"), validate=True)
    except (binascii.Error, ValueError) as exc:
        return _malformed(MalformedReason.BAD_PAYLOAD, str(exc))
    track = _text(media, "track", "inbound")
    return MediaReceived(payload, _int(media, "chunk"), _int(media, "timestamp"), track)


def _dtmf(data: dict[str, Any]) -> StreamEvent:
    digit = _text(_object(data, "dtmf"), "digit")
    if digit not in DTMF_DIGITS:
        raise _Missing("dtmf.digit")
    return DtmfReceived(digit)


def _mark(data: dict[str, Any]) -> StreamEvent:
    return MarkEchoed(_text(_object(data, "mark"), "name"))


def _stop(data: dict[str, Any]) -> StreamEvent:
    return StreamStopped()


_READERS = {"media": _media, "dtmf": _dtmf, "mark": _mark, "stop": _stop}
