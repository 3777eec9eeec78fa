"""A health probe of the realtime brain that carries no caller data.

Before a call goes back from the chained fallback to the realtime brain, the
:class:`~voxpipe.call.failover.FailoverPolicy` asks for probes. A probe is a
bare session open: connect, wait for ``session.created``, close. It sends no
client event at all, so neither the caller's audio nor their words (nor a
replay of the request that failed) ever reach a provider the call is not
using. pipecat's ``ServiceSwitcher`` leaves this to the application; LiveKit
probes by re-running the request.

Sans-I/O: the driver opens and closes the socket and reports what happened,
with ``now_ms``.
"""

from __future__ import annotations

import dataclasses
import enum

from voxpipe.call.recovery import FailureSignal, describe


class ProbeOutcome(enum.Enum):
    """How a probe ended."""

    HEALTHY = "healthy"  # session.created arrived
    REFUSED = "refused"  # the connection or the session was refused
    ERRORED = "errored"  # the session answered with an error event
    TIMED_OUT = "timed_out"  # nothing within the probe's deadline


@dataclasses.dataclass(frozen=True)
class OpenProbeSession:
    """Command: open a realtime socket for the probe; send nothing on it."""


@dataclasses.dataclass(frozen=True)
class CloseProbeSession:
    """Command: close the probe's socket."""


@dataclasses.dataclass(frozen=True)
class ProbeFinished:
    """The probe is over; ``healthy`` is what the failover policy is told."""

    outcome: ProbeOutcome
    detail: str
    duration_ms: int

    @property
    def healthy(self) -> bool:
        """Whether the brain looked able to take the call."""
        return self.outcome is ProbeOutcome.HEALTHY


ProbeCommand = OpenProbeSession | CloseProbeSession | ProbeFinished


class HealthProbe:
    """One probe, from open to verdict (see the module docstring)."""

    def __init__(self, *, timeout_ms: int = 5_000) -> None:
        self.timeout_ms = timeout_ms
        self._started_ms: int | None = None
        self.result: ProbeFinished | None = None

    def start(self, now_ms: int) -> list[ProbeCommand]:
        """Begin: open a socket."""
        self._started_ms = now_ms
        return [OpenProbeSession()]

    def server_event(
        self, event_type: str, error_code: str | None, now_ms: int
    ) -> list[ProbeCommand]:
        """A server event on the probe's socket (only its type and error code matter)."""
        if event_type == "session.created":
            return self._finish(ProbeOutcome.HEALTHY, "session created", now_ms)
        if event_type == "error":
            return self._finish(ProbeOutcome.ERRORED, f"error {error_code}", now_ms)
        return []

    def failed(self, signal: FailureSignal, now_ms: int) -> list[ProbeCommand]:
        """The socket could not be opened, or closed before the session was created."""
        return self._finish(ProbeOutcome.REFUSED, describe(signal), now_ms)

    def tick(self, now_ms: int) -> list[ProbeCommand]:
        """Timer: a probe that hears nothing within ``timeout_ms`` failed."""
        if self._started_ms is None or now_ms - self._started_ms < self.timeout_ms:
            return []
        return self._finish(ProbeOutcome.TIMED_OUT, f"nothing in {self.timeout_ms} ms", now_ms)

    def _finish(self, outcome: ProbeOutcome, detail: str, now_ms: int) -> list[ProbeCommand]:
        if self.result is not None or self._started_ms is None:
            return []  # over already: a late event changes nothing
        self.result = ProbeFinished(outcome, detail, now_ms - self._started_ms)
        return [CloseProbeSession(), self.result]
