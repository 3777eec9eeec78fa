"""The far end's playout position: a WebRTC barge-in is truncated where the caller stopped hearing.

An aiortc caller plays every frame as it arrives and reports, as the page
does, the RTP timestamp it is playing. The server learns its sender's RTP
origin (aiortc keeps it private; aiortc is pinned, and this test fails if the
hook stops working), maps the reports to positions in each reply, and the
ledger takes them as confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from realtime_calls import LONG_REPLY, compose
from webrtc_peer import calling

from voxpipe.call.events import InterruptionHandled, ItemTruncated
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.playback import PlaybackLedger
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.webrtc.app import ServeConfig, running_serve
from voxpipe.transports.webrtc.track import SteadyAudioTrack
from voxpipe.transports.webrtc.transport import WebRTCCallTransport
from voxpipe.webrtc.playout import RTP_MODULUS


async def until(predicate: Any, timeout_s: float = 30.0, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the call's state
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout_s} s: {what or predicate}") from None


async def test_a_barge_in_is_truncated_where_the_far_end_had_played(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [1000, "What time do you open on Saturday?", 3500, "Sorry, one more thing.", 3000],
        recording,
    )
    brain = ScriptedBrain([LONG_REPLY, "Sure."], pace=2.0)
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, recording, report_playout=True) as caller,
    ):
        call_id = caller.answer["call_id"]
        live = serve.app.calls[call_id].call
        transport = live.transport
        assert isinstance(transport, WebRTCCallTransport)
        events: list[Any] = live.graph.brain.events  # type: ignore[attr-defined]
        await until(lambda: any(isinstance(e, ItemTruncated) for e in events))
        await until(lambda: bool(caller.interrupted_rtp), 5)
        playout = transport.playout
        assert playout is not None, "the sender's RTP origin was not learned"
        cut = next(e for e in events if isinstance(e, ItemTruncated))
        stopped_rtp = caller.interrupted_rtp[0]
        first_rtp = caller.heard.first_rtp
    told = [json.loads(m) for m in caller.messages if isinstance(m, str) and m[:1] == "{"]

    # The first frame the caller got sits at the start of the stream the server counts.
    assert first_rtp is not None
    assert (first_rtp - playout.origin_rtp) % RTP_MODULUS < 48 * 200
    # Where the far end was playing when it was told of the interruption, in that reply.
    stream_ms = ((stopped_rtp - playout.origin_rtp) % RTP_MODULUS) / 48
    located = playout.locate(stream_ms)
    assert located is not None and located[0] == cut.item_id
    heard_ms = located[1]
    print(f"\nfar end heard {heard_ms:.0f} ms of {cut.item_id}, truncated at {cut.audio_end_ms}")
    assert 300 < cut.audio_end_ms < cut.received_ms  # cut mid-answer
    assert abs(heard_ms - cut.audio_end_ms) <= 60
    assert playout.ignored == {reason: 0 for reason in playout.ignored}  # every report used
    # The barge-in was told once, for the cut reply.
    interrupted = [m for m in told if m.get("name") == "interrupted"]
    requests = sum(m.get("type") == "playout_request" for m in told)
    print(f"told interrupted {len(interrupted)} times, playout_request {requests} times")
    assert [m["item_id"] for m in interrupted] == [cut.item_id]
    assert requests == 1


FIRST_SENTENCE = "Our pharmacy opens at nine."
LATE_SENTENCE = (
    "On Sunday we are closed all day, but the pharmacy on Market Street stays open until six "
    "in the evening every single day of the week."
)
GAP_FRAMES = 120  # the second sentence waits until the stream ran 1.2 s in silence
LATE_AT_MOST_S = 30.0


class LateVoice:
    """A tone with no silent 10 ms in it (so silence the track fills in is told apart by being
    all zeros) whose second sentence comes late, as Piper's does under load.

    How late is set by what the caller's stream shows, not by a clock: the second sentence
    waits until ``gap`` is set (the track has sent 1.2 s of silence after the first). A fixed
    delay did not make a fixed gap: at load 20 the first sentence reached the track ~3 s
    late and a 4 s delay left a 400 ms gap.

    It is quiet (-31 dBFS): with no echo on the line the echo guard takes its prior coupling,
    and a caller well above what it expects of the bot is a barge-in at once."""

    sample_rate = 24_000

    def __init__(self, gap: threading.Event) -> None:
        self.gap = gap

    def synthesize(self, text: str) -> Iterator[bytes]:
        if text.startswith(LATE_SENTENCE[:20]):
            self.gap.wait(LATE_AT_MOST_S)  # in the brain's worker thread: the reply stalls
        n = self.sample_rate * 60 * len(text) // 1000
        t = np.arange(n) / self.sample_rate
        yield (np.sin(2 * np.pi * 220 * t) * 1500 + 300).astype("<i2").tobytes()


class TrackTap:
    """Every 10 ms frame pipecat's output track sent, and whether it held audio or was silence
    the track filled in (all zeros: the queue was empty)."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bool]] = []  # (stream ms, real audio)
        self.gap = threading.Event()  # GAP_FRAMES of silence after real audio went out
        self._fill = -1  # silent frames since the last real one (-1: none real yet)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = SteadyAudioTrack.recv

        async def recv(track: SteadyAudioTrack) -> Any:
            frame = await original(track)
            is_real = bool(frame.to_ndarray().any())
            self.frames.append((frame.pts * 1000 / track._sample_rate, is_real))
            self._fill = 0 if is_real else self._fill + (self._fill >= 0)
            if self._fill >= GAP_FRAMES:
                self.gap.set()
            return frame

        monkeypatch.setattr(SteadyAudioTrack, "recv", recv)

    def real_ms(self) -> float:
        return 10.0 * sum(real for _, real in self.frames)

    def summary(self) -> str:
        """Runs of real audio (A) and filled-in silence (s), in 10 ms frames."""
        runs: list[list[Any]] = []
        for _, is_real in self.frames:
            if runs and runs[-1][0] == is_real:
                runs[-1][1] += 1
            else:
                runs.append([is_real, 1])
        return " ".join(f"{'A' if real else 's'}{n}" for real, n in runs)

    def holes(self) -> int:
        """Runs of filled-in silence shorter than 500 ms between two frames of real audio."""
        real = [i for i, (_, is_real) in enumerate(self.frames) if is_real]
        return sum(1 < b - a <= 50 for a, b in itertools.pairwise(real))

    def longest_fill_ms(self) -> float:
        """The longest run of filled-in silence between two frames of real audio."""
        real = [i for i, (_, is_real) in enumerate(self.frames) if is_real]
        runs = [b - a - 1 for a, b in itertools.pairwise(real)]
        return 10.0 * max(runs, default=0)


