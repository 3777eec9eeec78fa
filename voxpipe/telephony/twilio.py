"""Twilio Media Streams, sans-I/O: one WebSocket text message in, one typed event out.

A bidirectional stream (TwiML ``<Connect><Stream>``) sends, in order,
``connected``, one ``start`` (``streamSid``, ``callSid``, ``accountSid``,
``tracks``, ``mediaFormat`` and the ``<Parameter>``\\ s as ``customParameters``),
then ``media`` (base64 mu-law, 8 kHz mono, 20 ms per message), ``dtmf``,
``mark`` (a mark we sent, echoed once the audio before it has played, or at
once when a ``clear`` dropped that audio) and a final ``stop``. We send
``media``, ``mark`` and ``clear``, each naming the ``streamSid``.

:class:`TwilioStream` reads messages into the frozen, past-tense events of
:mod:`voxpipe.telephony.events` and builds the messages to send; the order
and envelope checks are :class:`~voxpipe.telephony.stream.MediaStream`'s.
Twilio carries mu-law only: a ``start`` announcing anything else is
``UNSUPPORTED_FORMAT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    ClearConfirmation,
    DtmfReceived,
    MalformedReason,
    MarkEchoed,
    MediaReceived,
    MessageMalformed,
    Provider,
    StreamConnected,
    StreamEvent,
    StreamStarted,
    StreamState,
    StreamStopped,
)
from voxpipe.telephony.stream import (
    PHONE_RATE,
    FieldMissing,
    MediaStream,
    Reader,
    audio_format,
    encode_payload,
    field_object,
    field_text,
    read_dtmf,
    read_media,
    read_stop,
)

__all__ = [
    "MULAW_8K",
    "DtmfReceived",
    "MalformedReason",
    "MarkEchoed",
    "MediaReceived",
    "MessageMalformed",
    "StreamConnected",
    "StreamEvent",
    "StreamStarted",
    "StreamState",
    "StreamStopped",
    "TwilioStream",
]

MULAW_8K = "audio/x-mulaw"
_LAWS = {MULAW_8K: AudioEncoding.MULAW}


def _mark(data: dict[str, Any]) -> StreamEvent:
    return MarkEchoed(field_text(field_object(data, "mark"), "name"))


class TwilioStream(MediaStream):
    """One Media Stream: messages from Twilio become events; ours are built with its sid."""

    provider = Provider.TWILIO
    clear_confirmation = ClearConfirmation.MARKS_RETURNED
    stream_field = "streamSid"
    readers: ClassVar[Mapping[str, Reader]] = {
        "media": read_media,
        "dtmf": read_dtmf,
        "mark": _mark,
        "stop": read_stop,
    }

    def read_connected(self, data: dict[str, Any]) -> StreamEvent:
        return StreamConnected(field_text(data, "protocol", ""), field_text(data, "version", ""))

    def read_start(self, data: dict[str, Any]) -> StreamStarted | MessageMalformed:
        start = field_object(data, "start")
        media_format = field_object(start, "mediaFormat")
        law = audio_format(
            field_text(media_format, "encoding"),
            media_format.get("sampleRate"),
            media_format.get("channels", 1),
            _LAWS,
        )
        if isinstance(law, MessageMalformed):
            return law
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise FieldMissing("start.customParameters")
        return StreamStarted(
            stream_sid=field_text(start, "streamSid"),
            call_sid=field_text(start, "callSid"),
            account_sid=field_text(start, "accountSid", ""),
            tracks=tuple(str(t) for t in start.get("tracks") or ("inbound",)),
            sample_rate=PHONE_RATE,
            custom_parameters={str(k): str(v) for k, v in params.items()},
            encoding=law,
        )

    # -- what we send ------------------------------------------------------------------

    def media(self, payload: bytes) -> str:
        """A ``media`` message playing ``payload`` (mu-law, 8 kHz) to the caller."""
        return self._named("media", media={"payload": encode_payload(payload)})

    def mark(self, name: str) -> str:
        """A ``mark`` message: Twilio returns ``name`` once the audio sent before it played."""
        return self._named("mark", mark={"name": name})

    def clear(self) -> str:
        """A ``clear`` message: Twilio drops the audio it holds and returns its pending marks."""
        return self._named("clear")

    def _named(self, event: str, **body: Any) -> str:
        return self.send(event, streamSid=self.stream_sid, **body)
