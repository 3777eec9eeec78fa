"""Voice to voice on the live transports: the chained graph behind ``voxpipe serve``.

The same 20-turn recording as ``voice_to_voice.py`` (one call, real time) is
said by a caller of each transport to one ``voxpipe serve`` process in this
process, which runs the chained graph on the local engines (the embedded
default, speculation and speaking ahead on):

- ``file``: the file transport (sound-card pacing), the same graph and defaults,
  the baseline of the ratios;
- ``webrtc``: an aiortc peer (a browser's WebRTC stack without the page) over
  loopback; the true end of speech is placed where the server captured that
  audio (its capture log), the first bot audio is the first loud 20 ms the
  peer received after it;
- ``phone``: the fake Twilio media stream (8 kHz mu-law both ways, the number's
  webhook first), 0 ms network latency; the end of speech is when the carrier
  sent that audio, the first bot audio is when its playback buffer began
  playing the first loud chunk after it.

Per turn: true end of speech -> first bot audio; p50/p95 per transport and the
ratio to the file transport in the same run. Stages, premature end of turn and
STT word error are ``voice_to_voice.py``'s (the file transport).

    python benchmarks/voice_to_voice_live.py [--turns 20] [--transports file,webrtc,phone]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, median, percentile, print_table, write_result
from voice_to_voice import GAP_MS, make_recording, one_call

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from fake_twilio import FakeTwilio, mulaw_recording  # noqa: E402
from phone_calls import calling as phone_calling  # noqa: E402
from webrtc_peer import calling as webrtc_calling  # noqa: E402

from voxpipe.engines import shared_engines  # noqa: E402
from voxpipe.pipelines.chained import TurnSettings  # noqa: E402
from voxpipe.pipelines.live_call import LiveCallSpec  # noqa: E402
from voxpipe.pipelines.simulated_call import Mode  # noqa: E402
from voxpipe.processors.local.tts import FIRST_WORDS  # noqa: E402
from voxpipe.transports.telephony.routes import TwilioConfig  # noqa: E402
from voxpipe.transports.webrtc.app import RunningServe, ServeConfig, running_serve  # noqa: E402

LOUD = 0.02
TAIL_MS = 3_000  # a reply after the next question's end - this belongs to the next turn


def _loud(pcm: np.ndarray) -> bool:
    x = pcm.astype(np.float32) / 32768
    return bool(x.size) and float(np.sqrt((x**2).mean())) > LOUD


def first_after(times: list[float], end: float, next_end: float | None) -> float | None:
    """The first bot audio after ``end`` (ms on the same clock) and before the next turn's.

    From ``end`` on: loud audio just before it is the previous reply still playing (the
    caller talked over it); a turn ended early is the file transport's measure.
    """
    limit = next_end - TAIL_MS if next_end is not None else float("inf")
    return next((t - end for t in sorted(times) if end <= t < limit), None)


def per_turn(loud_at: list[float], ends_at: list[float | None]) -> list[float | None]:
    rows: list[float | None] = []
    for i, end in enumerate(ends_at):
        following = ends_at[i + 1] if i + 1 < len(ends_at) else None
        rows.append(None if end is None else first_after(loud_at, end, following))
    return rows


def _serve_config() -> ServeConfig:
    # An aiortc peer and the fake carrier play no bot audio into their microphone: no echo guard.
    spec = LiveCallSpec(mode=Mode.CHAINED, echo_guard=None)
    return ServeConfig(call=spec, twilio=TwilioConfig())


async def webrtc_turns(serve: RunningServe, recording: Path, ends: list[float]) -> list[Any]:
    """One WebRTC call saying the recording; each turn's end of speech -> first loud audio."""
    speech_ends: list[float | None] = [None] * len(ends)
    async with webrtc_calling(serve.url, recording) as caller:
        deadline = time.monotonic() + 20
        while not serve.app.calls and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        live = next(iter(serve.app.calls.values())).call
        captures = live.transport.captures
        # Map each end to the server's clock while its frame is still in the capture log.
        while speech_ends[-1] is None:
            for i, end in enumerate(ends):
                if speech_ends[i] is None and (chunk := captures.at_position(end)) is not None:
                    speech_ends[i] = chunk.captured_at(end)
            await asyncio.sleep(0.05)
        await asyncio.sleep(GAP_MS / 1000 - 1)
        samples = caller.heard.samples()
        arrivals = list(caller.heard.arrivals_ms)
    block = 48_000 // 50
    loud_at = [
        arrivals[i]
        for i in range(min(len(arrivals), samples.size // block))
        if _loud(samples[i * block : (i + 1) * block])
    ]
    return per_turn(loud_at, speech_ends)


async def phone_turns(serve: RunningServe, recording: Path, ends: list[float]) -> list[Any]:
    """One fake-Twilio call saying the recording at 8 kHz; end of speech -> first loud playback."""
    twilio = FakeTwilio(mulaw_recording(recording))
    stream_url, parameters = await twilio.answer(serve.url)
    async with phone_calling(twilio, stream_url, parameters):
        await asyncio.sleep(0.5)
        while twilio.now_ms() < twilio.caller_sent_ms(ends[-1]) + GAP_MS - 1_000:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        segments = list(twilio.segments)
    loud_at = [
        s.start_ms for s in segments if _loud(np.frombuffer(twilio.law.decode(s.payload), "<i2"))
    ]
    return per_turn(loud_at, [twilio.caller_sent_ms(end) for end in ends])


async def file_turns(recording: Path, ends: list[float]) -> list[Any]:
    options = argparse.Namespace(
        stt_window_secs=0.0,
        first_clause_words=4,
        first_words=FIRST_WORDS,
        no_speculate=False,
        voice="auto",
    )
    rows = await one_call(recording, ends, TurnSettings(), options)
    return [r["first_audio_ms"] for r in rows]


async def main(args: argparse.Namespace) -> None:
    engines = await shared_engines()
    load_before = machine()["load_1m"]
    figures: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        recording, ends, _ = make_recording(engines, Path(tmp), args.turns)
        async with running_serve(_serve_config()) as serve:
            for transport in args.transports:
                if transport == "file":
                    figures[transport] = await file_turns(recording, ends)
                elif transport == "webrtc":
                    figures[transport] = await webrtc_turns(serve, recording, ends)
                else:
                    figures[transport] = await phone_turns(serve, recording, ends)
                print(f"{transport}: {figures[transport]}", flush=True)
    base = median(figures["file"]) if "file" in figures else None
    summary: dict[str, Any] = {}
    rows: list[list[object]] = []
    for transport, first in figures.items():
        p50, p95 = median(first), percentile(first, 95)
        ratio = round(p50 / base, 2) if p50 and base else None
        answered = sum(x is not None for x in first)
        summary[transport] = {
            "p50_ms": p50,
            "p95_ms": p95,
            "ratio_to_file_p50": ratio,
            "answered": answered,
            "first_audio_ms": first,
        }
        rows.append([transport, f"{answered}/{len(first)}", p50, p95, ratio])
    print_table(
        f"Voice to voice on the chained graph, {args.turns} turns, one call per transport "
        f"(ms after the true end of speech; load before {load_before})",
        ["transport", "answered", "p50", "p95", "x file (p50)"],
        rows,
    )
    out = write_result(
        f"voice_to_voice_live{args.tag}",
        {"turns": args.turns, "load_1m_before": load_before, "transports": summary},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument(
        "--transports",
        type=lambda s: s.split(","),
        default=["file", "webrtc", "phone"],
        help="comma-separated: file, webrtc, phone",
    )
    parser.add_argument("--tag", default="", help="suffix of the JSON result's name")
    asyncio.run(main(parser.parse_args()))
