"""What every provider's media stream shares, sans-I/O: JSON messages in order, typed events out.

A :class:`MediaStream` reads one WebSocket message at a time
(:meth:`MediaStream.receive`) and builds the messages to send (``media``,
``mark``, ``clear``, in the provider's own words). The envelope checks and
the order are the same for every provider, so they live here: a binary
frame, an oversized one, bad JSON, an unknown event or a missing field is a
:class:`~voxpipe.telephony.events.MessageMalformed`; a message before
``start`` (other than ``connected``), a second ``start`` or anything after
``stop`` is ``OUT_OF_ORDER``; one naming another stream is ``WRONG_STREAM``.
A subclass says where its fields are and how its messages are spelled.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from voxpipe.errors import LocalProtocolError
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    DTMF_DIGITS,
    ClearConfirmation,
    DtmfReceived,
    MalformedReason,
    MediaReceived,
    MessageMalformed,
    Provider,
    StreamEvent,
    StreamStarted,
    StreamState,
    StreamStopped,
)

MAX_MESSAGE_CHARS = 64 * 1024  # a 20 ms media message is ~300 characters
PHONE_RATE = 8_000

Reader = Callable[[dict[str, Any]], StreamEvent]


class FieldMissing(Exception):
    """A required field is absent or of the wrong type (read as ``MISSING_FIELD``)."""


class MediaStream:
    """One provider media stream: messages in become events; ours are built with its ids.

    Subclasses set :attr:`provider`, :attr:`clear_confirmation`,
    :attr:`stream_field` (where a message names its stream) and
    :attr:`readers` (event name to reader, ``start`` and ``connected``
    excepted), and implement :meth:`read_start`, :meth:`read_connected` and
    the three builders.
    """

    provider: ClassVar[Provider]
    clear_confirmation: ClassVar[ClearConfirmation]
    stream_field: ClassVar[str]
    readers: ClassVar[Mapping[str, Reader]]

    def __init__(self, *, max_message_chars: int = MAX_MESSAGE_CHARS) -> None:
        self.state = StreamState.AWAITING_START
        self.stream_sid: str | None = None
        self.encoding = AudioEncoding.MULAW
        self._max_chars = max_message_chars

    def receive(self, message: str | bytes) -> StreamEvent:
        """Read one WebSocket message."""
        if not isinstance(message, str):
            return malformed(MalformedReason.NOT_TEXT, f"{len(message)} bytes")
        if len(message) > self._max_chars:
            return malformed(MalformedReason.TOO_LARGE, f"{len(message)} characters")
        try:
            data = json.loads(message)
        except ValueError as exc:
            return malformed(MalformedReason.NOT_JSON, str(exc))
        if not isinstance(data, dict):
            return malformed(MalformedReason.NOT_AN_OBJECT, type(data).__name__)
        try:
            return self._event(data)
        except FieldMissing as exc:
            return malformed(MalformedReason.MISSING_FIELD, str(exc))

    def _event(self, data: dict[str, Any]) -> StreamEvent:
        kind = data.get("event")
        if kind == "connected":
            return self.read_connected(data)
        if kind != "start" and kind not in self.readers:
            return malformed(MalformedReason.UNKNOWN_EVENT, repr(kind)[:40])
        if self.state is StreamState.STOPPED:
            return malformed(MalformedReason.OUT_OF_ORDER, f"{kind} after stop")
        if kind == "start":
            return self._start(data)
        if self.state is StreamState.AWAITING_START:
            return malformed(MalformedReason.OUT_OF_ORDER, f"{kind} before start")
        sid = data.get(self.stream_field)
        if sid is not None and sid != self.stream_sid:
            return malformed(MalformedReason.WRONG_STREAM, f"{kind} for {str(sid)[:40]}")
        event = self.readers[str(kind)](data)
        if isinstance(event, StreamStopped):
            self.state = StreamState.STOPPED
        return event

    def _start(self, data: dict[str, Any]) -> StreamEvent:
        if self.state is not StreamState.AWAITING_START:
            return malformed(MalformedReason.OUT_OF_ORDER, "a second start")
        started = self.read_start(data)
        if isinstance(started, StreamStarted):
            self.state = StreamState.STREAMING
            self.stream_sid = started.stream_sid
            self.encoding = started.encoding
        return started

    # -- what a provider reads and writes differently -------------------------------------

    def read_connected(self, data: dict[str, Any]) -> StreamEvent:
        """A ``connected`` message (a provider that sends none says it is unknown)."""
        return malformed(MalformedReason.UNKNOWN_EVENT, "'connected'")

    def read_start(self, data: dict[str, Any]) -> StreamStarted | MessageMalformed:
        """The ``start`` message's metadata (or why it cannot be used)."""
        raise NotImplementedError

    def media(self, payload: bytes) -> str:
        """A message playing ``payload`` (G.711 in :attr:`encoding`, 8 kHz) to the caller."""
        raise NotImplementedError

    def mark(self, name: str) -> str:
        """A message asking for ``name`` back once the audio sent before it has played."""
        raise NotImplementedError

    def clear(self) -> str:
        """A message asking the provider to drop the audio it holds."""
        raise NotImplementedError

    def send(self, event: str, **body: Any) -> str:
        """The JSON of an outgoing message; refused before ``start`` or after ``stop``."""
        if self.stream_sid is None or self.state is not StreamState.STREAMING:
            raise LocalProtocolError(f"cannot send {event}: the stream is {self.state.value}")
        return json.dumps({"event": event, **body})


# -- readers and checks shared by the providers --------------------------------------------


def malformed(reason: MalformedReason, detail: str) -> MessageMalformed:
    return MessageMalformed(reason, detail)


def field_object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise FieldMissing(key)
    return value


def field_text(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise FieldMissing(key)
    return value


def field_int(data: dict[str, Any], key: str, default: str = "0") -> int:
    value = data.get(key, default)  # numbers come as strings, or as numbers
    if isinstance(value, bool):
        raise FieldMissing(key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FieldMissing(key) from None


def read_media(data: dict[str, Any]) -> StreamEvent:
    """``media.payload`` (base64), ``track``, ``chunk``, ``timestamp``: every provider's shape."""
    media = field_object(data, "media")
    try:
        payload = base64.b64decode(field_text(media, "payload"), validate=True)
    except (binascii.Error, ValueError) as exc:
        return malformed(MalformedReason.BAD_PAYLOAD, str(exc))
    track = field_text(media, "track", "inbound")
    return MediaReceived(payload, field_int(media, "chunk"), field_int(media, "timestamp"), track)


def read_dtmf(data: dict[str, Any]) -> StreamEvent:
    digit = field_text(field_object(data, "dtmf"), "digit")
    if digit not in DTMF_DIGITS:
        raise FieldMissing("dtmf.digit")
    return DtmfReceived(digit)


def read_stop(data: dict[str, Any]) -> StreamEvent:
    return StreamStopped()


def audio_format(
    encoding: str, rate: object, channels: object, laws: Mapping[str, AudioEncoding]
) -> AudioEncoding | MessageMalformed:
    """The G.711 law a ``start`` announces, if it is one we carry (8 kHz mono)."""
    law = laws.get(encoding)
    if law is None or str(rate) != str(PHONE_RATE) or str(channels) != "1":
        detail = f"{encoding} at {rate} Hz, {channels} channel(s)"
        return malformed(MalformedReason.UNSUPPORTED_FORMAT, detail)
    return law


def encode_payload(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")
