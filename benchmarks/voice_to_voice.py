"""Voice-to-voice latency on the embedded stack: true end of speech -> first bot audio out.

A recording of N spoken turns (generated speech, varied sentences, some with
mid-sentence pauses) is played in real time into each path:

- chained: through the file transport into the chained graph; stamps on the
  transport clock, first audio = first bot chunk the output transport wrote;
- realtime: over the Realtime protocol into ``voxpipe realtime-server``'s local
  brain (in process, server VAD with ``--realtime-silence-ms``), fed in real
  time by a websocket client; first audio = first ``response.output_audio.delta``.

For each turn the time from the true end of the caller's speech (the voice's
own trailing silence excluded) to the first bot audio is measured, with the
per-stage split (VAD stop, end of turn, transcript, first LLM text, first
audio), the STT word error rate on what the path heard, and the LLM's prompt
work (prompt tokens, how many were not in the KV cache, time to first token).
Premature end of turn: the turn ended before the caller finished the
sentence. Baselines in the same run:

- ``pipecat`` (the headline ratio voxpipe/pipecat): pipecat's own chained
  pipeline with the same engines on the same recording and transport, with
  pipecat's defaults: Silero VAD with ``VADParams()``, the user aggregator's
  default turn strategies (the bundled smart-turn v3 model), replies spoken
  sentence by sentence, no speculation, no prompt prefill;
- the naive sequential turn (whole STT, whole LLM reply, then TTS) on the same
  clips, which excludes end-of-turn detection entirely (so the ratio flatters it).

    python benchmarks/voice_to_voice.py [--turns 20] [--calls 1] [--path both]
        [--speech-timeout-secs 0.6] [--smart-turn] [--first-words 5] [--tag _x]
        [--no-pipecat]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import itertools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from _common import machine, median, percentile, print_table, speak, write_result
from chained_turn import naive_turn
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    LLMTextFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)

from voxpipe.engines import LocalEngines, WhisperEngine, shared_engines
from voxpipe.evaluation import word_error_rate
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS, TurnSettings, build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.local.llm import LocalLLMService
from voxpipe.processors.local.stt import LocalWhisperSTTService
from voxpipe.processors.local.tts import FIRST_WORDS, LocalTTSService
from voxpipe.transports.file import FileTransport
from voxpipe.written_audio import WrittenAudio

SENTENCES = [
    "What time does the pharmacy open on Saturday?",
    "Hi, I would like to know if my prescription is ready.",
    "Which planet is closest to the sun?",
    "Can you tell me, roughly, how long delivery takes?",
    "What is the capital city of Canada?",
    "I lost my card, what should I do?",
    "How many minutes are there in a day?",
    "Is it going to rain in Paris tomorrow?",
    "Please, could you repeat the opening hours?",
    "What is two plus two?",
    "Do you sell vitamin D tablets?",
    "My name is Anna, and I have a question about my order.",
    "How do I reset my password?",
    "What is the tallest mountain in the world?",
    "Can I pay by card at the counter?",
    "Where is the nearest train station?",
    "Thanks, and what about Sunday?",
    "How long should I boil an egg?",
    "What language is spoken in Brazil?",
    "Could you book me an appointment for Monday morning?",
]
GAP_MS = 6_000


class Stamps(BaseObserver):
    """When each stage happened (transport clock, ms)."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self.now = now
        self.events: dict[str, list[float]] = {}
        self.transcripts: list[tuple[float, str]] = []
        self.replies: list[tuple[float, str]] = []  # the LLM's text, piece by piece

    async def on_push_frame(self, data: FramePushed) -> None:
        if not data.first_push:
            return
        kinds = {
            VADUserStoppedSpeakingFrame: "vad_stop",
            TranscriptionFrame: "transcript",
            UserStoppedSpeakingFrame: "turn_end",
            LLMTextFrame: "llm_text",
        }
        for cls, name in kinds.items():
            if isinstance(data.frame, cls):
                self.events.setdefault(name, []).append(self.now())
        if isinstance(data.frame, TranscriptionFrame):
            self.transcripts.append((self.now(), data.frame.text))
        if isinstance(data.frame, LLMTextFrame):
            self.replies.append((self.now(), data.frame.text))

    def mark(self, name: str) -> None:
        self.events.setdefault(name, []).append(self.now())


