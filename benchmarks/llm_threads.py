"""llama.cpp's threads on 2 shared cores: 2 (the old default), 1, or 1 to decode and 2 for prompts.

On a 2-core machine the LLM shares the cores with Piper, Whisper, Silero and
the event loop; llama.cpp's threads spin while they wait for each other, so a
second thread can cost more than it brings. Configurations are
``decode/batch`` thread counts (``n_threads`` / ``n_threads_batch``: one token
at a time for the reply, many at once for a prompt or a prefill); the
baseline of every ratio is ``2/2``, the old default, measured in the same run.

- ``llm``: the LLM alone, then beside Piper (a thread synthesising sentences
  all the while, as the chained graph's voice does while the reply streams).
  Each round asks every configuration one question in a rotated order, on one
  engine switched between them (:meth:`LlamaEngine.set_threads`), with a
  prompt never seen before (a fresh call id heads it), so the prompt is
  evaluated whole: prompt ms (to the first token), decode tokens/s, and
  beside Piper also Piper's real-time factor (ms of work per second of audio).
- ``turn``: whole chained turns on the file transport, paced in real time
  (voice_to_voice's method: the true end of speech -> the first bot audio,
  with the stage split; here the bot's first start of speech after the turn
  ended, so a reply to the turn before still playing is not counted, and the
  transport's written log, which keeps a minute, is not needed). One call,
  one shared engine; the configuration changes turn by turn (turn i uses
  configuration i mod k, and each sentence meets every configuration), so
  load drift hits all alike.

The machine's 1-minute load is recorded before and after each part.

    python benchmarks/llm_threads.py [--part llm|turn|both] [--rounds 12] [--turns 60]
        [--configs 2/2,1/1,1/2] [--tag _x]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import QUESTIONS, machine, median, percentile, print_table, write_result
from pipecat.frames.frames import BotStartedSpeakingFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from voice_to_voice import SENTENCES, Stamps, make_recording, turn_rows

from voxpipe.engines import LlamaEngine, LocalEngines, shared_engines
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS, TurnSettings, build_chained_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.local.llm import LocalLLMService
from voxpipe.transports.file import FileTransport

BASELINE = "2/2"
PIPER_TEXT = "The pharmacy opens at nine on Saturday and closes at six in the evening."


def parse_config(text: str) -> tuple[int, int]:
    decode, _, batch = text.partition("/")
    return int(decode), int(batch or decode)


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value and base else None


# -- the LLM alone, and beside Piper -----------------------------------------------------


class PiperBeside:
    """A thread synthesising sentences until stopped; each one's work per audio second."""

    def __init__(self, engines: LocalEngines) -> None:
        self._engines = engines
        self._stop = threading.Event()
        self.rtf_ms: list[float] = []  # ms of synthesis per second of audio
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rate = self._engines.tts.sample_rate
        while not self._stop.is_set():
            started = time.perf_counter()
            audio = sum(len(c) for c in self._engines.tts.synthesize(PIPER_TEXT)) / 2 / rate
            if audio:
                self.rtf_ms.append((time.perf_counter() - started) * 1000 / audio)

    def __enter__(self) -> PiperBeside:
        self._thread.start()
        time.sleep(0.3)  # Piper under way before the LLM starts
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def ask(llm: LlamaEngine, question: str, max_tokens: int) -> dict[str, float | None]:
    """One reply to a prompt the KV cache has never held: prompt ms and decode tokens/s."""
    messages = [
        {"role": "system", "content": f"Call {uuid.uuid4().hex}. {DEFAULT_INSTRUCTIONS}"},
        {"role": "user", "content": question},
    ]
    started = time.perf_counter()
    stamps = [time.perf_counter() for _ in llm.stream_chat(messages, max_tokens=max_tokens)]
    stats = llm.generations[-1]
    decode_s = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {
        "prompt_tokens": float(stats.prompt_tokens - stats.cached_tokens),
        "prompt_ms": round(stats.first_token_ms, 1),
        "tokens_per_s": round((len(stamps) - 1) / decode_s, 2) if decode_s else None,
        "reply_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def llm_part(
    engines: LocalEngines, configs: list[str], rounds: int, max_tokens: int
) -> tuple[list[list[object]], dict[str, Any]]:
    llm = engines.llm
    samples: dict[str, dict[str, list[dict[str, float | None]]]] = {
        setting: {c: [] for c in configs} for setting in ("alone", "beside_piper")
    }
    piper_rtf: dict[str, list[float]] = {c: [] for c in configs}
    ask(llm, QUESTIONS[0], 8)  # warm up
    for r in range(rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        question = QUESTIONS[r % len(QUESTIONS)]
        for config in order:
            llm.set_threads(*parse_config(config))
            samples["alone"][config].append(ask(llm, question, max_tokens))
            with PiperBeside(engines) as piper:
                samples["beside_piper"][config].append(ask(llm, question, max_tokens))
            piper_rtf[config] += piper.rtf_ms
    llm.set_threads(*parse_config(BASELINE))
    table: list[list[object]] = []
    result: dict[str, Any] = {}
    for setting, by_config in samples.items():
        base = by_config.get(BASELINE, [])
        base_prompt = median([s["prompt_ms"] for s in base])  # type: ignore[misc]
        base_tps = median([s["tokens_per_s"] for s in base])  # type: ignore[misc]
        for config, rows in by_config.items():
            prompt = [s["prompt_ms"] for s in rows]
            tps = [s["tokens_per_s"] for s in rows]
            entry = {
                "prompt_tokens_p50": median([s["prompt_tokens"] for s in rows]),  # type: ignore[misc]
                "prompt_ms_p50": median(prompt),  # type: ignore[arg-type]
                "prompt_ms_p95": percentile(prompt, 95),  # type: ignore[arg-type]
                "tokens_per_s_p50": median(tps),  # type: ignore[arg-type]
                "tokens_per_s_p5": percentile(tps, 5),  # type: ignore[arg-type]
                "prompt_ratio_to_2_2": ratio(median(prompt), base_prompt),  # type: ignore[arg-type]
                "tokens_per_s_ratio_to_2_2": ratio(median(tps), base_tps),  # type: ignore[arg-type]
                "samples": rows,
            }
            if setting == "beside_piper":
                entry["piper_ms_per_audio_s_p50"] = median(piper_rtf[config])
                entry["piper_ms_per_audio_s_p95"] = percentile(piper_rtf[config], 95)
            result.setdefault(setting, {})[config] = entry
            table.append(
                [
                    f"{setting} {config}",
                    entry["prompt_tokens_p50"],
                    entry["prompt_ms_p50"],
                    entry["prompt_ms_p95"],
                    entry["prompt_ratio_to_2_2"],
                    entry["tokens_per_s_p50"],
                    entry["tokens_per_s_ratio_to_2_2"],
                    entry.get("piper_ms_per_audio_s_p50"),
                ]
            )
    return table, result


# -- whole chained turns, the configuration changed turn by turn --------------------------


class BotStarts(BaseObserver):
    """When the output transport began each run of bot speech (transport clock, ms)."""

    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__()
        self.now = now
        self.times: list[float] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.first_push and isinstance(data.frame, BotStartedSpeakingFrame):
            self.times.append(self.now())


async def switch_threads(
    transport: FileTransport, llm: LlamaEngine, starts: list[float], configs: list[str]
) -> None:
    """Before each turn's speech begins, set that turn's threads (on the transport clock)."""
    for _ in range(60_000):  # the input starts within a minute
        if transport.input_started_ms:
            break
        await asyncio.sleep(0.001)
    origin = transport.input_started_ms
    for i, start in enumerate(starts):
        await transport.clock.sleep_until(origin + start - 300)
        llm.set_threads(*parse_config(configs[i % len(configs)]))


async def turn_part(
    engines: LocalEngines, configs: list[str], turns: int
) -> tuple[list[list[object]], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        recording, ends, clips = make_recording(engines, Path(tmp), turns)
        starts = [end - len(pcm) / 32 for end, pcm in zip(ends, clips, strict=True)]
        transport = FileTransport(recording, paced=True)
        llm = LocalLLMService(engine=engines.llm, instructions=DEFAULT_INSTRUCTIONS)
        graph = build_chained_pipeline(transport, turn=TurnSettings(), llm=llm)
        stamps = Stamps(now=transport.clock.now_ms)
        speaking = BotStarts(now=transport.clock.now_ms)
        finished = asyncio.Event()

        @transport.event_handler("on_input_finished")
        async def _done(_t: FileTransport) -> None:
            finished.set()

        async with CallSession(graph.pipeline, observers=[stamps, speaking]):
            switcher = asyncio.create_task(switch_threads(transport, engines.llm, starts, configs))
            await finished.wait()
            switcher.cancel()
    engines.llm.set_threads(*parse_config(BASELINE))
    origin = transport.input_started_ms
    events = {k: [t - origin for t in v] for k, v in stamps.events.items()}
    rows = turn_rows(events, ends)
    # The reply's first audio: the bot's first start of speech after this turn ended. (The
    # transport's written log keeps only the last minute of audio, and a reply to the turn
    # before can still be playing when this one ends: it is not this turn's answer.)
    starts_ms = [t - origin for t in speaking.times]
    for end, row in zip(ends, rows, strict=True):
        turn_end = row["turn_end_ms"]
        first = (
            None if turn_end is None else next((t for t in starts_ms if t >= end + turn_end), None)
        )
        row["first_audio_ms"] = None if first is None else round(first - end, 1)
    by_config: dict[str, list[dict[str, float | None]]] = {c: [] for c in configs}
    for i, row in enumerate(rows):
        by_config[configs[i % len(configs)]].append(row)
    base = [r["first_audio_ms"] for r in by_config.get(BASELINE, [])]
    base50, base95 = median(base), percentile(base, 95)  # type: ignore[arg-type]
    table: list[list[object]] = []
    result: dict[str, Any] = {}
    for config, config_rows in by_config.items():
        first = [r["first_audio_ms"] for r in config_rows]
        entry = {
            "turns": len(config_rows),
            "answered": sum(1 for x in first if x is not None),
            "first_audio_p50_ms": median(first),  # type: ignore[arg-type]
            "first_audio_p95_ms": percentile(first, 95),  # type: ignore[arg-type]
            "ratio_to_2_2_p50": ratio(median(first), base50),  # type: ignore[arg-type]
            "ratio_to_2_2_p95": ratio(percentile(first, 95), base95),  # type: ignore[arg-type]
            "llm_first_text_p50_ms": median([r["llm_first_text_ms"] for r in config_rows]),  # type: ignore[misc]
            "transcript_p50_ms": median([r["transcript_ms"] for r in config_rows]),  # type: ignore[misc]
            "turn_end_p50_ms": median([r["turn_end_ms"] for r in config_rows]),  # type: ignore[misc]
            "rows": config_rows,
        }
        result[config] = entry
        table.append(
            [
                config,
                f"{entry['answered']}/{entry['turns']}",
                entry["transcript_p50_ms"],
                entry["llm_first_text_p50_ms"],
                entry["first_audio_p50_ms"],
                entry["first_audio_p95_ms"],
                entry["ratio_to_2_2_p50"],
                entry["ratio_to_2_2_p95"],
            ]
        )
    return table, result


async def main(options: argparse.Namespace) -> None:
    configs = [c.strip() for c in options.configs.split(",")]
    if BASELINE not in configs:
        configs.insert(0, BASELINE)
    engines = await shared_engines()
    data: dict[str, Any] = {"configs": configs, "baseline": BASELINE}
    if options.part in ("llm", "both"):
        load_before = machine()["load_1m"]
        table, data["llm"] = await asyncio.to_thread(
            llm_part, engines, configs, options.rounds, options.max_tokens
        )
        data["llm"]["load_1m"] = [load_before, machine()["load_1m"]]
        data["llm"]["rounds"] = options.rounds
        print_table(
            f"LLM alone and beside Piper, {options.rounds} rounds, medians "
            f"(load {load_before} -> {machine()['load_1m']})",
            [
                "setting decode/batch",
                "prompt tok",
                "prompt ms p50",
                "p95",
                "/ 2/2",
                "tok/s p50",
                "/ 2/2",
                "Piper ms per audio s",
            ],
            table,
        )
    if options.part in ("turn", "both"):
        load_before = machine()["load_1m"]
        table, data["turn"] = await turn_part(engines, configs, options.turns)
        data["turn"]["load_1m"] = [load_before, machine()["load_1m"]]
        data["turn"]["turns"] = options.turns
        print_table(
            f"Chained turns on the file transport, {options.turns} turns interleaved, "
            f"ms after the true end of speech (load {load_before} -> {machine()['load_1m']})",
            [
                "decode/batch",
                "answered",
                "transcript p50",
                "first text p50",
                "first audio p50",
                "p95",
                "p50 / 2/2",
                "p95 / 2/2",
            ],
            table,
        )
    out = write_result(f"llm_threads_{options.part}{options.tag}", data)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["llm", "turn", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=len(SENTENCES) * 3)
    parser.add_argument("--configs", default="2/2,1/1,1/2", help="decode/batch thread counts")
    parser.add_argument("--tag", default="", help="suffix of the JSON result's name")
    asyncio.run(main(parser.parse_args()))
