"""Classified recovery: what broke, whether to retry, and when.

Failures fall into three classes. TRANSPORT (the socket closed with 1001,
1006, 1011..., a network error, a 5xx on connect): reconnect with bounded,
jittered exponential backoff and restore context from the call's memory.
SESSION (401/403, ``session_expired``, an expired secret): mint a new
secret, open a new session, restore context. FATAL (``invalid_api_key``,
``insufficient_quota``, ``billing_hard_limit_reached``, a 400/404 on
connect): stop and surface a typed error. A retry budget (consecutive
attempts, and attempts per sliding window) means a reconnect loop always ends.

The random source is injected, so tests see exact delays.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Callable

from voxpipe.errors import (
    ConfigError,
    FatalProviderError,
    RetryBudgetExhaustedError,
    SessionError,
    TransportError,
    VoxpipeError,
)


class FailureClass(enum.Enum):
    """How a failure is recovered from."""

    TRANSPORT = "transport"  # reconnect with backoff
    SESSION = "session"  # new secret, new session
    FATAL = "fatal"  # stop; tell the application


@dataclasses.dataclass(frozen=True)
class SocketClosed:
    """The WebSocket closed with ``code`` while the call was live."""

    code: int
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class NetworkFailed:
    """Connecting or sending failed below the WebSocket (DNS, reset, timeout)."""

    detail: str


@dataclasses.dataclass(frozen=True)
class HandshakeRejected:
    """The WebSocket upgrade or the secret minting answered an HTTP error."""

    status: int
    code: str | None = None


@dataclasses.dataclass(frozen=True)
class ProviderErrored:
    """An ``error`` server event (``error.code``, ``error.type``)."""

    code: str | None
    error_type: str | None = None
    message: str = ""


FailureSignal = SocketClosed | NetworkFailed | HandshakeRejected | ProviderErrored

FATAL_CODES = frozenset({"invalid_api_key", "insufficient_quota", "billing_hard_limit_reached"})
SESSION_CODES = frozenset(
    {"session_expired", "expired_token", "token_expired", "invalid_client_secret"}
)
TRANSPORT_CODES = frozenset({"server_error", "internal_error", "service_unavailable"})
# Protocol-level closes (bad frame, bad data, too big, policy): the socket
# cannot be reused but a fresh session may work; the budget bounds the tries.
SESSION_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
FATAL_HTTP_STATUSES = frozenset({400, 404})
SESSION_HTTP_STATUSES = frozenset({401, 403})


def classify(signal: FailureSignal) -> FailureClass | None:
    """The class of ``signal``, or None when it is no connection failure.

    ``error`` events such as ``conversation_already_has_active_response`` are
    not failures of the connection: other cores handle them.
    """
    if isinstance(signal, NetworkFailed):
        return FailureClass.TRANSPORT
    if isinstance(signal, SocketClosed):
        if signal.code in SESSION_CLOSE_CODES:
            return FailureClass.SESSION
        return FailureClass.TRANSPORT  # 1000/1001/1006/1011/1012/1013 and unknown codes
    if signal.code in FATAL_CODES:
        return FailureClass.FATAL
    if signal.code in SESSION_CODES:
        return FailureClass.SESSION
    if isinstance(signal, HandshakeRejected):
        if signal.status in SESSION_HTTP_STATUSES:
            return FailureClass.SESSION
        if signal.status in FATAL_HTTP_STATUSES:
            return FailureClass.FATAL
        return FailureClass.TRANSPORT  # 408, 429, 5xx: the service is busy or blipped
    if signal.code in TRANSPORT_CODES:
        return FailureClass.TRANSPORT
    return None


def describe(signal: FailureSignal) -> str:
    """A short, stable description for logs and the timeline."""
    if isinstance(signal, SocketClosed):
        return f"socket closed {signal.code} {signal.reason}".rstrip()
    if isinstance(signal, NetworkFailed):
        return f"network error: {signal.detail}"
    if isinstance(signal, HandshakeRejected):
        return f"HTTP {signal.status}" + (f" {signal.code}" if signal.code else "")
    return f"provider error {signal.code}: {signal.message}".rstrip(": ")


def to_error(signal: FailureSignal, failure_class: FailureClass) -> VoxpipeError:
    """The typed error the application sees for ``signal``."""
    text = describe(signal)
    if failure_class is FailureClass.FATAL:
        code = signal.code if isinstance(signal, HandshakeRejected | ProviderErrored) else None
        return FatalProviderError(text, code=code or "unknown", hint="check the key and billing")
    if failure_class is FailureClass.SESSION:
        return SessionError(text, hint="a new secret and session will be tried")
    return TransportError(text, hint="reconnecting with backoff")


@dataclasses.dataclass(frozen=True)
class BackoffConfig:
    """Exponential backoff with jitter, and the retry budget."""

    initial_ms: int = 250
    max_ms: int = 10_000
    multiplier: float = 2.0
    jitter: float = 0.5  # share of each delay that is random: 0 = none, 1 = full jitter
    max_consecutive: int = 6  # attempts without a successful connection
    max_in_window: int = 12  # attempts within window_ms, successes or not
    window_ms: int = 10 * 60_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0 or self.multiplier < 1.0:
            raise ConfigError("jitter must be within [0, 1] and multiplier >= 1")
        if self.initial_ms < 0 or self.max_ms < self.initial_ms:
            raise ConfigError("need 0 <= initial_ms <= max_ms")
        if self.max_consecutive < 1 or self.max_in_window < 1:
            raise ConfigError("the retry budget must allow at least one attempt")

    def delay_ms(self, attempt: int, random: float) -> int:
        """Delay before ``attempt`` (1-based); ``random`` is in [0, 1)."""
        ceiling = min(self.max_ms, self.initial_ms * self.multiplier ** (attempt - 1))
        return int(ceiling * (1.0 - self.jitter) + ceiling * self.jitter * random)


@dataclasses.dataclass(frozen=True)
class Reconnect:
    """Command: reconnect at ``at_ms``; mint a new secret first if ``refresh_secret``."""

    failure_class: FailureClass
    attempt: int
    delay_ms: int
    at_ms: int
    refresh_secret: bool
    error: VoxpipeError


@dataclasses.dataclass(frozen=True)
class GiveUp:
    """Command: stop reconnecting; ``error`` is what the application should see."""

    failure_class: FailureClass
    attempts: int
    error: VoxpipeError


RecoveryAction = Reconnect | GiveUp


class RecoveryPolicy:
    """Turns failure signals into reconnect or give-up commands.

    ``random`` returns floats in [0, 1): ``random.Random(seed).random`` in
    tests, ``random.random`` in production.
    """

    def __init__(self, random: Callable[[], float], config: BackoffConfig | None = None) -> None:
        self._random = random
        self.config = config or BackoffConfig()
        self._consecutive = 0
        self._recent: deque[int] = deque()
        self.total_attempts = 0
        self.counts: dict[FailureClass, int] = dict.fromkeys(FailureClass, 0)

    def on_failure(self, signal: FailureSignal, now_ms: int) -> RecoveryAction | None:
        """Decide what to do about ``signal``; None when it is no connection failure."""
        failure_class = classify(signal)
        if failure_class is None:
            return None
        self.counts[failure_class] += 1
        error = to_error(signal, failure_class)
        if failure_class is FailureClass.FATAL:
            return GiveUp(failure_class, self._consecutive, error)
        self._forget_before(now_ms - self.config.window_ms)
        if self._budget_spent():
            spent = RetryBudgetExhaustedError(
                f"gave up after {self._consecutive} consecutive reconnects "
                f"({len(self._recent)} in the last {self.config.window_ms // 1000} s): "
                f"{describe(signal)}",
                last_error=error,
                attempts=self.total_attempts,
                hint="fail over to another brain or end the call",
            )
            return GiveUp(failure_class, self.total_attempts, spent)
        self._consecutive += 1
        self.total_attempts += 1
        self._recent.append(now_ms)
        delay = self.config.delay_ms(self._consecutive, self._random())
        refresh = failure_class is FailureClass.SESSION
        return Reconnect(failure_class, self._consecutive, delay, now_ms + delay, refresh, error)

    def on_connected(self) -> None:
        """A (re)connection succeeded: the consecutive count starts again.

        The sliding window is not reset, so a socket that connects and then
        drops at once still runs out of budget.
        """
        self._consecutive = 0

    def reset(self) -> None:
        """Start afresh: the brain this budget guarded was judged healthy again.

        After a switch back from the fallback (healthy probes, a new session)
        the failures that sent the call away are not held against the brain.
        """
        self._consecutive = 0
        self._recent.clear()

    def _budget_spent(self) -> bool:
        return (
            self._consecutive >= self.config.max_consecutive
            or len(self._recent) >= self.config.max_in_window
        )

    def _forget_before(self, cutoff_ms: int) -> None:
        while self._recent and self._recent[0] <= cutoff_ms:
            self._recent.popleft()
