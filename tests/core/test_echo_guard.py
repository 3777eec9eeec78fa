"""The echo guard's core: echo of what was played is silenced, a caller talking over it is not.

Synchronous and clock-free: a simulated call plays a synthetic voice in 20 ms
chunks (24 kHz, as the output sends) and hears 20 ms caller frames (16 kHz)
that hold its echo (delayed, attenuated) and, in some cases, a caller talking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from voxpipe.echo import EchoGuard, EchoGuardConfig, Verdict
from voxpipe.errors import AudioFormatError

OUT_RATE, IN_RATE, STEP_MS = 24_000, 16_000, 20


def voice(seed: int, level_db: float) -> np.ndarray:
    """A speech-like amplitude envelope on a 1 ms grid: syllables, gaps and pauses (20 s)."""
    rng = np.random.default_rng(seed)
    envelope = np.zeros(20_000)
    at = 0
    while at < envelope.size:
        length = int(rng.integers(120, 260))
        envelope[at : at + length] = np.sin(np.linspace(0, np.pi, length)) ** 0.5
        at += length + int(rng.choice([40, 80, 120, 400]))
    return envelope * 10 ** (level_db / 20)


def sound(envelope: np.ndarray, pitch: float, t_ms: np.ndarray) -> np.ndarray:
    """The voice at times ``t_ms`` (silence outside it): a few harmonics under the envelope."""
    inside = (t_ms >= 0) & (t_ms < envelope.size - 1)
    amp = np.where(inside, np.interp(t_ms, np.arange(envelope.size), envelope), 0.0)
    t = t_ms / 1000
    carrier = (
        np.sin(2 * np.pi * pitch * t)
        + 0.5 * np.sin(2 * np.pi * 3 * pitch * t + 1)
        + 0.3 * np.sin(2 * np.pi * 8 * pitch * t + 2)
    )
    return amp * carrier / 1.2


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


@dataclass(frozen=True)
class Call:
    """A simulated call: the bot plays from ``bot_from`` to ``bot_to`` ms; the caller may talk."""

    echo_db: float | None = -20.0  # None: no echo at all (the caller's device cancels it)
    delay_ms: float = 240
    bot_from: float = 500
    bot_to: float = 8_000
    caller_db: float | None = None  # the caller's level against the bot's (None: silent)
    caller_from: float = 0
    caller_to: float = 0
    noise_db: float | None = None  # the caller's room noise, dBFS


def judge(call: Call, guard: EchoGuard | None = None, end_ms: float = 10_000) -> list[tuple]:
    """Run ``call``; each caller frame's (end time, verdict, whether the caller was loud in it)."""
    guard = guard or EchoGuard()
    bot, caller = voice(1, -6), voice(2, -6 + (call.caller_db or 0))
    noise = np.random.default_rng(3)
    out: list[tuple[float, Verdict, bool]] = []
    for step in range(int(end_ms // STEP_MS)):
        t = step * STEP_MS
        if call.bot_from <= t < call.bot_to:
            times = t + np.arange(OUT_RATE * STEP_MS // 1000) * 1000 / OUT_RATE
            guard.audio_played(pcm(sound(bot, 150, times - call.bot_from)), OUT_RATE, t)
        times = t - STEP_MS + np.arange(IN_RATE * STEP_MS // 1000) * 1000 / IN_RATE
        heard, loud = np.zeros(times.size), False
        if call.echo_db is not None:
            played_at = times - call.delay_ms
            on = (played_at >= call.bot_from) & (played_at < call.bot_to)
            echo = sound(bot, 150, played_at - call.bot_from) * on
            heard += echo * 10 ** (call.echo_db / 20)
        if call.caller_db is not None and call.caller_from <= t < call.caller_to:
            spoken = sound(caller, 210, times - call.caller_from)
            heard, loud = heard + spoken, bool(np.sqrt(np.mean(spoken**2)) > 0.03)
        if call.noise_db is not None:
            heard += noise.normal(0, 10 ** (call.noise_db / 20), times.size)
        out.append((t, guard.caller_audio(pcm(heard), IN_RATE, t).verdict, loud))
    return out


def share(verdicts: list[tuple], verdict: Verdict, start: float, end: float) -> float:
    chosen = [v for t, v, _ in verdicts if start <= t < end]
    return sum(1 for v in chosen if v is verdict) / max(1, len(chosen))


def voiced_share(verdicts: list[tuple], verdict: Verdict) -> float:
    """The share of frames where the caller's voice was loud (above -30 dBFS) given ``verdict``."""
    chosen = [v for _, v, loud in verdicts if loud]
    return sum(1 for v in chosen if v is verdict) / max(1, len(chosen))


@pytest.mark.parametrize(
    "call",
    [
        Call(),
        Call(delay_ms=40),
        Call(delay_ms=700),
        Call(echo_db=-6),  # a loud speakerphone
        Call(echo_db=-35),
        Call(echo_db=-20, noise_db=-60),
    ],
    ids=["240ms", "40ms", "700ms", "-6dB", "-35dB", "noisy room"],
)
def test_echo_alone_never_counts_as_speech(call: Call) -> None:
    verdicts = judge(call)
    assert [t for t, v, _ in verdicts if v is Verdict.SPEECH] == []
    assert share(verdicts, Verdict.ECHO, call.bot_from + 1000, call.bot_to) == 1.0


@pytest.mark.parametrize(
    ("call", "passes"),
    [
        # The caller talks over the bot at its level, or 6 dB under it: most frames get through.
        (Call(caller_db=0, caller_from=4_000, caller_to=6_000), 0.8),
        (Call(caller_db=-6, caller_from=4_000, caller_to=6_000), 0.7),
        # An echo only 6 dB down: a caller 3 dB louder than the bot still gets through.
        (Call(echo_db=-6, caller_db=3, caller_from=4_000, caller_to=6_000), 0.5),
        # The caller's device cancels the echo: even a quiet caller gets through.
        (Call(echo_db=None, caller_db=-12, caller_from=4_000, caller_to=6_000), 0.9),
    ],
    ids=["same level", "6 dB quieter", "loud echo, louder caller", "no echo, quiet caller"],
)
def test_a_caller_talking_over_the_bot_gets_through(call: Call, passes: float) -> None:
    verdicts = judge(call)
    assert voiced_share(verdicts, Verdict.SPEECH) >= passes
    # ... and before they spoke, nothing did.
    assert [t for t, v, _ in verdicts if v is Verdict.SPEECH and t < call.caller_from] == []


@pytest.mark.parametrize(
    ("call", "start", "end"),
    [
        (Call(bot_from=20_000, bot_to=20_000), 0, 10_000),  # silence both ways
        (Call(bot_from=20_000, caller_db=0, caller_from=1_000, caller_to=5_000), 0, 10_000),
        (Call(bot_to=3_000, caller_db=0, caller_from=4_500, caller_to=8_000), 4_500, 8_000),
    ],
    ids=["silence", "caller alone", "caller after the bot"],
)
def test_with_nothing_played_in_reach_everything_passes(
    call: Call, start: float, end: float
) -> None:
    assert share(judge(call), Verdict.NO_ECHO, start, end) == 1.0


def test_an_echo_later_than_max_delay_is_measured_and_followed() -> None:
    # Under load a loopback call's echo came back 710-800+ ms late; the end of the
    # reply then met nothing played within 800 ms and passed as the caller speaking.
    call = Call(delay_ms=1_100, bot_to=7_500)  # the reply ends mid-word: its echo is loud
    guard = EchoGuard()
    verdicts = judge(call, guard, end_ms=10_000)
    assert guard.estimate.delay_ms is not None and abs(guard.estimate.delay_ms - 1_100) <= 30
    # Once measured, all of it is echo: the reply's tail too, 800-1100 ms after it ended
    # (with the reach fixed at 800 ms: 1 frame SPEECH and 17 NO_ECHO, 360 ms of the bot's
    # voice handed to the VAD). Before, the first syllables' echo can meet a quieter
    # stretch in reach, as ever.
    assert share(verdicts, Verdict.ECHO, call.bot_from + 3_000, call.bot_to + 1_100) == 1.0


def test_the_echo_path_is_measured() -> None:
    guard = EchoGuard()
    assert not guard.estimate.measured
    assert guard.estimate.coupling_db == EchoGuardConfig().prior_coupling_db
    judge(Call(echo_db=-20, delay_ms=240), guard)
    estimate = guard.estimate
    assert estimate.measured
    # Against the loudest block in reach, a -20 dB echo sits a little lower.
    assert -30 < estimate.coupling_db < -18
    assert estimate.delay_ms is not None and abs(estimate.delay_ms - 240) <= 30


@pytest.mark.parametrize(
    ("call", "low", "high"),
    [
        # A caller talking over the bot for 2 s does not teach it that echo is loud.
        (Call(caller_db=0, caller_from=4_000, caller_to=6_000), -30, -18),
        # A device that cancels echo: only room noise comes back, and the guard learns so.
        (Call(echo_db=None, noise_db=-60), -90, -35),
    ],
    ids=["double talk", "echo cancelled"],
)
def test_the_coupling_is_learned_from_echo_only(call: Call, low: float, high: float) -> None:
    guard = EchoGuard()
    judge(call, guard)
    assert guard.estimate.measured
    assert low < guard.estimate.coupling_db < high


def test_a_full_scale_caller_is_speech_and_measured_without_overflow() -> None:
    guard = EchoGuard()
    judge(Call(bot_to=20_000), guard, end_ms=3_000)
    clipped = np.tile(np.array([32767, -32768], dtype="<i2"), IN_RATE // 100).tobytes()
    judged = guard.caller_audio(clipped, IN_RATE, 3_020)
    assert judged.verdict is Verdict.SPEECH
    assert judged.level_db == pytest.approx(0.0, abs=0.01)


def test_odd_byte_counts_carry_their_half_sample_over() -> None:
    whole, halves = EchoGuard(), EchoGuard()
    played = pcm(sound(voice(1, -6), 150, np.arange(480) * 1000 / OUT_RATE))
    heard = pcm(0.1 * sound(voice(1, -6), 150, np.arange(320) * 1000 / IN_RATE))
    whole.audio_played(played, OUT_RATE, 0)
    halves.audio_played(played[:481], OUT_RATE, 0)  # half a sample now, the rest next
    halves.audio_played(played[481:], OUT_RATE, 10)
    a = whole.caller_audio(heard, IN_RATE, 20)
    b1 = halves.caller_audio(heard[:1], IN_RATE, 0.03)  # one byte: no whole sample yet
    b2 = halves.caller_audio(heard[1:], IN_RATE, 20)
    assert b1.level_db == -90.0
    assert (a.verdict, round(a.level_db, 6)) == (b2.verdict, round(b2.level_db, 6))
    assert a.echo_db == pytest.approx(b2.echo_db)


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        (lambda g: g.caller_audio(b"\0\0", 0, 0), "0 Hz"),
        (lambda g: g.caller_audio(b"\0\0", -16_000, 0), "-16000 Hz"),
        (lambda g: g.caller_audio(b"\0\0", 22_050, 0), "22050 Hz"),
        (lambda g: g.audio_played(b"\0\0", 11_025, 0), "11025 Hz"),
        (lambda g: g.audio_played(b"\0\0", 24_000, 0, channels=0), "0 channel"),
    ],
    ids=["zero", "negative", "no whole samples per block", "played", "no channels"],
)
def test_rates_it_cannot_judge_are_refused_clearly(feed: object, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message) as raised:
        feed(EchoGuard())  # type: ignore[operator]
    assert raised.value.hint


def test_a_rate_change_mid_stream_is_refused() -> None:
    guard = EchoGuard()
    guard.caller_audio(bytes(640), IN_RATE, 20)
    with pytest.raises(AudioFormatError, match="changed rate from 16000 Hz to 48000 Hz"):
        guard.caller_audio(bytes(1920), 48_000, 40)


def test_stereo_is_judged_as_its_mix() -> None:
    mono, stereo = EchoGuard(), EchoGuard()
    x = (0.3 * np.sin(np.arange(320) / 5) * 32767).astype("<i2")
    a = mono.caller_audio(x.tobytes(), IN_RATE, 20)
    b = stereo.caller_audio(np.repeat(x, 2).tobytes(), IN_RATE, 20, channels=2)
    assert a.level_db == pytest.approx(b.level_db)
