"""Sans-I/O cores of a live call: no asyncio, no sockets, no clock reads.

Time is an argument (``now_ms``), events go in, commands come out; the
realtime service is the thin driver that owns sockets and timers.

- :mod:`~voxpipe.call.realtime_call`: :class:`RealtimeCall`, every decision of a
  realtime call (server events, interruptions, reports and ticks in; commands out),
  with its session half in :mod:`~voxpipe.call.connection`.
- :mod:`~voxpipe.call.commands` and :mod:`~voxpipe.call.events`: what it asks the
  driver to do, and what it tells the application.
- :mod:`~voxpipe.call.state`: the call state machine (transition table).
- :mod:`~voxpipe.call.response_guard`: one response at a time, cancels that land.
- :mod:`~voxpipe.call.record`: the conversation as the call remembers it.
- :mod:`~voxpipe.call.rollover`: when to roll a session over and what seeds the next.
- :mod:`~voxpipe.call.recovery`: transport / session / fatal, backoff, retry budget.
- :mod:`~voxpipe.call.failover`: when the call leaves the realtime brain for the
  chained one and comes back; :mod:`~voxpipe.call.probe`: the caller-data-free probe;
  :mod:`~voxpipe.call.turn_boundary`: when the chained brain is between turns.
- :mod:`~voxpipe.call.tokens`: when to mint the next ephemeral secret.
- :mod:`~voxpipe.call.user_audio`: hold and replay user audio across a session switch.
- :mod:`~voxpipe.call.session_audio`: which caller frame sits at a session audio position.
"""

from voxpipe.call.config import CallConfig, TurnDetection
from voxpipe.call.failover import (
    Brain,
    FailoverConfig,
    FailoverPolicy,
    PrepareFallback,
    ProbeRealtime,
    SwitchBrain,
    SwitchReason,
)
from voxpipe.call.probe import HealthProbe, ProbeFinished, ProbeOutcome
from voxpipe.call.record import ConversationRecord
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
    "BackoffConfig",
    "Brain",
    "CallConfig",
    "CallContext",
    "CallMemory",
    "CallState",
    "CallStateMachine",
    "CallTrigger",
    "CancelConfirmed",
    "ConversationRecord",
    "ExtractiveSummariser",
    "FailoverConfig",
    "FailoverPolicy",
    "FailureClass",
    "GiveUp",
    "GuardErrorCode",
    "HandshakeRejected",
    "HealthProbe",
    "InterruptionSource",
    "NetworkFailed",
    "PrepareFallback",
    "ProbeFinished",
    "ProbeOutcome",
    "ProbeRealtime",
    "ProviderErrored",
    "PruneDue",
    "RealtimeCall",
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
    "Summariser",
    "SwitchBrain",
    "SwitchReason",
    "TokenMode",
    "TokenRotationPolicy",
    "TransitionRejected",
    "Turn",
    "TurnDetection",
    "UserAudioRelay",
    "classify",
]


def __getattr__(name: str) -> object:
    # RealtimeCall speaks in ``openai`` types: imported on first use, so that the
    # light parts of this package (rollover settings for ``voxpipe cost``) stay light.
    if name == "RealtimeCall":
        from voxpipe.call.realtime_call import RealtimeCall

        return RealtimeCall
    raise AttributeError(f"module 'voxpipe.call' has no attribute {name!r}")
