"""Telnyx media streaming, sans-I/O: one WebSocket text message in, one typed event out.

As Telnyx documents its bidirectional stream (TeXML ``<Connect><Stream
bidirectionalMode="rtp">``, or Call Control's ``stream_bidirectional_mode:
rtp``), it sends ``connected``, one ``start`` (``stream_id`` beside it;
``call_control_id``, ``from``, ``to``, ``media_format`` with ``encoding``
``PCMU`` or ``PCMA``, ``sample_rate`` and ``channels``, and the
``<Parameter>``\\ s as ``custom_parameters``), then ``media`` (base64 RTP
payloads without headers, ``track`` ``inbound``), ``dtmf``, ``mark`` (a mark
we sent, returned once the audio before it has played, at once when nothing
is queued, and with the rest of the queue when a ``clear`` drops it),
``error`` and a final ``stop``. We send ``media``, ``mark`` and ``clear``.

Its marks behave as Twilio's (:attr:`ClearConfirmation.MARKS_RETURNED`), so
the same probe after a ``clear`` places the cut. Both G.711 laws are
carried: the bot answers in the law the caller arrived in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import (
    ClearConfirmation,
    MarkEchoed,
    MessageMalformed,
    Provider,
    StreamConnected,
    StreamErrored,
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

PCMU = "PCMU"
PCMA = "PCMA"
_LAWS = {PCMU: AudioEncoding.MULAW, PCMA: AudioEncoding.ALAW}
CODECS = {law: name for name, law in _LAWS.items()}  # the TeXML codec of each law


def _mark(data: dict[str, Any]) -> StreamEvent:
    return MarkEchoed(field_text(field_object(data, "mark"), "name"))


def _error(data: dict[str, Any]) -> StreamEvent:
    payload = data.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    code = str(payload.get("code", ""))[:40]
    detail = str(payload.get("detail") or payload.get("title") or "")[:200]
    return StreamErrored(code, detail)


def custom_parameters(value: object) -> dict[str, str]:
    """``custom_parameters`` as a mapping, given as one or as ``[{name, value}]``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(p, dict) and "name" in p for p in value):
        return {str(p["name"]): str(p.get("value", "")) for p in value}
    raise FieldMissing("start.custom_parameters")


class TelnyxStream(MediaStream):
    """One Telnyx media stream: its messages become events; ours are built for it."""

    provider = Provider.TELNYX
    clear_confirmation = ClearConfirmation.MARKS_RETURNED
    stream_field = "stream_id"
    readers: ClassVar[Mapping[str, Reader]] = {
        "media": read_media,
        "dtmf": read_dtmf,
        "mark": _mark,
        "error": _error,
        "stop": read_stop,
    }

    def read_connected(self, data: dict[str, Any]) -> StreamEvent:
        return StreamConnected("", field_text(data, "version", ""))

    def read_start(self, data: dict[str, Any]) -> StreamStarted | MessageMalformed:
        start = field_object(data, "start")
        media_format = field_object(start, "media_format")
        law = audio_format(
            field_text(media_format, "encoding"),
            media_format.get("sample_rate"),
            media_format.get("channels", 1),
            _LAWS,
        )
        if isinstance(law, MessageMalformed):
            return law
        stream_id = data.get("stream_id", start.get("stream_id"))
        if not isinstance(stream_id, str):
            raise FieldMissing("stream_id")
        return StreamStarted(
            stream_sid=stream_id,
            call_sid=field_text(start, "call_control_id"),
            account_sid=str(start.get("user_id") or ""),
            tracks=("inbound",),
            sample_rate=PHONE_RATE,
            custom_parameters=custom_parameters(start.get("custom_parameters")),
            encoding=law,
        )

    # -- what we send ------------------------------------------------------------------

    def media(self, payload: bytes) -> str:
        """A ``media`` message: an RTP payload (no header) in the stream's law."""
        return self.send("media", media={"payload": encode_payload(payload)})

    def mark(self, name: str) -> str:
        """A ``mark``: Telnyx returns ``name`` once the media sent before it has played."""
        return self.send("mark", mark={"name": name})

    def clear(self) -> str:
        """A ``clear``: Telnyx stops playback, drops its queue and returns the queued marks."""
        return self.send("clear")
