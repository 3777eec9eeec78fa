"""voxpipe's realtime speech-to-speech service (pipecat's, made fit for live calls).

:class:`RealtimeService` is a thin driver over the sans-I/O
:class:`~voxpipe.call.realtime_call.RealtimeCall`; the events it publishes are
in :mod:`voxpipe.call.events` (re-exported here).
"""

from voxpipe.call.events import (
    CallEvent,
    CallFailed,
    EventIgnored,
    IgnoreReason,
    InterruptionHandled,
    ItemTruncated,
    ProviderErrorSeen,
    RateLimit,
    RateLimitsUpdated,
    Reconnected,
    Reconnecting,
    ResponseCancelled,
    ResponseCreated,
    ResponseRequested,
    RolledOver,
    ServerSpeechStopped,
    TokenRotated,
    timeline_entry,
)
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.processors.realtime.service import RealtimeService

__all__ = [
    "CallEvent",
    "CallFailed",
    "EventIgnored",
    "IgnoreReason",
    "InterruptionHandled",
    "ItemTruncated",
    "ProviderErrorSeen",
    "RateLimit",
    "RateLimitsUpdated",
    "RealtimeCallEventFrame",
    "RealtimeService",
    "Reconnected",
    "Reconnecting",
    "ResponseCancelled",
    "ResponseCreated",
    "ResponseRequested",
    "RolledOver",
    "ServerSpeechStopped",
    "TokenRotated",
    "timeline_entry",
]
