"""Sans-I/O cores of a live call: no asyncio, no sockets, no clock reads.

Time is an argument (``now_ms``), events go in, commands come out; the
realtime service is the thin driver that owns sockets and timers.

- :mod:`~voxpipe.call.state`: the call state machine (transition table).
- :mod:`~voxpipe.call.playback`: heard versus received audio per assistant item.
- :mod:`~voxpipe.call.response_guard`: one response at a time, cancels that land.
- :mod:`~voxpipe.call.interruption`: stop, cancel, truncate, in that order.
- :mod:`~voxpipe.call.rollover`: when to roll a session over and what seeds the next.
- :mod:`~voxpipe.call.recovery`: transport / session / fatal, backoff, retry budget.
- :mod:`~voxpipe.call.tokens`: when to mint the next ephemeral secret.
- :mod:`~voxpipe.call.user_audio`: hold and replay user audio across a session switch.
- :mod:`~voxpipe.call.session_audio`: which caller frame sits at a session audio position.
"""

from voxpipe.call.interruption import InterruptionPlan, StopOutputAudio, plan_interruption
from voxpipe.call.playback import (
    AudioReceived,
    PlaybackAdvanced,
    PlaybackFinished,
    PlaybackTracker,
    TruncationPlanned,
)
from voxpipe.call.recovery import (
    BackoffConfig,
    FailureClass,
    GiveUp,
    HandshakeRejected,
    NetworkFailed,
    ProviderErrored,
    Reconnect,
    RecoveryPolicy,
    SocketClosed,
    classify,
)
from voxpipe.call.response_guard import (
    CancelConfirmed,
    GuardErrorCode,
    InterruptionSource,
    ResponseGuard,
    ResponseQueued,
    ResponseReason,
    ResponseRequest,
    ResponseRequestDropped,
    SendResponseCancel,
    SendResponseCreate,
)
from voxpipe.call.rollover import (
    CallMemory,
    ExtractiveSummariser,
    PruneDue,
    Role,
    RolloverConfig,
    RolloverDue,
    RolloverPolicy,
    RolloverReason,
    SessionSeed,
    Summariser,
    Turn,
)
from voxpipe.call.session_audio import AudioAppended, AudioLocated, SessionAudioLog
from voxpipe.call.state import (
    CallContext,
    CallState,
    CallStateMachine,
    CallTrigger,
    StateChanged,
    StateTimeouts,
    TransitionRejected,
)
from voxpipe.call.tokens import (
    RotationConfig,
    RotationFailed,
    Secret,
    SecretRotated,
    TokenMode,
    TokenRotationPolicy,
)
from voxpipe.call.user_audio import RelayStats, SendUserAudio, UserAudioRelay

__all__ = [
    "AudioAppended",
    "AudioLocated",
    "AudioReceived",
    "BackoffConfig",
    "CallContext",
    "CallMemory",
    "CallState",
    "CallStateMachine",
    "CallTrigger",
    "CancelConfirmed",
    "ExtractiveSummariser",
    "FailureClass",
    "GiveUp",
    "GuardErrorCode",
    "HandshakeRejected",
    "InterruptionPlan",
    "InterruptionSource",
    "NetworkFailed",
    "PlaybackAdvanced",
    "PlaybackFinished",
    "PlaybackTracker",
    "ProviderErrored",
    "PruneDue",
    "Reconnect",
    "RecoveryPolicy",
    "RelayStats",
    "ResponseGuard",
    "ResponseQueued",
    "ResponseReason",
    "ResponseRequest",
    "ResponseRequestDropped",
    "Role",
    "RolloverConfig",
    "RolloverDue",
    "RolloverPolicy",
    "RolloverReason",
    "RotationConfig",
    "RotationFailed",
    "Secret",
    "SecretRotated",
    "SendResponseCancel",
    "SendResponseCreate",
    "SendUserAudio",
    "SessionAudioLog",
    "SessionSeed",
    "SocketClosed",
    "StateChanged",
    "StateTimeouts",
    "StopOutputAudio",
    "Summariser",
    "TokenMode",
    "TokenRotationPolicy",
    "TransitionRejected",
    "TruncationPlanned",
    "Turn",
    "UserAudioRelay",
    "classify",
    "plan_interruption",
]
