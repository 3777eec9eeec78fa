"""The echo guard: the caller's microphone hearing the bot does not count as the caller speaking.

A caller on a speakerphone without echo cancellation sends the bot's own
voice back, a few hundred milliseconds late and some decibels quieter. Voice
activity detection (the Realtime server's, or a local one) takes that for a
barge-in and cuts the bot, whose next reply is cut the same way: the "voice
cut-off loop". Measured through ``voxpipe serve`` with an aiortc caller that
mixes what it plays back into its microphone at -20 dB, 150 ms late: 16 false
barge-ins in a call of two questions without the guard, 0 with it, and a real
barge-in still cut the bot 710 ms after its first word (median of 5; 933 ms
with neither echo nor guard in the same run; ``benchmarks/echo.py``, with -30
and -10 dB, 40 and 300 ms).

:class:`EchoGuard` keeps an echo estimate of what is being played and judges
each piece of caller audio against it:

- what was played comes from the output with when it started
  (:meth:`EchoGuard.audio_played`, on the playback seam's clock); caller audio
  is placed where it arrived (:meth:`EchoGuard.caller_audio`);
- echo may arrive up to ``max_delay_ms`` after its audio was played (and
  ``lead_ms`` before, for the two clocks' skew): its estimate is the loudest
  played 10 ms block in that reach, times the coupling. The reach stays wide
  because the delay is not steady: a loopback call on a loaded 2-core machine
  measured 190-320 ms within one call, and stalls move it further: at load ~7
  it measured 710 ms and the end of a reply came back after 800 ms, against
  nothing played in reach, so it passed as speech (and cut the bot, once in a
  CI run). So a delay measured beyond ``max_delay_ms`` (it is looked for up to
  twice that) widens the reach to it plus 200 ms;
- the **delay** is the lag at which the played energy envelope best
  explains the heard one (correlation at least 0.6 over the last 2 s);
- the **coupling** (how much quieter the echo is than what was played) is
  learned while the bot talks: every 200 ms, the 95th percentile of heard
  against played energy over the last 2 s, at the measured delay where the
  heard envelope follows the played one, and otherwise only from a window
  that stayed below the prior (an echo-free caller device, say); the
  coupling is the median of the recent observations, and
  ``prior_coupling_db`` until the first. A caller talking over the bot
  breaks the correlation and raises the ratios, so it is not learned as echo;
- caller audio not ``margin_db`` above the echo estimate is
  :attr:`Verdict.ECHO`: the driver silences it before any VAD sees it. A
  caller speaking over the bot at a normal level is far above it
  (:attr:`Verdict.SPEECH`) and still interrupts; with nothing played in
  reach, everything passes (:attr:`Verdict.NO_ECHO`).

Sans-I/O: times are arguments (``now_ms``, ``started_ms``) on the output's
clock; nothing here reads a clock. Audio is PCM16 little-endian at any rate
with whole samples per 10 ms block (8, 16, 24, 48 kHz ...).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from voxpipe.errors import AudioFormatError

BLOCK_MS = 10
MIN_CORRELATION = 0.6  # a weaker match of played and heard envelopes measures no delay
_JITTER_BLOCKS = 3  # at the measured delay, echo may still come 30 ms early or late
_SEARCH_FACTOR = 2  # the delay is looked for up to twice max_delay_ms
_LATE_BLOCKS = 20  # a measured delay beyond max_delay_ms widens the reach to it plus 200 ms
_FLOOR = 1e-9  # mean-square floor (-90 dBFS): digital silence
_SCALE = 1 / 32768


@dataclass(frozen=True)
class EchoGuardConfig:
    """How the guard judges caller audio against the echo estimate.

    Args:
        margin_db: caller audio must be this far above the echo estimate to count.
        max_delay_ms: echo arrives at most this long after its audio was played,
            unless a longer delay is measured (up to twice this; then the reach follows it).
        lead_ms: ... and at most this long before (the skew of the two clocks).
        prior_coupling_db: the coupling assumed until it is measured.
        loud_dbfs: played blocks at least this loud teach the coupling.
        window_ms: one coupling observation covers this much of the call.
        min_echo_ms: an observation at the measured delay needs this much loud
            playback whose echo is in its window.
        min_loud_ms: without a measured delay, it needs this much loud playback
            in reach: more than ``max_delay_ms``, so that not all of it is the
            start of a reply, before its echo could have come back.
        observations: the coupling is the median of this many recent observations.
    """

    margin_db: float = 6.0
    max_delay_ms: int = 800
    lead_ms: int = 60
    prior_coupling_db: float = -10.0
    loud_dbfs: float = -45.0
    window_ms: int = 2_000
    min_echo_ms: int = 300
    min_loud_ms: int = 1_000
    observations: int = 50


class Verdict(enum.Enum):
    """What a piece of caller audio is, as far as turn detection goes."""

    NO_ECHO = "no_echo"  # nothing was played that could leak back: passes
    SPEECH = "speech"  # clearly above the echo estimate: passes
    ECHO = "echo"  # within the echo estimate: silenced


@dataclass(frozen=True)
class CallerAudioJudged:
    """The guard's verdict on one piece of caller audio, with the levels behind it (dBFS)."""

    verdict: Verdict
    level_db: float
    echo_db: float | None  # the echo estimate (None: nothing played in reach)


