"""Plivo audio streams, sans-I/O: one WebSocket text message in, one typed event out.

As Plivo documents a bidirectional stream (XML ``<Stream
bidirectional="true" keepCallAlive="true">``), it sends no ``connected``:
first one ``start`` (``callId``, ``streamId``, ``accountId``, ``tracks``,
``mediaFormat`` with ``encoding`` and ``sampleRate``, and the XML's
``extraHeaders`` as ``extra_headers``, ``key=value`` pairs), then ``media``
(base64 mu-law at 8 kHz, ``streamId`` beside it), ``dtmf``, ``playedStream``
(a checkpoint we sent, once the audio queued before it has *played*) and
``clearedAudio`` (the queue was dropped, as asked). The call ends when the
socket closes; a ``stop`` is read too. We send ``playAudio``, ``checkpoint``
and ``clearAudio``, each naming the ``streamId``.

Plivo never returns a checkpoint whose audio was cleared
(:attr:`ClearConfirmation.ACKNOWLEDGED`): the last ``playedStream`` before
``clearedAudio``, plus the time between their arrivals, is where playback
stopped (:mod:`voxpipe.telephony.marks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    ClearAcknowledged,
    ClearConfirmation,
    MarkEchoed,
    MessageMalformed,
    Provider,
    StreamEvent,
    StreamStarted,
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

MULAW_8K = "audio/x-mulaw"
CONTENT_TYPE = "audio/x-mulaw;rate=8000"  # what our <Stream> asks for
_LAWS = {MULAW_8K: AudioEncoding.MULAW}
_HEADER_SEPARATORS = re.compile(r"[;,]")


def _played(data: dict[str, Any]) -> StreamEvent:
    return MarkEchoed(field_text(data, "name"))


def _cleared(data: dict[str, Any]) -> StreamEvent:
    return ClearAcknowledged()


def extra_headers(value: object) -> dict[str, str]:
    """``extra_headers`` (``k1=v1;k2=v2``, or with commas as the XML writes them) as a mapping."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise FieldMissing("extra_headers")
    pairs = (part.partition("=") for part in _HEADER_SEPARATORS.split(value) if part.strip())
    return {name.strip(): text.strip() for name, _, text in pairs}


class PlivoStream(MediaStream):
    """One Plivo audio stream: its messages become events; ours are built with its id."""

    provider = Provider.PLIVO
    clear_confirmation = ClearConfirmation.ACKNOWLEDGED
    stream_field = "streamId"
    readers: ClassVar[Mapping[str, Reader]] = {
        "media": read_media,
        "dtmf": read_dtmf,
        "playedStream": _played,
        "clearedAudio": _cleared,
        "stop": read_stop,
    }

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
        return StreamStarted(
            stream_sid=field_text(start, "streamId"),
            call_sid=field_text(start, "callId"),
            account_sid=str(start.get("accountId") or ""),
            tracks=tuple(str(t) for t in start.get("tracks") or ("inbound",)),
            sample_rate=PHONE_RATE,
            custom_parameters=extra_headers(data.get("extra_headers")),
            encoding=law,
        )

    # -- what we send ------------------------------------------------------------------

    def media(self, payload: bytes) -> str:
        """A ``playAudio`` message: mu-law at 8 kHz, queued behind what Plivo holds."""
        media = {"contentType": MULAW_8K, "sampleRate": PHONE_RATE}
        return self._named("playAudio", media={**media, "payload": encode_payload(payload)})

    def mark(self, name: str) -> str:
        """A ``checkpoint``: Plivo answers ``playedStream`` once the audio before it played."""
        return self._named("checkpoint", name=name)

    def clear(self) -> str:
        """A ``clearAudio``: Plivo drops its queue and checkpoints, then says ``clearedAudio``."""
        return self._named("clearAudio")

    def _named(self, event: str, **body: Any) -> str:
        return self.send(event, streamId=self.stream_sid, **body)
