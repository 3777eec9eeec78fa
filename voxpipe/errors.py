"""One error tree for voxpipe.

Every error says who broke the rules (:class:`Side`) and whether trying again
can help (``retryable``). Applications branch on the class or on these two
attributes, never on message text.
"""

from __future__ import annotations

import enum


class Side(enum.Enum):
    """Which side of a boundary caused the error."""

    LOCAL = "local"
    REMOTE = "remote"


class VoxpipeError(Exception):
    """Base of every error voxpipe raises on purpose."""

    side: Side = Side.LOCAL
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(VoxpipeError):
    """The caller configured something that cannot work."""


class ModelMissingError(VoxpipeError):
    """A local model's weights are not installed; ``hint`` says how to install them."""


class AudioFormatError(VoxpipeError):
    """Audio that cannot be read or converted (corrupt, unsupported, empty)."""


class LocalProtocolError(VoxpipeError):
    """We were about to break the Realtime protocol (a bug in our code or the caller's)."""


class RemoteProtocolError(VoxpipeError):
    """The peer broke the Realtime protocol or answered with an ``error`` event."""

    side = Side.REMOTE

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.error_type = error_type
        self.code = code


class TransportError(VoxpipeError):
    """A socket closed or the network failed; reconnecting can help."""

    side = Side.REMOTE
    retryable = True


class SessionError(VoxpipeError):
    """The session can no longer be used (expired, unauthorised); a new session can help."""

    side = Side.REMOTE
    retryable = True


