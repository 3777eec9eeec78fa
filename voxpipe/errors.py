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
