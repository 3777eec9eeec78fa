"""Fault injection: what a test or benchmark can make the server do wrong.

Off unless the server was built with ``fault_injection=True`` (the CLI's
``--fault-injection``); then faults are armed in process through
:class:`FaultInjector` or over HTTP at ``POST /v1/_voxpipe/faults`` with the
server's API key. An ordinary client can never arm one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from voxpipe.errors import ConfigError

CLOSE_INTERNAL_ERROR = 1011
CLOSE_GOING_AWAY = 1001


class FaultKind(enum.Enum):
    """The faults the server can inject."""

    CLOSE_MID_RESPONSE = "close_mid_response"
    SEND_ERROR = "send_error"
    REFUSE_NEXT_CONNECTION = "refuse_next_connection"
    EXHAUST_RATE_LIMITS = "exhaust_rate_limits"
    STALL = "stall"


@dataclass(frozen=True)
class CloseMidResponse:
    """Close the socket after the first audio delta of the next response.

    ``after_ms``: only once that much of its audio went out (a cut mid-reply).
    """

    code: int = CLOSE_INTERNAL_ERROR
    after_ms: int = 0


@dataclass(frozen=True)
class SendError:
    """Send this ``error`` event to every live session; optionally close after it."""

    error_type: str = "server_error"
    code: str = "server_error"
    message: str = "The server had an error while processing your request."
    close_code: int | None = None


@dataclass(frozen=True)
class RefuseNextConnection:
    """Answer the next WebSocket handshake with 401."""


@dataclass(frozen=True)
class ExhaustRateLimits:
    """Empty every live session's rate limits for ``reset_seconds``."""

    reset_seconds: float = 60.0


@dataclass(frozen=True)
class Stall:
    """Stop sending events for ``seconds`` after the next response's first audio delta.

    ``after_ms``: only once that much of its audio went out (a stall mid-reply).
    """

    seconds: float = 5.0
    after_ms: int = 0


Fault = CloseMidResponse | SendError | RefuseNextConnection | ExhaustRateLimits | Stall
_BY_KIND: dict[FaultKind, type[Any]] = {
    FaultKind.CLOSE_MID_RESPONSE: CloseMidResponse,
    FaultKind.SEND_ERROR: SendError,
    FaultKind.REFUSE_NEXT_CONNECTION: RefuseNextConnection,
    FaultKind.EXHAUST_RATE_LIMITS: ExhaustRateLimits,
    FaultKind.STALL: Stall,
}


def fault_from_json(data: dict[str, Any]) -> Fault:
    """A fault from ``{"kind": "...", ...fields}`` (the control endpoint's body)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a fault is a JSON object, not {type(data).__name__}")
    try:
        kind = FaultKind(data.get("kind"))
        fields = {k: v for k, v in data.items() if k != "kind"}
        fault: Fault = _BY_KIND[kind](**fields)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad fault specification {data!r}: {exc}") from exc
    return fault


class FaultInjector:
    """Armed faults, consumed by the connections they hit."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._armed: list[Fault] = []
        self._listeners: list[Any] = []

    def arm(self, fault: Fault) -> None:
        """Arm ``fault``; immediate faults reach every live session now."""
        if not self.enabled:
            raise ConfigError(
                "fault injection is off", hint="start the server with fault_injection=True"
            )
        if isinstance(fault, SendError | ExhaustRateLimits):
            for listener in list(self._listeners):
                listener(fault)
            return
        self._armed.append(fault)

    def disarm(self, kind: type[Fault]) -> int:
        """Drop every armed fault of type ``kind`` (the outage is over); how many there were."""
        dropped = [f for f in self._armed if isinstance(f, kind)]
        self._armed = [f for f in self._armed if not isinstance(f, kind)]
        return len(dropped)

    def take(self, kind: type[Fault]) -> Fault | None:
        """Consume the first armed fault of type ``kind``."""
        for fault in self._armed:
            if isinstance(fault, kind):
                self._armed.remove(fault)
                return fault
        return None

    def subscribe(self, listener: Any) -> None:
        """Register a live session for immediate faults."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Any) -> None:
        """Forget a closed session."""
        if listener in self._listeners:
            self._listeners.remove(listener)