class FatalProviderError(VoxpipeError):
    """The provider refuses service (bad key, no quota, billing limit): stop retrying."""

    side = Side.REMOTE
    retryable = False

    def __init__(self, message: str, *, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class IllegalTransitionError(LocalProtocolError):
    """A state machine was asked for a move its transition table does not allow."""


class RetryBudgetExhaustedError(VoxpipeError):
    """Reconnects kept failing until the retry budget ran out: stop, fail over or end.

    ``last_error`` is the failure that used up the budget (a TransportError or
    SessionError); ``attempts`` counts the reconnects tried.
    """

    side = Side.REMOTE
    retryable = False

    def __init__(
        self, message: str, *, last_error: VoxpipeError, attempts: int, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.last_error = last_error
        self.attempts = attempts


class TokenRotationError(VoxpipeError):
    """Minting an ephemeral secret failed; the provider retries it in the background."""

    side = Side.REMOTE
    retryable = True


class OfferRejectReason(enum.Enum):
    """Why a browser's SDP offer was refused before any peer connection was built."""

    TOO_LARGE = "too_large"  # over the size limit
    NOT_SDP = "not_sdp"  # does not parse as SDP
    NO_AUDIO = "no_audio"  # no audio m-line
    AUDIO_NOT_FIRST = "audio_not_first"  # the audio m-line is not the first one
    UNSUPPORTED_MEDIA = "unsupported_media"  # video, a second audio stream, ...
    NO_OPUS = "no_opus"  # the audio m-line offers no opus/48000/2
    NO_ICE_CREDENTIALS = "no_ice_credentials"  # ice-ufrag or ice-pwd missing or invalid


class OfferRejected(VoxpipeError):
    """The page sent an offer voxpipe will not answer; the message is for the browser's user.

    The same offer fails the same way again, so a retry cannot help.
    """

    side = Side.REMOTE
    retryable = False

    def __init__(self, message: str, *, reason: OfferRejectReason, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class CallTokenRejectReason(enum.Enum):
    """Why a call token (or a resume token) was refused."""

    MALFORMED = "malformed"  # not shaped like a token at all
    FORGED = "forged"  # shaped like one, but not signed with this server's secret
    EXPIRED = "expired"  # past its expiry
    REUSED = "reused"  # a single-use call token presented a second time
    REVOKED = "revoked"  # a resume token replaced by a newer one, or its call is over


class CallTokenRejected(VoxpipeError):
    """The caller's token does not admit them; the same token never will."""

    side = Side.REMOTE
    retryable = False

    def __init__(
        self, message: str, *, reason: CallTokenRejectReason, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class WebhookRejectReason(enum.Enum):
    """Why a provider's webhook request was refused."""

    MISSING = "missing"  # no signature where one is required
    INVALID = "invalid"  # a signature that does not match the request
    STALE = "stale"  # signed, but at a time too far from now
    REPLAYED = "replayed"  # a signed request already answered once


class WebhookRejected(VoxpipeError):
    """A webhook request that does not prove it comes from the provider (HTTP 403).

    The same request fails the same way again, so a retry cannot help.
    """

    side = Side.REMOTE
    retryable = False

    def __init__(
        self, message: str, *, reason: WebhookRejectReason, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class DailyJoinFailure(enum.Enum):
    """Why the agent could not join a Daily room."""

    INVALID_URL = "invalid_url"  # not a room URL at all (checked before joining)
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_EXPIRED = "room_expired"  # past the room's exp (or before its nbf)
    ROOM_FULL = "room_full"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    NOT_ALLOWED = "not_allowed"  # a private room without a valid token
    UNREACHABLE = "unreachable"  # Daily could not be reached
    TIMED_OUT = "timed_out"  # no answer within the join timeout
    REFUSED = "refused"  # Daily said no, for a reason voxpipe does not know


class DailyJoinFailed(VoxpipeError):
    """The agent could not join its Daily room; ``reason`` says why.

    A network failure or a timeout may pass (``retryable``); a missing room or
    an expired token will not.
    """

    side = Side.REMOTE

    def __init__(self, message: str, *, reason: DailyJoinFailure, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.retryable = reason in (DailyJoinFailure.UNREACHABLE, DailyJoinFailure.TIMED_OUT)
        if reason is DailyJoinFailure.INVALID_URL:
            self.side = Side.LOCAL


class DailyApiError(VoxpipeError):
    """Daily's REST API refused a request or could not be reached (creating a room, a token).

    ``status`` is the HTTP status (None: no answer); a 5xx or no answer may pass.
    """

    side = Side.REMOTE

    def __init__(self, message: str, *, status: int | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.retryable = status is None or status >= 500


class SlotFailedError(VoxpipeError):
    """A chained slot could not serve one request (:mod:`voxpipe.slot_fallback`).

    Every engine of the slot failed on it, or the engine that had begun
    answering broke and the slot does not hand a partial answer on. The next
    request tries again (an engine may have been slow only under load), so it
    is retryable; ``engines`` are the engines that failed, in order.
    """

    retryable = True

    def __init__(
        self, message: str, *, slot: str, engines: tuple[str, ...], hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.slot = slot
        self.engines = engines


class ScenarioError(ConfigError):
    """An eval scenario file that cannot be run (``voxpipe eval``); ``path`` and ``key`` say where.

    The same file fails the same way again, so a retry cannot help; nothing has run yet.
    """

    def __init__(self, path: str, key: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {key}: {message}", hint=hint)
        self.path = path
        self.key = key


class AgentsProblem(enum.Enum):
    """What is wrong with the agents of an agent file."""

    MISSING_START = "missing_start"  # [agents.*] given, no top-level start
    UNKNOWN_START = "unknown_start"  # start names no agent
    UNKNOWN_TARGET = "unknown_target"  # a handoff to an agent that does not exist
    UNKNOWN_TOOL = "unknown_tool"  # an agent lists a tool the application did not give
    TOOL_NAME_COLLISION = "tool_name_collision"  # one tool name twice in an agent's tools
    TWO_VOICES = "two_voices"  # realtime: one voice per call
    UNKNOWN_VOICE = "unknown_voice"  # chained: a voice the call's TTS does not have
    BAD_VALUE = "bad_value"  # a value of the wrong type or shape
    UNKNOWN_KEY = "unknown_key"  # a key the agents tables do not know
    TOOL_NEEDS_HANDLER = "tool_needs_handler"  # a CLI call: the tool has no handler to run
    CANNOT_COMBINE = "cannot_combine"  # beside a setting that would answer without the agents


class AgentsConfigError(ConfigError):
    """An agents table that cannot work; ``problem``, ``source`` and ``key`` say which."""

    def __init__(
        self,
        problem: AgentsProblem,
        source: str,
        key: str,
        message: str,
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{source}: {key}: {message}", hint=hint)
        self.problem = problem
        self.source = source
        self.key = key


class DelegationConfigError(ConfigError):
    """``[delegate]`` in an agent file cannot work (``voxpipe.delegation``); ``path`` and
    ``key`` say where. Nothing has run yet; the same file fails the same way again.
    """

    def __init__(self, path: str, key: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {key}: {message}", hint=hint)
        self.path = path
        self.key = key