@dataclass(frozen=True)
class EchoEstimate:
    """The echo path as measured so far."""

    coupling_db: float  # echo level relative to what was played
    measured: bool  # False: coupling_db is still the prior
    delay_ms: float | None  # the latest delay measured (None: none yet)


class PlayedAudioSink(Protocol):
    """Takes the audio an output plays, with when each chunk started (its clock)."""

    def audio_played(
        self, pcm16: bytes, sample_rate: int, started_ms: float, channels: int = 1
    ) -> None:
        """``pcm16`` began playing at ``started_ms``."""


@runtime_checkable
class PlayedAudioSource(Protocol):
    """An output that reports the audio it plays (and the clock it stamps it with)."""

    def report_audio_to(self, sink: PlayedAudioSink) -> None:
        """Send every chunk played from now on to ``sink`` too."""

    def now_ms(self) -> float:
        """The output's clock, in milliseconds."""


class _Pcm:
    """One PCM16 stream's samples, a trailing odd byte carried to the next piece."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate: int | None = None
        self._odd = b""

    def samples(self, pcm16: bytes, rate: int, channels: int = 1) -> np.ndarray:
        self._check(rate, channels)
        data = self._odd + pcm16
        whole = len(data) // (2 * channels) * (2 * channels)
        self._odd = data[whole:]
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64) * _SCALE
        return frames.reshape(-1, channels).mean(axis=1) if channels > 1 else frames

    def _check(self, rate: int, channels: int) -> None:
        if rate <= 0 or rate * BLOCK_MS % 1000 or channels < 1:
            raise AudioFormatError(
                f"{self.name} audio at {rate} Hz x {channels} channel(s) cannot be judged",
                hint=f"use a rate with whole samples per {BLOCK_MS} ms (8, 16, 24, 48 kHz)",
            )
        if self.rate is not None and rate != self.rate:
            raise AudioFormatError(
                f"{self.name} audio changed rate from {self.rate} Hz to {rate} Hz mid-stream",
                hint="resample to one rate before the echo guard",
            )
        self.rate = rate


class _Blocks:
    """Mean-square energy per 10 ms block of one stream, on the output's clock (a ring)."""

    def __init__(self, n_blocks: int) -> None:
        self.n = n_blocks
        self._sum = np.zeros(n_blocks)
        self._count = np.zeros(n_blocks)
        self._index = np.full(n_blocks, -1, dtype=np.int64)

    def add(self, start_ms: float, samples: np.ndarray, rate: int) -> None:
        if samples.size == 0:
            return
        blocks = np.floor((start_ms + np.arange(samples.size) * (1000 / rate)) / BLOCK_MS)
        first = int(blocks[0])
        offsets = blocks.astype(np.int64) - first
        sums, counts = np.bincount(offsets, weights=samples**2), np.bincount(offsets)
        for offset in np.flatnonzero(counts):
            slot = (first + offset) % self.n
            if self._index[slot] != first + offset:
                self._index[slot], self._sum[slot], self._count[slot] = first + offset, 0, 0
            self._sum[slot] += sums[offset]
            self._count[slot] += counts[offset]

    def _slots(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        blocks = np.arange(first, last + 1)
        slots = blocks % self.n
        return slots, (self._index[slots] == blocks) & (self._count[slots] > 0)

    def energies(self, first: int, last: int) -> np.ndarray:
        """Mean square of blocks ``first`` to ``last`` inclusive (the floor where none)."""
        slots, held = self._slots(first, last)
        out = np.full(slots.size, _FLOOR)
        out[held] = np.maximum(self._sum[slots[held]] / self._count[slots[held]], _FLOOR)
        return out

    def held(self, first: int, last: int) -> np.ndarray:
        """Which of blocks ``first`` to ``last`` hold audio."""
        return self._slots(first, last)[1]


def _db(energy: float) -> float:
    return 10 * math.log10(max(energy, _FLOOR))


def best_lag(heard: np.ndarray, played: np.ndarray, held: np.ndarray) -> tuple[int, float] | None:
    """The lag (in blocks) at which ``played`` best explains ``heard``, and its correlation.

    ``heard`` holds the log energies of the last ``n`` blocks, ``held`` which
    of them hold audio (only those count); ``played`` the ``n + max_lag``
    blocks ending at the same block. None when the heard blocks are flat.
    """
    h = heard[held]
    if h.size < 2 or np.std(h) == 0 or played.size < heard.size:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(played, heard.size)[::-1][:, held]
    hc = h - h.mean()
    w = windows - windows.mean(axis=1, keepdims=True)
    norms = np.sqrt((w**2).sum(axis=1) * (hc**2).sum())
    corr = np.divide(w @ hc, norms, out=np.zeros(norms.size), where=norms > 0)
    lag = int(np.argmax(corr))
    return lag, float(corr[lag])


class _PlayedClock:
    """Lays played chunks end to end, as the playback ledger does: a chunk starts at the
    later of its report and the end of the chunk before it."""

    def __init__(self) -> None:
        self.end_ms: float | None = None

    def place(self, duration_ms: float, started_ms: float) -> float:
        start = started_ms if self.end_ms is None else max(started_ms, self.end_ms)
        self.end_ms = start + duration_ms
        return start


class EchoGuard:
    """Judges caller audio against an echo estimate of what is being played (see the module).

    It is the :class:`PlayedAudioSink` of the call's output. ``counts`` says
    how many pieces of caller audio got each :class:`Verdict`.
    """

    def __init__(self, config: EchoGuardConfig | None = None) -> None:
        self.config = config or EchoGuardConfig()
        self._reach = (
            math.ceil(self.config.max_delay_ms / BLOCK_MS),
            math.ceil(self.config.lead_ms / BLOCK_MS),
        )
        self._window = max(2, self.config.window_ms // BLOCK_MS)
        # Under load the echo comes later than max_delay_ms (710-800+ ms measured on a
        # loopback call at load 7): the delay is looked for further, and followed (_late).
        self._search = _SEARCH_FACTOR * self._reach[0]
        history = self._window + self._search + self._reach[1] + 16
        self._played, self._heard = _Blocks(history), _Blocks(history)
        self._played_pcm, self._heard_pcm = _Pcm("played"), _Pcm("caller")
        self._played_clock = _PlayedClock()
        self._observed: deque[float] = deque(maxlen=self.config.observations)
        self._next_look: int | None = None  # the heard block after which to observe again
        self._delay_ms: float | None = None
        self.counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    @property
    def estimate(self) -> EchoEstimate:
        """The echo path's coupling and delay as measured so far."""
        return EchoEstimate(self._coupling_db(), bool(self._observed), self._delay_ms)

    def audio_played(
        self, pcm16: bytes, sample_rate: int, started_ms: float, channels: int = 1
    ) -> None:
        """The output began playing ``pcm16`` at ``started_ms`` (a :class:`PlayedAudioSink`)."""
        samples = self._played_pcm.samples(pcm16, sample_rate, channels)
        start = self._played_clock.place(samples.size * 1000 / sample_rate, started_ms)
        self._played.add(start, samples, sample_rate)

    def caller_audio(
        self, pcm16: bytes, sample_rate: int, now_ms: float, channels: int = 1
    ) -> CallerAudioJudged:
        """Judge caller audio that arrived at ``now_ms``; the driver silences
        :attr:`Verdict.ECHO`."""
        samples = self._heard_pcm.samples(pcm16, sample_rate, channels)
        start = now_ms - samples.size * 1000 / sample_rate
        self._heard.add(start, samples, sample_rate)
        first, last = math.floor(start / BLOCK_MS), math.floor(now_ms / BLOCK_MS)
        self._observe(last - 1)
        level = float(np.mean(samples**2)) if samples.size else 0.0
        judged = self._judge(level, self._loudest_in_reach(first, last))
        self.counts[judged.verdict] += 1
        return judged

    def _judge(self, level: float, played: float) -> CallerAudioJudged:
        level_db = _db(level)
        if played <= _FLOOR:
            return CallerAudioJudged(Verdict.NO_ECHO, level_db, None)
        echo_db = _db(played) + self._coupling_db()
        verdict = Verdict.SPEECH if level_db > echo_db + self.config.margin_db else Verdict.ECHO
        return CallerAudioJudged(verdict, level_db, echo_db)

    def _loudest_in_reach(self, first: int, last: int) -> float:
        """The loudest played block whose echo could land in heard blocks ``first``..``last``."""
        delay, lead = self._reach
        return float(self._played.energies(first - max(delay, self._late()), last + lead).max())

    def _late(self) -> int:
        """How far back a measured delay beyond ``max_delay_ms`` makes the reach (blocks)."""
        if self._delay_ms is None:
            return 0
        return min(self._search, math.ceil(self._delay_ms / BLOCK_MS) + _LATE_BLOCKS)

    def _coupling_db(self) -> float:
        if not self._observed:
            return self.config.prior_coupling_db
        return float(np.median(self._observed))

    def _observe(self, upto: int) -> None:
        """Every 200 ms of caller audio, observe the coupling over the last window.

        Where the heard envelope follows the played one (echo, and no caller
        over it), against the played audio at the measured delay; elsewhere only
        a window whose heard audio stayed below the prior, against all played
        audio in reach: a caller talking is never taken for echo.
        """
        if self._next_look is not None and upto < self._next_look:
            return
        self._next_look = upto + 20
        first = upto - self._window + 1
        delay, lead = self._reach
        search = self._search
        played = self._played.energies(first - search, upto + lead)
        heard, held = self._heard.energies(first, upto), self._heard.held(first, upto)
        found = best_lag(np.log10(heard), np.log10(played[: played.size - lead]), held)
        if found is not None and found[1] >= MIN_CORRELATION:
            self._delay_ms = float(found[0] * BLOCK_MS)
            start = search - found[0]  # played index of the first heard block's echo source
            source = _loudest_around(played, _JITTER_BLOCKS)[start : start + heard.size]
            self._take(heard, source, held, self.config.min_echo_ms, below=math.inf)
            return
        within = played[search - delay :]  # the played audio within max_delay_ms
        reach = np.lib.stride_tricks.sliding_window_view(within, delay + lead + 1).max(axis=1)
        self._take(heard, reach, held, self.config.min_loud_ms, below=self.config.prior_coupling_db)

    def _take(
        self, heard: np.ndarray, played: np.ndarray, held: np.ndarray, min_ms: int, below: float
    ) -> None:
        """Observe the 95th percentile of heard against ``played`` where it was loud."""
        loud = held & (played >= 10 ** (self.config.loud_dbfs / 10))
        if int(loud.sum()) * BLOCK_MS < min_ms:
            return
        observed = float(np.percentile(10 * np.log10(heard[loud] / played[loud]), 95))
        if observed < below:
            self._observed.append(observed)


def _loudest_around(energies: np.ndarray, blocks: int) -> np.ndarray:
    """Each block's loudest neighbour within ``blocks`` either side (same length)."""
    padded = np.pad(energies, blocks, constant_values=_FLOOR)
    return np.asarray(np.lib.stride_tricks.sliding_window_view(padded, 2 * blocks + 1).max(axis=1))