SPECULATIONS: list[dict[str, int]] = []  # each chained call's speculation counts
GAPS_MS: list[float] = []  # output jitter: silence between chunks inside an utterance


def output_gaps(written: list[Any]) -> list[float]:
    """Per consecutive pair of chunks of one utterance, how late the second began (ms).

    0 is a seamless join; anything above is silence the caller heard inside the
    bot's speech: the output pacing stalled, or the TTS fell behind real time.
    """
    gaps = []
    for before, after in itertools.pairwise(written):
        if before.utterance is not None and before.utterance == after.utterance:
            gaps.append(max(0.0, after.at_ms - (before.at_ms + before.duration_ms)))
    return gaps


def utterance_starts(written: list[Any]) -> list[Any]:
    """The chunks that began a bot utterance (a new one, or audio after 300 ms of none)."""
    starts = []
    for i, chunk in enumerate(written):
        before = written[i - 1] if i else None
        if (
            before is None
            or before.utterance != chunk.utterance
            or chunk.at_ms - (before.at_ms + before.duration_ms) >= 300
        ):
            starts.append(chunk)
    return starts


def first_after(times: list[float], t: float, before: float) -> float | None:
    return next((x for x in sorted(times) if t <= x < before), None)


def pipecat_pipeline(transport: FileTransport) -> Pipeline:
    """pipecat's own chained pipeline on voxpipe's engines, every setting pipecat's default."""
    context = LLMContext()
    user_params = LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    pair = LLMContextAggregatorPair(context, user_params=user_params)
    stt = LocalWhisperSTTService()
    llm = LocalLLMService(instructions=DEFAULT_INSTRUCTIONS, speculate=False)
    tts = LocalTTSService(first_clause_words=None, first_words=None)  # pipecat's sentences
    return Pipeline(
        [transport.input(), stt, pair.user(), llm, tts, transport.output(), pair.assistant()]
    )


async def pipecat_call(recording: Path, ends: list[float]) -> list[dict[str, float | None]]:
    transport = FileTransport(recording, paced=True)
    return await _run_call(transport, pipecat_pipeline(transport), ends)


async def one_call(
    recording: Path, ends: list[float], turn: TurnSettings, options: argparse.Namespace
) -> list[dict[str, float | None]]:
    transport = FileTransport(recording, paced=True)
    stt = None
    if options.stt_window_secs:
        engine = WhisperEngine(short_window_secs=options.stt_window_secs or None)
        stt = LocalWhisperSTTService(engine=engine)
    tts = LocalTTSService(
        voice=options.voice,
        first_clause_words=options.first_clause_words or None,
        first_words=options.first_words or None,
    )
    llm = LocalLLMService(instructions=DEFAULT_INSTRUCTIONS, speculate=not options.no_speculate)
    graph = build_chained_pipeline(transport, turn=turn, stt=stt, llm=llm, tts=tts)
    tts_used = graph.services["tts"]
    stamps = Stamps(now=transport.clock.now_ms)
    # The profile of the head start: when a speculated reply began (on a transcript), and
    # when its first piece of speech was ready to synthesise (the LLM's share of the path).
    llm.add_speculation_listener(lambda _s: stamps.mark("speculation"))
    if hasattr(tts_used, "presynthesize"):
        synthesize_ahead = tts_used.presynthesize

        async def presynthesize(text: str) -> None:
            stamps.mark("first_piece")
            await synthesize_ahead(text)

        tts_used.presynthesize = presynthesize
    rows = await _run_call(transport, graph.pipeline, ends, stamps)
    SPECULATIONS.append(
        {
            **dataclasses.asdict(llm.speculations),
            "tts_ahead_used": getattr(tts_used, "ahead_used", 0),
            "stt_early_used": getattr(graph.services["stt"], "early_used", 0),
        }
    )
    GAPS_MS.extend(output_gaps(transport.written))
    return rows


