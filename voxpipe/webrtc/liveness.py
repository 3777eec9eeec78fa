"""Is the browser still there? A verdict from what was heard and when.

aiortc notices a dead browser (tab killed, network gone) only when ICE
consent expires, 26-28 s later, and a call that nobody hears keeps its brain
session open that long. The page instead pings over the data channel about
once a second; a peer heard from within ``timeout_ms`` (5 s) is alive, so a
dead one is declared at most 5 s after its last sign of life, four lost pings
notwithstanding. A peer that never connects is declared dead
``connect_timeout_ms`` after it was opened, so a half-finished offer holds no
call.

The driver feeds what happened (``opened``, ``connected``, ``heard``,
``closed``), each with its ``now_ms``, and asks :meth:`PeerLiveness.verdict`;
an :class:`Alive` verdict carries the deadline at which to ask again. Death
is final and dated: it happened at the deadline that passed, whenever the
driver asks, and nothing heard afterwards undoes it.
"""

from __future__ import annotations

import dataclasses
import enum

from voxpipe.errors import ConfigError, LocalProtocolError


class DeadReason(enum.Enum):
    """Why a peer is considered gone."""

    NEVER_CONNECTED = "never_connected"  # no connection within connect_timeout_ms
    SILENT = "silent"  # connected, then nothing heard for timeout_ms
    CLOSED = "closed"  # the connection was closed (either side)


@dataclasses.dataclass(frozen=True)
class Alive:
    """The peer may still be there; ask again at ``deadline_ms`` unless heard sooner."""

    connected: bool
    deadline_ms: float


@dataclasses.dataclass(frozen=True)
class Dead:
    """The peer is gone since ``at_ms``; end its call."""

    reason: DeadReason
    at_ms: float


Verdict = Alive | Dead


class PeerLiveness:
    """The liveness of one peer connection, from its events and the time."""

    def __init__(self, timeout_ms: float = 5000, connect_timeout_ms: float = 10_000) -> None:
        if timeout_ms <= 0 or connect_timeout_ms <= 0:
            raise ConfigError("liveness timeouts must be positive")
        self._timeout_ms = timeout_ms
        self._connect_timeout_ms = connect_timeout_ms
        self._opened_ms: float | None = None
        self._last_sign_ms: float | None = None  # connected or heard; None until connected
        self._dead: Dead | None = None

    def opened(self, now_ms: float) -> None:
        """The peer connection was created (the offer was accepted)."""
        if self._opened_ms is not None:
            raise LocalProtocolError("PeerLiveness.opened called twice")
        self._opened_ms = now_ms

    def connected(self, now_ms: float) -> None:
        """ICE and DTLS are up (again, after an ICE restart)."""
        self._sign_of_life(now_ms)

    def heard(self, now_ms: float) -> None:
        """A data-channel ping or any message arrived; it implies a connection."""
        self._sign_of_life(now_ms)

    def closed(self, now_ms: float) -> None:
        """The connection closed or failed; the peer is dead from ``now_ms`` (unless already)."""
        if self._settled(now_ms) is None:
            self._dead = Dead(DeadReason.CLOSED, now_ms)

    def verdict(self, now_ms: float) -> Verdict:
        """Alive with the deadline to ask again, or Dead since when and why."""
        return self._settled(now_ms) or Alive(
            connected=self._last_sign_ms is not None, deadline_ms=self._deadline_ms()
        )

    def _sign_of_life(self, now_ms: float) -> None:
        if self._settled(now_ms) is None:
            last = self._last_sign_ms
            self._last_sign_ms = now_ms if last is None else max(last, now_ms)

    def _settled(self, now_ms: float) -> Dead | None:
        """The death, if one has happened by ``now_ms``; it is recorded for good."""
        if self._opened_ms is None:
            raise LocalProtocolError("PeerLiveness needs opened() before anything else")
        if self._dead is None and now_ms >= self._deadline_ms():
            reason = DeadReason.NEVER_CONNECTED if self._last_sign_ms is None else DeadReason.SILENT
            self._dead = Dead(reason, self._deadline_ms())
        return self._dead

    def _deadline_ms(self) -> float:
        if self._last_sign_ms is None:
            assert self._opened_ms is not None  # _settled checked
            return self._opened_ms + self._connect_timeout_ms
        return self._last_sign_ms + self._timeout_ms
