"""The playback clock: how much of each bot utterance the caller has heard.

Sans-I/O: the output transport tells it when each chunk of audio *started*
playing (``now_ms`` passed in); it answers how many ms of an utterance have
been played by a given time, counting the chunk in flight only up to ``now``.
Truncation after an interruption uses this figure, never a wall-clock guess.
Utterances are keyed by the id the brain gave them (the assistant item id on
the realtime path, the TTS context id on the chained path).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Utterance:
    started_at_ms: float
    completed_ms: float = 0.0  # chunks fully played
    chunk_start_ms: float | None = None  # the chunk in flight
    chunk_ms: float = 0.0
    frozen_ms: float | None = None  # set when playback was cut


@dataclass
class PlaybackClock:
    """Per-utterance played duration, fed by an output transport."""

    current: str | None = None
    total_played_ms: float = 0.0
    _utterances: dict[str, _Utterance] = field(default_factory=dict)

    def begin(self, key: str, now_ms: float) -> None:
        """The audio that follows belongs to utterance ``key``."""
        self._settle(now_ms)
        self.current = key
        self._utterances.setdefault(key, _Utterance(started_at_ms=now_ms))

    def chunk_started(self, duration_ms: float, now_ms: float, key: str | None = None) -> None:
        """A chunk of ``duration_ms`` began playing at ``now_ms``."""
        if key is not None and key != self.current:
            self.begin(key, now_ms)
        if self.current is None:
            self.begin("", now_ms)
        self._settle(now_ms)
        utterance = self._utterances[self.current or ""]
        utterance.chunk_start_ms = now_ms
        utterance.chunk_ms = duration_ms

    def played_ms(self, key: str, now_ms: float) -> float:
        """Milliseconds of ``key`` heard by ``now_ms`` (0 for an unknown key)."""
        utterance = self._utterances.get(key)
        if utterance is None:
            return 0.0
        if utterance.frozen_ms is not None:
            return utterance.frozen_ms
        return utterance.completed_ms + _in_flight(utterance, now_ms)

    def interrupted(self, now_ms: float) -> None:
        """Playback stopped at ``now_ms``: the chunk in flight counts only up to here."""
        for utterance in self._utterances.values():
            if utterance.frozen_ms is None:
                played = utterance.completed_ms + _in_flight(utterance, now_ms)
                self.total_played_ms += _in_flight(utterance, now_ms)
                utterance.completed_ms = played
                utterance.chunk_start_ms = None
                utterance.frozen_ms = played
        self.current = None

    def _settle(self, now_ms: float) -> None:
        """Move a chunk whose time has passed from in-flight to completed."""
        if self.current is None:
            return
        utterance = self._utterances[self.current]
        if utterance.chunk_start_ms is None:
            return
        played = _in_flight(utterance, now_ms)
        utterance.completed_ms += played
        self.total_played_ms += played
        utterance.chunk_start_ms = None


def _in_flight(utterance: _Utterance, now_ms: float) -> float:
    if utterance.chunk_start_ms is None:
        return 0.0
    return max(0.0, min(utterance.chunk_ms, now_ms - utterance.chunk_start_ms))