async def test_silence_filled_in_mid_reply_is_not_counted_as_heard(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply's second sentence comes once the track has filled 1.2 s of silence into the
    stream mid-reply (before, a fixed 2.5 s delay meant to leave ~1.7 s: the gap came to 850 ms
    at load 6, pipecat's track chopping the first sentence with silence, fixed in
    transports/webrtc/track.py, and to 400 ms at load 20 with the first sentence late). The
    caller talks over the reply after it went on; the truncation is the reply's audio the
    caller was sent, not that plus the silence between.

    Never more than was sent (+20 ms: rounding to whole chunks), and at most 100 ms less: after
    the far end's report, the chunk on the track and the one pipecat's output held when the cut
    came may still go out (20 ms each), the report names the first sample of its newest 20 ms
    packet, and the caller, in this loaded process, may not yet have read packets already sent
    (seen: 20-45 ms less at load 4-8). Counting the silence would be off by over a second.
    """
    question, barge_in = tmp_path / "question.wav", tmp_path / "barge_in.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 500], question)
    compose(make_speech, ["Sorry, one more thing.", 500], barge_in)
    tap = TrackTap()
    tap.install(monkeypatch)
    brain = ScriptedBrain(
        [f"{FIRST_SENTENCE} {LATE_SENTENCE}", "Sure."], voice=LateVoice(tap.gap), pace=2.0
    )
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, question, report_playout=True, live_mic=True) as caller,
    ):
        live = serve.app.calls[caller.answer["call_id"]].call
        transport = live.transport
        assert isinstance(transport, WebRTCCallTransport)
        sent = SentOnly()
        transport.output().report_playback_to(sent)
        # The reply began, stalled (the stream went on in silence), and went on for 600 ms.
        try:
            await until(lambda: tap.longest_fill_ms() >= 1000 and _real_since_gap(tap) >= 600, 60)
        except TimeoutError:
            brain_events = [type(e).__name__ for e in live.graph.brain.events]  # type: ignore[attr-defined]
            raise AssertionError(
                f"no gap of 1 s mid-reply then 600 ms more in 60 s; the track sent {tap.summary()};"
                f" the brain's events {brain_events}"
            ) from None
        assert caller.mic is not None
        caller.mic.say(barge_in)
        events: list[Any] = live.graph.brain.events  # type: ignore[attr-defined]
        await until(lambda: any(isinstance(e, InterruptionHandled) for e in events), 30, "barge-in")
        with contextlib.suppress(TimeoutError):  # it settles within 400 ms of the cut
            await until(lambda: any(isinstance(e, ItemTruncated) for e in events), 10)
        cuts = [e for e in events if isinstance(e, ItemTruncated)]
        assert cuts, "no truncation: the interrupted reply counted as heard in full"
        cut = cuts[0]
        real_ms, gap_ms = tap.real_ms(), tap.longest_fill_ms()  # all of it the first reply's
        track = transport._client._audio_output_track
        assert isinstance(track, SteadyAudioTrack)
        sent_ms = sent.played_ms(cut.item_id, transport.now_ms())  # frozen at the cut
    print(
        f"\nsent {real_ms:.0f} ms of the reply around {gap_ms:.0f} ms of filled-in silence;"
        f" truncated at {cut.audio_end_ms} ms ({cut.audio_end_ms - real_ms:+.0f}), the output's"
        f" own estimate {sent_ms:.0f} ms ({sent_ms - real_ms:+.0f}); {tap.holes()} holes in the"
        f" reply, the track late-waited {track.grace_waits} times ({track.holes_avoided} came)"
    )
    assert gap_ms >= 1000  # the stream did go on in silence mid-reply
    assert cut.audio_end_ms < cut.received_ms  # cut mid-answer
    assert -100 <= cut.audio_end_ms - real_ms <= 20


def _real_since_gap(tap: TrackTap) -> float:
    """Milliseconds of real audio sent since the last run of filled-in silence of 1 s or more."""
    real = fill = 0
    for _, is_real in reversed(tap.frames):
        if is_real:
            real, fill = real + 1, 0
        elif real:
            fill += 1
            if fill >= 100:
                return 10.0 * real
    return 0.0


class SentOnly(PlaybackLedger):
    """A ledger of what the output sent, deaf to the far end: the server's own estimate."""

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        return

    def reports_cut_positions(self, within_ms: float) -> None:
        return

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        return
