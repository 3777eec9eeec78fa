"""CPU a phone call's audio costs with G.711 passed through, against transcoding it.

A phone stream carries G.711 at 8 kHz each way. Transcoding (the session in
PCM16 at 24 kHz) means, on every 20 ms: the caller decoded, resampled 8 -> 16
kHz for the pipeline and 16 -> 24 kHz for the session; the bot resampled
24 -> 8 kHz and encoded. Passing G.711 through (the session in the caller's
law) keeps the caller's 8 -> 16 kHz step for the pipeline's own processors
(recording, echo guard) and sends the bytes it came with; the bot's bytes are
decoded once for the pipeline and sent as they came.

Measured with the very objects each path runs (the transport's FIR resampler,
pipecat's soxr stream resampler, the service's G711Input, the output's
G711Passthrough, and for the embedded server its input buffer with VAD
framing and its per-delta encoder), one minute of audio each way, CPU time
(``time.process_time``) per call-minute, median of repeats, both paths in the
same process, in turns. The brain's side counts when the brain is voxpipe's own server;
with OpenAI as the brain it is OpenAI's.

Prints a table and writes benchmarks/results/g711.json.
Run: ``.venv/bin/python benchmarks/g711.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import machine, median, print_table, write_result
from pipecat.audio.resamplers.soxr_stream_resampler import SOXRStreamAudioResampler
from pipecat.frames.frames import InputAudioRawFrame

from voxpipe.audio import AudioFormat
from voxpipe.frames import G711InputAudioFrame
from voxpipe.processors.realtime.formats import G711Input
from voxpipe.realtime_server import codec
from voxpipe.realtime_server.input_audio import InputAudioBuffer
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.passthrough import G711Passthrough
from voxpipe.telephony.resample import StreamResampler

SECONDS = 60
FRAME_MS = 20
DELTA_MS = 100  # the brain's audio arrives in 100 ms deltas
LAW = AudioEncoding.MULAW


def voice_like(seconds: int, rate: int) -> bytes:
    """Speech-shaped test audio: a wandering pitch with harmonics, syllable envelope, noise."""
    t = np.arange(seconds * rate) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    noise = np.random.default_rng(0).normal(0, 0.02, t.size)
    audio = 0.25 * tone * envelope + noise
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def frames(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def caller_transcoded(payloads: list[bytes]) -> Callable[[], None]:
    """Decode, 8 -> 16 kHz (the transport), 16 -> 24 kHz (the service, pipecat's resampler)."""
    to_pipeline, to_session = StreamResampler(8_000, 16_000), SOXRStreamAudioResampler()
    loop = asyncio.new_event_loop()

    async def run() -> None:
        for payload in payloads:
            pcm16k = to_pipeline.process(LAW.decode(payload))
            frame = InputAudioRawFrame(pcm16k, 16_000, 1)  # the transport makes one either way
            await to_session.resample(frame.audio, 16_000, 24_000)

    return lambda: loop.run_until_complete(run())


def caller_passed(payloads: list[bytes]) -> Callable[[], None]:
    """Decode, 8 -> 16 kHz for the pipeline, and the frame's own bytes to the session."""
    to_pipeline, source = StreamResampler(8_000, 16_000), G711Input(AudioFormat.G711_ULAW)

    def run() -> None:
        for payload in payloads:
            pcm16k = to_pipeline.process(LAW.decode(payload))
            frame = G711InputAudioFrame(pcm16k, 16_000, 1, g711=payload)
            source.audio(frame, frame.audio, frame.sample_rate)

    return run


def bot_transcoded(chunks24k: list[bytes]) -> Callable[[], None]:
    """Each 20 ms output chunk resampled 24 -> 8 kHz and encoded (the transport)."""
    to_phone = StreamResampler(24_000, 8_000)

    def run() -> None:
        for chunk in chunks24k:
            LAW.encode(to_phone.process(chunk))

    return run


def bot_passed(deltas: list[bytes]) -> Callable[[], None]:
    """Each delta decoded for the pipeline (the service); each chunk's bytes taken back."""
    keeper = G711Passthrough(LAW)

    def run() -> None:
        for delta in deltas:
            pcm8k = LAW.decode(delta)
            keeper.brought(delta)
            for start in range(0, len(pcm8k), 320):
                keeper.chunk(pcm8k[start : start + 320])

    return run


def server_input(fmt: AudioFormat, data: bytes) -> Callable[[], None]:
    """The embedded server's input buffer with VAD framing, 20 ms appends."""
    size = FRAME_MS * (48 if fmt is AudioFormat.PCM16_24K else 8)

    def run() -> None:
        buffer = InputAudioBuffer(fmt)
        buffer.enable_vad(True)
        for piece in frames(data, size):
            buffer.append(piece)

    return run


def server_output(fmt: AudioFormat, deltas24k: list[bytes]) -> Callable[[], None]:
    """The embedded server encoding each 100 ms delta of its voice (24 kHz) to ``fmt``."""
    return lambda: [codec.from_pcm16_24k(delta, fmt) for delta in deltas24k]  # type: ignore[func-returns-value]


def cpu_ms(
    baseline: Callable[[], Any], candidate: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Median CPU milliseconds of one run of each, run in turns (a loaded machine drifts)."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for work, into in ((baseline, samples[0]), (candidate, samples[1])):
            started = time.process_time()
            work()
            into.append((time.process_time() - started) * 1000)
    first, second = median(samples[0]), median(samples[1])
    assert first is not None and second is not None
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    caller8k, bot24k = voice_like(SECONDS, 8_000), voice_like(SECONDS, 24_000)
    caller_g711 = LAW.encode(caller8k)
    bot_g711 = codec.from_pcm16_24k(bot24k, AudioFormat.G711_ULAW)
    payloads = frames(caller_g711, 8 * FRAME_MS)
    deltas_g711 = frames(bot_g711, 8 * DELTA_MS)
    chunks24k = frames(bot24k, 48 * FRAME_MS)
    deltas24k = frames(bot24k, 48 * DELTA_MS)

    measured = {
        "caller": cpu_ms(caller_transcoded(payloads), caller_passed(payloads), args.repeats),
        "bot": cpu_ms(bot_transcoded(chunks24k), bot_passed(deltas_g711), args.repeats),
        "server_input": cpu_ms(
            server_input(AudioFormat.PCM16_24K, bot24k),
            server_input(AudioFormat.G711_ULAW, caller_g711),
            args.repeats,
        ),
        "server_output": cpu_ms(
            server_output(AudioFormat.PCM16_24K, deltas24k),
            server_output(AudioFormat.G711_ULAW, deltas24k),
            args.repeats,
        ),
    }
    ours = [measured["caller"], measured["bot"]]
    theirs = [measured["server_input"], measured["server_output"]]
    totals = {
        "voxpipe_serve": tuple(round(sum(p[i] for p in ours), 1) for i in (0, 1)),
        "embedded_server": tuple(round(sum(p[i] for p in theirs), 1) for i in (0, 1)),
    }
    totals["both"] = tuple(
        round(totals["voxpipe_serve"][i] + totals["embedded_server"][i], 1) for i in (0, 1)
    )
    rows = []
    for name, (transcoded, passed) in {**measured, **totals}.items():
        ratio = round(passed / transcoded, 3) if transcoded else None
        rows.append([name, transcoded, passed, round(transcoded - passed, 1), ratio])
    load = machine()["load_1m"]
    print_table(
        f"CPU ms per call-minute of audio each way (median of {args.repeats}; load {load})",
        ["where", "transcoded", "G.711 passed through", "saved", "passed / transcoded"],
        rows,
    )
    result = {
        "seconds_each_way": SECONDS,
        "repeats": args.repeats,
        "cpu_ms_per_call_minute": {
            name: {"transcoded": t, "passed_through": p, "ratio": round(p / t, 3) if t else None}
            for name, (t, p) in {**measured, **totals}.items()
        },
    }
    print(f"wrote {write_result('g711', result)}")


if __name__ == "__main__":
    main()