async def _run_call(
    transport: FileTransport,
    pipeline: Pipeline,
    ends: list[float],
    stamps: Stamps | None = None,
) -> list[dict[str, float | None]]:
    """Play the recording through ``pipeline``; each turn's stages after its true end."""
    stamps = stamps or Stamps(now=transport.clock.now_ms)
    transport.written = WrittenAudio(keep=100_000)  # the whole call's chunks, not a minute
    finished = asyncio.Event()

    @transport.event_handler("on_input_finished")
    async def _done(_t: FileTransport) -> None:
        finished.set()

    async with CallSession(pipeline, observers=[stamps]):
        await finished.wait()
    origin = transport.input_started_ms
    ev = {k: [t - origin for t in v] for k, v in stamps.events.items()}
    # Where each bot utterance began: a reply still playing when the next question ends (the
    # caller talks over it) is not that question's answer.
    ev["audio"] = [w.at_ms - origin for w in utterance_starts(list(transport.written))]
    rows = turn_rows(ev, ends)
    for row, end in zip(rows, ends, strict=True):
        heard = [t for at, t in stamps.transcripts if end - 4_000 <= at - origin < end + 3_000]
        row["heard"] = " ".join(heard)  # type: ignore[assignment]
        said = [t for at, t in stamps.replies if end - 2_000 <= at - origin < end + GAP_MS - 500]
        row["reply"] = "".join(said).strip()  # type: ignore[assignment]
    return rows


def turn_rows(ev: dict[str, list[float]], ends: list[float]) -> list[dict[str, float | None]]:
    """Per turn, each stage's first time relative to the true end of speech (ms)."""
    rows = []
    for i, end in enumerate(ends):
        limit = ends[i + 1] - 3_000 if i + 1 < len(ends) else float("inf")
        start = end - 4_000  # the sentence began before its end
        first_audio = first_after(ev.get("audio", []), end - 2_000, limit)
        turn_end = first_after(ev.get("turn_end", []), start, limit)
        row = {
            "first_audio_ms": None if first_audio is None else first_audio - end,
            "turn_end_ms": None if turn_end is None else turn_end - end,
            "vad_stop_ms": _rel(first_after(ev.get("vad_stop", []), end - 500, limit), end),
            "transcript_ms": _rel(first_after(ev.get("transcript", []), end, limit), end),
            "llm_first_text_ms": _rel(first_after(ev.get("llm_text", []), end, limit), end),
            "speculation_ms": _rel(first_after(ev.get("speculation", []), end, limit), end),
            "first_piece_ms": _rel(first_after(ev.get("first_piece", []), end, limit), end),
            "premature": 1.0 if turn_end is not None and turn_end < end else 0.0,
        }
        rows.append(row)
    return rows


def _rel(t: float | None, end: float) -> float | None:
    return None if t is None else t - end


# -- realtime path: voxpipe realtime-server --brain local ---------------------------------

CHUNK_MS = 20


