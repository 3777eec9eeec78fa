"""What a provider's media stream says, whoever the provider: one set of typed events.

Twilio, Telnyx and Plivo each carry a phone call over one WebSocket of JSON
messages, with their own field names. Their protocol cores
(:mod:`~voxpipe.telephony.twilio`, :mod:`~voxpipe.telephony.telnyx`,
:mod:`~voxpipe.telephony.plivo`) read them into these frozen, past-tense
events, so the transport that carries a call out is the same for all three.
A message that cannot be used is a :class:`MessageMalformed` naming why: the
driver logs it and the call goes on.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from voxpipe.telephony.codec import AudioEncoding


class Provider(enum.Enum):
    """Whose media stream it is."""

    TWILIO = "twilio"
    TELNYX = "telnyx"
    PLIVO = "plivo"


class StreamState(enum.Enum):
    """Where a media stream is."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class ClearConfirmation(enum.Enum):
    """How a provider says where a ``clear`` stopped playback.

    ``MARKS_RETURNED`` (Twilio, Telnyx): the clear returns every pending mark
    at once, and a mark sent right after it (a probe) closes that burst.
    ``ACKNOWLEDGED`` (Plivo): pending checkpoints are dropped, never returned;
    the provider acknowledges the clear itself (``clearedAudio``).
    """

    MARKS_RETURNED = "marks_returned"
    ACKNOWLEDGED = "acknowledged"


class MalformedReason(enum.Enum):
    """Why a message from the provider was skipped."""

    NOT_TEXT = "not_text"  # a binary frame: the providers send JSON text only
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT = "unknown_event"
    MISSING_FIELD = "missing_field"  # or of the wrong type
    BAD_PAYLOAD = "bad_payload"  # media that is not base64
    UNSUPPORTED_FORMAT = "unsupported_format"  # a start whose audio we cannot carry
    WRONG_STREAM = "wrong_stream"  # names another stream
    OUT_OF_ORDER = "out_of_order"


@dataclasses.dataclass(frozen=True)
class MessageMalformed:
    """A message that was skipped, and why (the driver logs it; the call goes on)."""

    reason: MalformedReason
    detail: str


@dataclasses.dataclass(frozen=True)
class StreamConnected:
    """The socket is the provider's (``connected``; Plivo sends none)."""

    protocol: str
    version: str


@dataclasses.dataclass(frozen=True)
class StreamStarted:
    """The stream's metadata (``start``), with the parameters our answer gave it.

    ``stream_sid`` and ``call_sid`` are the provider's stream and call ids
    (Telnyx's ``stream_id`` and ``call_control_id``, Plivo's ``streamId`` and
    ``callId``); ``encoding`` is the caller's G.711 law, 8 kHz mono.
    """

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    sample_rate: int
    custom_parameters: Mapping[str, str]
    encoding: AudioEncoding = AudioEncoding.MULAW


@dataclasses.dataclass(frozen=True)
class MediaReceived:
    """20 ms (usually) of the caller's audio, G.711 bytes; ``timestamp_ms`` into the stream."""

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
    """The provider returned the mark (Plivo: checkpoint) named ``name``."""

    name: str


@dataclasses.dataclass(frozen=True)
class ClearAcknowledged:
    """The provider dropped the audio it held, as asked (Plivo's ``clearedAudio``)."""


@dataclasses.dataclass(frozen=True)
class StreamErrored:
    """The provider reported an error on the stream (Telnyx's ``error``); the stream goes on."""

    code: str
    detail: str


@dataclasses.dataclass(frozen=True)
class StreamStopped:
    """The stream ended (the caller hung up, or the call left the stream)."""


StreamEvent = (
    StreamConnected
    | StreamStarted
    | MediaReceived
    | DtmfReceived
    | MarkEchoed
    | ClearAcknowledged
    | StreamErrored
    | StreamStopped
    | MessageMalformed
)

INBOUND = "inbound"  # the caller's track, in every provider's naming
DTMF_DIGITS = frozenset("0123456789*#ABCD")
