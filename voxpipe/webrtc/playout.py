"""What the page has played, from its playout reports, as a position in each utterance.

The server's output track starts at pts 0 and streams without gaps (silence
included) at the 48 kHz RTP clock, from an RTP timestamp origin the server
learns from its sender. The page reports, over the data channel, the RTP
timestamp of the frame its receiver last delivered to playout
(``getSynchronizationSources()``: ``rtp``, delivered at page time
``ssrc_ts``), the page time of the report (``now``, on the same page clock)
and the device's playout delay (``delay_ms``, from ``media-playout`` stats)::

    heard_stream_ms = ((rtp - origin) mod 2**32) / 48 + (now - ssrc_ts) - delay_ms

never negative. The page's clock is never compared with the server's: only
differences of page times enter, and the result is a position in the stream,
not a time.

The stream is not the reply: whenever no bot audio is queued when the track
must send its next 10 ms (a reply still being spoken, a loop that woke late
under load), the track sends silence, and the stream moves on without the
reply. So the server records where in its stream each stretch of an
utterance's real audio sits (:meth:`PlayoutMapper.audio_sent`), and a stream
position becomes ``(key, ms of key's audio sent before it)``: silence the
track filled in never counts as heard. That position goes to the playback
ledger's :meth:`~voxpipe.playback.PlaybackLedger.position_confirmed`, with the
server's own ``now_ms``.

Reports are untrusted: garbage is ignored and counted by reason, and a
report older (by page time) than the newest one is ignored, so reports that
arrive out of order never move the position back.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import math
from collections.abc import Mapping

from voxpipe.errors import ConfigError, LocalProtocolError

RTP_MODULUS = 2**32
_HALF = RTP_MODULUS // 2
_SLACK_MS = 0.01  # chunks whose edges meet this closely are back to back (float rounding)


class ReportIgnored(enum.Enum):
    """Why a playout report was not used."""

    MALFORMED = "malformed"  # not an object, a field missing, of the wrong type or not finite
    OUT_OF_RANGE = "out_of_range"  # rtp not 32-bit, delay or report age beyond belief
    STALE = "stale"  # not newer, by the page's clock, than a report already used


@dataclasses.dataclass(frozen=True)
class PlayoutReport:
    """One playout report from the page (times in page milliseconds)."""

    rtp: int
    ssrc_ts: float
    now: float
    delay_ms: float = 0.0

    @classmethod
    def from_message(cls, message: object) -> PlayoutReport | ReportIgnored:
        """Read ``{"rtp", "ssrc_ts", "now", "delay_ms"?}``; the reason if it is not a report.

        A missing ``delay_ms`` (a browser without ``media-playout`` stats) counts as 0.
        """
        if not isinstance(message, Mapping):
            return ReportIgnored.MALFORMED
        rtp = message.get("rtp")
        ssrc_ts, now = _finite(message.get("ssrc_ts")), _finite(message.get("now"))
        delay_ms = _finite(message.get("delay_ms", 0.0))
        if not isinstance(rtp, int) or isinstance(rtp, bool):
            return ReportIgnored.MALFORMED
        if ssrc_ts is None or now is None or delay_ms is None:
            return ReportIgnored.MALFORMED
        if not 0 <= rtp < RTP_MODULUS:
            return ReportIgnored.OUT_OF_RANGE
        return cls(rtp, ssrc_ts, now, delay_ms)


@dataclasses.dataclass(frozen=True)
class PositionHeard:
    """The page has heard ``played_ms`` of utterance ``key`` (``stream_ms`` into the stream)."""

    key: str
    played_ms: float
    stream_ms: float


@dataclasses.dataclass
class _Stretch:
    """Back-to-back real audio of one utterance: ``length_ms`` of it from ``stream_ms`` on,
    ``offset_ms`` into the utterance."""

    key: str
    stream_ms: float
    offset_ms: float
    length_ms: float

    @property
    def end_ms(self) -> float:
        return self.stream_ms + self.length_ms


class PlayoutMapper:
    """Page playout reports -> heard stream position -> position in an utterance.

    ``max_report_age_ms`` bounds ``now - ssrc_ts``: the page reads the
    delivered frame just before it reports, so the age is a frame or two; an
    older frame means playout stalled or the two page times are on different
    clocks, and crediting the age would claim audio nobody heard. A slightly
    negative age (the two page clocks a hair apart) counts as 0.
    """

    def __init__(
        self,
        origin_rtp: int,
        clock_rate: int = 48_000,
        *,
        max_stretches: int = 4096,
        max_report_age_ms: float = 250.0,
        max_delay_ms: float = 2000.0,
    ) -> None:
        if not 0 <= origin_rtp < RTP_MODULUS or clock_rate <= 0 or max_stretches < 1:
            raise ConfigError("need a 32-bit origin_rtp, clock_rate > 0 and max_stretches >= 1")
        self._origin = origin_rtp
        self._samples_per_ms = clock_rate / 1000
        self._max_stretches = max_stretches
        self._max_age_ms = max_report_age_ms
        self._max_delay_ms = max_delay_ms
        self._reference = 0  # samples since the origin at the newest report (unwrapped)
        self._starts: list[float] = []  # stream ms where each stretch begins, ascending
        self._stretches: list[_Stretch] = []
        self._newest: PlayoutReport | None = None
        self._ignored = dict.fromkeys(ReportIgnored, 0)

    @property
    def origin_rtp(self) -> int:
        """The RTP timestamp of stream position 0 on the current sender."""
        return self._origin

    @property
    def ignored(self) -> dict[ReportIgnored, int]:
        """How many reports were ignored, by reason."""
        return dict(self._ignored)

    @property
    def newest(self) -> PlayoutReport | None:
        """The newest report used, by the page's clock."""
        return self._newest

    # -- what the server reports -------------------------------------------------

    def audio_sent(self, key: str, stream_ms: float, duration_ms: float) -> None:
        """``duration_ms`` of utterance ``key``'s audio sits at ``stream_ms`` in the output stream.

        The driver reports every chunk of real audio it hands the track, in
        stream order; whatever lies between them is silence the track filled
        in, and counts for no utterance. Chunks that follow on back to back
        extend one stretch, so a call holds one stretch per gap, not per chunk
        (the oldest are forgotten beyond ``max_stretches``).
        """
        if duration_ms < 0:
            raise LocalProtocolError(f"negative chunk duration {duration_ms} for {key}")
        last = self._stretches[-1] if self._stretches else None
        if last is not None and stream_ms < last.end_ms - _SLACK_MS:
            raise LocalProtocolError(
                f"audio of {key} at {stream_ms} ms, before the end of the audio sent before it "
                f"({last.end_ms} ms): the stream only moves forward"
            )
        if last is not None and last.key == key and stream_ms <= last.end_ms + _SLACK_MS:
            last.length_ms = stream_ms + duration_ms - last.stream_ms  # back to back
            return
        offset = last.offset_ms + last.length_ms if last is not None and last.key == key else 0.0
        self._starts.append(stream_ms)
        self._stretches.append(_Stretch(key, stream_ms, offset, duration_ms))
        del self._starts[: -self._max_stretches], self._stretches[: -self._max_stretches]

    def sender_changed(self, origin_rtp: int) -> None:
        """A new sender (a rejoined peer connection) carries the same stream from ``origin_rtp``.

        ``origin_rtp`` is where stream position 0 falls on the new sender's
        RTP clock; what was sent and the newest report are kept.
        """
        if not 0 <= origin_rtp < RTP_MODULUS:
            raise ConfigError(f"origin_rtp must be a 32-bit RTP timestamp, got {origin_rtp}")
        self._origin = origin_rtp

    # -- what the page reports -----------------------------------------------------

    def report_received(self, message: object) -> PositionHeard | None:
        """Use one report; the position heard, or None (ignored, or before any utterance)."""
        report = PlayoutReport.from_message(message)
        if isinstance(report, ReportIgnored):
            self._ignored[report] += 1
            return None
        if (problem := self._problem(report)) is not None:
            self._ignored[problem] += 1
            return None
        stream_ms = self.heard_stream_ms(report)
        self._newest = report
        self._reference = self._samples_since_origin(report.rtp)
        located = self.locate(stream_ms)
        return None if located is None else PositionHeard(located[0], located[1], stream_ms)

    # -- what the driver asks ----------------------------------------------------------

    def heard_stream_ms(self, report: PlayoutReport) -> float:
        """Milliseconds of the output stream the page had heard at ``report.now`` (>= 0).

        ``rtp`` is unwrapped against the newest report, so the position is
        right across the 32-bit wrap (every 24.9 h at 48 kHz) and a frame
        just before the origin is position 0, not a day later.
        """
        age_ms = min(max(report.now - report.ssrc_ts, 0.0), self._max_age_ms)
        delivered_ms = self._samples_since_origin(report.rtp) / self._samples_per_ms
        return max(0.0, delivered_ms + age_ms - report.delay_ms)

    def locate(self, stream_ms: float) -> tuple[str, float] | None:
        """``(key, ms of key heard)`` for a stream position; None before the first known audio.

        Inside a stretch of real audio, what of it came before; in silence the
        track filled in after one, all of it: the position stands still until
        the utterance's audio goes on (or the next one begins).
        """
        index = bisect.bisect_right(self._starts, stream_ms) - 1
        if index < 0:
            return None
        stretch = self._stretches[index]
        return stretch.key, stretch.offset_ms + min(
            stream_ms - stretch.stream_ms, stretch.length_ms
        )

    def _samples_since_origin(self, rtp: int) -> int:
        """``rtp`` as samples since the origin, the 2**32 multiple nearest the newest report."""
        delta = (rtp - self._origin - self._reference) % RTP_MODULUS
        if delta >= _HALF:
            delta -= RTP_MODULUS  # behind the newest report, not a wrap ahead
        return self._reference + delta

    def _problem(self, report: PlayoutReport) -> ReportIgnored | None:
        if self._newest is not None and report.now <= self._newest.now:
            return ReportIgnored.STALE
        age_ms = report.now - report.ssrc_ts
        if abs(age_ms) > self._max_age_ms or not 0 <= report.delay_ms <= self._max_delay_ms:
            return ReportIgnored.OUT_OF_RANGE
        return None


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN, huge integers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
