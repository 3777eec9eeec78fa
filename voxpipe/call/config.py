"""How a realtime call behaves: turn detection, deadlines, rollover, backoff, strictness.

Plain configuration, importable without the ``openai`` package (``voxpipe cost``
reads the rollover settings and must start fast).
"""

from __future__ import annotations

import dataclasses

from voxpipe.audio import AudioFormat, ms_to_bytes
from voxpipe.call.recovery import BackoffConfig
from voxpipe.call.rollover import RolloverConfig
from voxpipe.call.state import StateTimeouts
from voxpipe.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TurnDetection:
    """Who ends the caller's turns, as the session is configured.

    ``server_vad`` False means local turn detection: the call commits the
    caller's audio itself. ``silence_ms`` is the server VAD's end-of-turn
    silence (None when its wait is not a fixed silence, as with semantic VAD).
    """

    server_vad: bool = True
    silence_ms: int | None = 500


@dataclasses.dataclass(frozen=True)
class CallConfig:
    """How a realtime call behaves; every field has a production default."""

    turns: TurnDetection = dataclasses.field(default_factory=TurnDetection)
    timeouts: StateTimeouts = dataclasses.field(default_factory=StateTimeouts)
    rollover: RolloverConfig = dataclasses.field(default_factory=RolloverConfig)
    backoff: BackoffConfig = dataclasses.field(default_factory=BackoffConfig)
    stall_timeout_ms: int = 8_000  # a response that sends nothing this long: a dead socket
    preroll_ms: int = 500  # local turns: caller audio kept to replay after a clear
    playout_stall_ms: int = 1_000  # an output position this still has finished playing
    max_rate_limit_retries: int = 4
    max_rate_limit_wait_ms: int = 30_000
    strict: bool = False  # raise on an illegal state transition (tests, development)
    # A fallback brain takes the call when this one gives up (no EndCall: a BrainGaveUp).
    fallback: bool = False
    # The session's audio both ways: PCM16 at 24 kHz, or a phone call's G.711 passed through.
    input_format: AudioFormat = AudioFormat.PCM16_24K
    output_format: AudioFormat = AudioFormat.PCM16_24K

    def __post_init__(self) -> None:
        if self.stall_timeout_ms <= 0 or self.preroll_ms < 0:
            raise ConfigError("stall_timeout_ms must be positive and preroll_ms not negative")

    @property
    def preroll_bytes(self) -> int:
        """``preroll_ms`` of the session's input format."""
        return ms_to_bytes(self.preroll_ms, self.input_format)