async def realtime_call(
    url: str, pcm24: bytes, ends: list[float], silence_ms: int
) -> list[dict[str, float | None]]:
    """One call fed in real time over the Realtime protocol; stamps on the client's clock."""
    loop = asyncio.get_running_loop()
    step = 48 * CHUNK_MS
    events: dict[str, list[float]] = {}
    transcripts: list[tuple[float, str]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{url}?model=local", headers={"Authorization": "Bearer bench"}, max_msg_size=0
        ) as ws,
    ):
        await ws.receive()
        session = {
            "type": "realtime",
            "audio": {
                "input": {
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms},
                }
            },
        }
        await ws.send_str(json.dumps({"type": "session.update", "session": session}))
        origin = loop.time()

        async def send_audio() -> None:
            for i, start in enumerate(range(0, len(pcm24), step)):
                chunk = base64.b64encode(pcm24[start : start + step]).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                # Real time against the call's own clock, so lateness does not accumulate.
                await asyncio.sleep(max(0.0, origin + (i + 1) * CHUNK_MS / 1000 - loop.time()))

        async def receive() -> None:
            kinds = {
                "input_audio_buffer.speech_stopped": "vad_stop",
                "input_audio_buffer.committed": "turn_end",
                "conversation.item.input_audio_transcription.completed": "transcript",
                "response.output_audio_transcript.delta": "llm_text",
                "response.output_audio.delta": "audio",
            }
            async for message in ws:
                event = json.loads(message.data)
                now = (loop.time() - origin) * 1000
                if (name := kinds.get(event["type"])) is not None:
                    events.setdefault(name, []).append(now)
                if name == "transcript":
                    transcripts.append((now, event.get("transcript", "")))

        receiver = asyncio.create_task(receive())
        await send_audio()
        await asyncio.sleep(3)
        receiver.cancel()
    rows = turn_rows(events, ends)
    for row, end in zip(rows, ends, strict=True):
        row["heard"] = next((t for at, t in transcripts if end - 500 <= at), None)  # type: ignore[assignment]
    return rows


async def realtime_path(
    recording: Path, ends: list[float], calls: int, silence_ms: int, first_words: int | None
) -> list[dict[str, float | None]]:
    from voxpipe.realtime_server import codec
    from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    audio, rate = sf.read(str(recording), dtype="int16")
    pcm24 = codec.resample(audio.tobytes(), rate, 24_000)
    brain = await LocalBrain.load(first_words=first_words)
    async with running_realtime_server(config=ServerConfig(api_key="bench"), brain=brain) as srv:
        results = await asyncio.gather(
            *(realtime_call(srv.realtime_url, pcm24, ends, silence_ms) for _ in range(calls))
        )
    return [r for call in results for r in call]


def trailing_silence_ms(samples: np.ndarray) -> float:
    level = np.abs(samples.astype(np.float32))
    voiced = np.nonzero(level > 0.02 * level.max())[0]
    return (samples.size - (voiced[-1] + 1 if voiced.size else samples.size)) / 16


def make_recording(
    engines: LocalEngines, folder: Path, turns: int
) -> tuple[Path, list[float], list[bytes]]:
    parts, ends, clips, cursor = [np.zeros(8_000, dtype="<i2")], [], [], 500.0
    for text in (SENTENCES * 3)[:turns]:
        pcm = speak(engines.tts, text)
        clips.append(pcm)
        samples = np.frombuffer(pcm, dtype="<i2")
        cursor += samples.size / 16
        # The true end of speech: the voice's own trailing silence is not speech.
        ends.append(cursor - trailing_silence_ms(samples))
        parts += [samples, np.zeros(16 * GAP_MS, dtype="<i2")]
        cursor += GAP_MS
    path = folder / "caller.wav"
    sf.write(str(path), np.concatenate(parts), 16_000)
    return path, ends, clips


STAGES = [
    "vad_stop_ms",
    "transcript_ms",
    "speculation_ms",
    "first_piece_ms",
    "turn_end_ms",
    "llm_first_text_ms",
    "first_audio_ms",
]


