"""voxpipe's realtime speech-to-speech service (pipecat's, made fit for live calls).

See :class:`RealtimeService`; its events are in :mod:`.events`.
"""

from voxpipe.processors.realtime.events import (
    CallEvent,
    CallFailed,
    InterruptionHandled,
    ItemTruncated,
    ProviderErrorSeen,
    RateLimit,
    RateLimitsUpdated,
    RealtimeCallEventFrame,
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
from voxpipe.processors.realtime.service import RealtimeService

__all__ = [
    "CallEvent",
    "CallFailed",
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