def summarise(
    path: str, rows: list[dict[str, float | None]], texts: list[str], naive_p50: float | None
) -> tuple[list[list[object]], dict[str, object]]:
    v2v = [r["first_audio_ms"] for r in rows]
    answered = [x for x in v2v if x is not None]
    premature = sum(r["premature"] or 0 for r in rows) / len(rows)
    wers = [
        word_error_rate(text, str(r.get("heard") or ""))
        for r, text in zip(rows, texts * (len(rows) // len(texts)), strict=True)
    ]
    table: list[list[object]] = [
        [f"{path}: {s}", median([r[s] for r in rows]), percentile([r[s] for r in rows], 95)]
        for s in STAGES
    ]
    p50 = median(v2v)  # type: ignore[arg-type]
    ratio = round(p50 / naive_p50, 2) if p50 and naive_p50 else None
    table += [
        [f"{path}: ratio / naive (p50)", ratio, None],
        [f"{path}: premature end of turn", f"{premature:.0%}", None],
        [f"{path}: turns answered", f"{len(answered)}/{len(rows)}", None],
        [f"{path}: STT word error rate (mean)", round(sum(wers) / len(wers), 3), None],
    ]
    result = {
        "p50_ms": p50,
        "p95_ms": percentile(v2v, 95),  # type: ignore[arg-type]
        "ratio_to_naive_p50": ratio,
        "premature_rate": premature,
        "answered": len(answered),
        "wer_mean": round(sum(wers) / len(wers), 3),
        "stages_p50": {s: median([r[s] for r in rows]) for s in STAGES},  # type: ignore[misc]
        "stages_p95": {s: percentile([r[s] for r in rows], 95) for s in STAGES},  # type: ignore[misc]
        "rows": rows,
    }
    return table, result


async def main(
    turns: int,
    calls: int,
    paths: list[str],
    turn: TurnSettings,
    silence_ms: int,
    options: argparse.Namespace,
) -> None:
    engines = await shared_engines()
    # One prompt, one reply: both pipelines' answers to the same words can be compared.
    engines.llm.seed = 0
    texts = (SENTENCES * 3)[:turns]
    load_before = machine()["load_1m"]
    results: dict[str, list[dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        recording, ends, clips = make_recording(engines, Path(tmp), turns)
        engines.llm.generations = []
        if "chained" in paths:
            calls_rows = await asyncio.gather(
                *(one_call(recording, ends, turn, options) for _ in range(calls))
            )
            results["chained"] = [r for call in calls_rows for r in call]
        if not options.no_pipecat:
            results["pipecat"] = await pipecat_call(recording, ends)
        if "realtime" in paths:
            results["realtime"] = await realtime_path(
                recording, ends, calls, silence_ms, options.first_words or None
            )
    generations = engines.llm.generations  # the calls' LLM prompt work, before the naive turns
    naive = [await asyncio.to_thread(naive_turn, engines, pcm) for pcm in clips]
    naive_first = [n["first_audio_ms"] for n in naive]
    n50 = median(naive_first)
    table: list[list[object]] = [
        ["naive sequential (no end-of-turn wait)", n50, percentile(naive_first, 95)]
    ]
    summary: dict[str, object] = {}
    for path, rows in results.items():
        rows_table, summary[path] = summarise(path, rows, texts, n50)
        table += rows_table
    if "pipecat" in summary and "chained" in results:
        # Answer quality: the same reply to the same words as pipecat's own pipeline got.
        pairs = list(zip(results["chained"], results["pipecat"], strict=False))
        same_words = [(a, b) for a, b in pairs if a.get("heard") == b.get("heard")]
        same = sum(1 for a, b in same_words if a.get("reply") == b.get("reply"))
        summary["same_reply_as_pipecat"] = f"{same}/{len(same_words)}"
        table.append(["same reply as pipecat (same transcript)", f"{same}/{len(same_words)}", None])
    if "pipecat" in summary:
        stock = summary["pipecat"]["p50_ms"], summary["pipecat"]["p95_ms"]  # type: ignore[index]
        for path in ("chained", "realtime"):
            if path in summary:
                mine = summary[path]["p50_ms"], summary[path]["p95_ms"]  # type: ignore[index]
                pairs = zip(mine, stock, strict=True)
                ratios = [round(m / b, 2) if m and b else None for m, b in pairs]
                summary[path]["ratio_to_pipecat"] = ratios  # type: ignore[index]
                table.append([f"{path} / pipecat's own pipeline", ratios[0], ratios[1]])
    llm_work: dict[str, object] = {
        "speculate": not options.no_speculate,
        "speculations_per_call": SPECULATIONS,
        "prompt_tokens_p50": median([g.prompt_tokens for g in generations]),
        "new_prompt_tokens_p50": median([g.prompt_tokens - g.cached_tokens for g in generations]),
        "first_token_ms_p50": median([g.first_token_ms for g in generations]),
        "first_token_ms_p95": percentile([g.first_token_ms for g in generations], 95),
    }
    table += [[f"LLM {k}", v, None] for k, v in llm_work.items() if k != "speculations_per_call"]
    table += [[f"speculation call {i + 1}", str(s), None] for i, s in enumerate(SPECULATIONS)]
    jitter = {
        "joins": len(GAPS_MS),
        "gap_ms_p50": median(GAPS_MS),
        "gap_ms_p95": percentile(GAPS_MS, 95),
        "gap_ms_max": round(max(GAPS_MS), 1) if GAPS_MS else None,
        "gaps_over_20ms": sum(1 for g in GAPS_MS if g > 20),
    }
    if GAPS_MS:
        table += [
            [
                "chained output: gap inside an utterance, ms",
                jitter["gap_ms_p50"],
                jitter["gap_ms_p95"],
            ],
            [
                "chained output: joins with a gap > 20 ms",
                f"{jitter['gaps_over_20ms']}/{jitter['joins']} (max {jitter['gap_ms_max']} ms)",
                None,
            ],
        ]
    print_table(
        f"Voice to voice, {turns} turns x {calls} concurrent call(s) "
        f"(ms after the true end of speech; load before {load_before})",
        ["stage", "p50", "p95"],
        table,
    )
    out = write_result(
        f"voice_to_voice_{'_'.join(paths)}_{calls}call{options.tag}",
        {
            "turns": turns,
            "calls": calls,
            "load_1m_before": load_before,
            "turn_settings": turn.__dict__,
            "realtime_silence_ms": silence_ms,
            "stt_window_secs": options.stt_window_secs,
            "tts_first_clause_words": options.first_clause_words,
            "tts_first_words": options.first_words,
            "tts_voice": options.voice,
            "naive_p50_ms": n50,
            "llm_prompt_work": llm_work,
            "chained_output_jitter": jitter,
            "naive_p95_ms": percentile(naive_first, 95),
            **summary,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--path", choices=["chained", "realtime", "both"], default="both")
    parser.add_argument("--vad-stop-secs", type=float, default=TurnSettings.vad_stop_secs)
    parser.add_argument(
        "--speech-timeout-secs", type=float, default=TurnSettings.user_speech_timeout_secs
    )
    parser.add_argument("--smart-turn", action="store_true")
    parser.add_argument(
        "--early-transcript-ms",
        type=float,
        default=TurnSettings.early_transcript_ms,
        help="Whisper begins at a pause this long, before the VAD's stop; 0: at the stop",
    )
    parser.add_argument(
        "--realtime-silence-ms", type=int, default=500, help="server VAD silence_duration_ms"
    )
    parser.add_argument(
        "--stt-window-secs", type=float, default=0.0, help="Whisper window; 0: 30 s"
    )
    parser.add_argument(
        "--first-clause-words", type=int, default=4, help="TTS first clause; 0: sentences"
    )
    parser.add_argument(
        "--first-words", type=int, default=FIRST_WORDS, help="TTS first piece cut; 0: none"
    )
    parser.add_argument("--voice", default="auto", help="chained TTS: auto, piper or espeak")
    parser.add_argument("--tag", default="", help="suffix of the JSON result's name")
    parser.add_argument(
        "--no-pipecat", action="store_true", help="skip pipecat's own pipeline (the baseline)"
    )
    parser.add_argument(
        "--no-speculate", action="store_true", help="prefill the prompt only, no speculative reply"
    )
    args = parser.parse_args()
    settings = TurnSettings(
        vad_stop_secs=args.vad_stop_secs,
        user_speech_timeout_secs=args.speech_timeout_secs,
        smart_turn=args.smart_turn,
        early_transcript_ms=args.early_transcript_ms or None,
    )
    chosen = ["chained", "realtime"] if args.path == "both" else [args.path]
    asyncio.run(main(args.turns, args.calls, chosen, settings, args.realtime_silence_ms, args))
