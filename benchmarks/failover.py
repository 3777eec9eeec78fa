"""Benchmark the brain switch: from a realtime fault to the chained brain's first audio.

Each sample is one call (the file transport, paced) against voxpipe's
realtime server with fault injection; the server's brain is scripted (it
answers at once) and transcribes the caller with the local Whisper, the
chained brain is the local engines (Whisper, Qwen2.5-0.5B, Piper).

Fault kinds:
- ``close``: the socket closes mid-reply and the
  reconnect is refused (the provider is down): the budget of one reconnect
  is spent and the call switches. Fault = the socket's close (as the call
  saw it: its ``Reconnecting`` event).
- ``stall``: the server goes silent mid-reply (30 s): the 2 s stall limit
  switches. Fault = the last reply audio before the silence.

Both faults hit the reply once ``--cut-ms`` of its audio went out (1200 ms:
"The capital of Japan is"), so the caller has heard part of it.

Rows: ``switch`` is fault -> the switch (the policy's decision and the
hand-over, independent of the chained models' speed); ``failover`` is fault
-> the chained brain's first audio; ``reconnect`` the baseline.

Words across the switch (fallback samples): what the caller *heard* of the
cut reply is read from the output (the audio the file transport played
before the chained brain spoke, against the scripted voice's word timing: a
word counts once half of it played); what the chained brain was *seeded*
with is the cut reply's words in the hand-over seed (the call's record,
which keeps the heard share of the reply's words); what it *said* is its
answer. ``lost``: heard words missing from the seed; ``unheard``: seeded
words the caller never heard; ``repeated``: heard words the chained answer
says again (a re-ask answers afresh, so some repetition is expected). Words
are normalised (:func:`voxpipe.evaluation.normalise`) and counted as
multisets; medians over the samples.

Where the time after the switch goes (fallback samples): the chained LLM's
response start, first text and the chained voice's first audio, each in ms
after the switch, with llama.cpp's prompt and cached tokens and first-token
time, and whether the answer was got ahead on while the hang was suspected
(``speculation_used``). Before each call the shared LLM's prompt cache is
left holding another conversation (``OTHER_CONVERSATION``), as a process
whose chained brain served other calls would have it; ``--no-head-start``
runs the chained brain without its warm-up and head start (the before, in
``benchmarks/results/failover_no_head_start.json``).

Baseline in the same run, same fault, no fallback: the realtime brain
recovers by itself (reconnecting after the close, or after its 8 s stall
timeout) and the application asks again once reconnected; time from the
fault to the realtime brain's first audio of that answer. Samples alternate
between the two (a loaded machine drifts). Figures are p50/p95 over the
samples, with the ratio of medians, and the load average.

Prints a table and writes benchmarks/results/failover.json.
Run: ``.venv/bin/python benchmarks/failover.py [--faults 10] [--kinds close stall]
[--cut-ms 1200] [--no-head-start]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from _common import median, percentile, print_table, speak, write_result
from pipecat.frames.frames import (
    Frame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.call.events import BrainSwitched, CallEvent, Reconnected, Reconnecting
from voxpipe.call.failover import CUT_MARK, FailoverConfig
from voxpipe.call.response_guard import ResponseReason
from voxpipe.call.rollover import Role
from voxpipe.call.state import CallState
from voxpipe.engines import shared_engines
from voxpipe.evaluation import normalise
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
from voxpipe.pipelines.failover import build_failover_pipeline
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.failover import FailoverBrain
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.realtime import RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    CloseMidResponse,
    RefuseNextConnection,
    ScriptedBrain,
    ServerConfig,
    Stall,
    running_realtime_server,
)

KEY = "bench-key"
RATE = 16_000
QUESTION = "What is the capital city of Japan?"
REPLY = "The capital of Japan is Tokyo, a very large city on the island of Honshu."
SAMPLE_TIMEOUT_S = 120.0
HEAD_START = True  # --no-head-start: the chained brain neither warmed nor got ahead
MS_PER_CHAR, WORD_GAP_MS = 55, 40  # the server's SyntheticVoice: a hum per word, then a gap


class HearingScriptedBrain(ScriptedBrain):
    """Answers at once from its script, and hears the caller with the local Whisper."""

    def __init__(self, stt: Any) -> None:
        super().__init__([REPLY], pace=4.0)
        self._stt = stt

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        text: str = await asyncio.to_thread(self._stt.transcribe, pcm16, sample_rate)
        return text.strip() or None


class Audio(InlineObserver):
    """When each brain's reply audio came out, and the chained answer's stages (in the push)."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (
        TTSAudioRawFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TTSTextFrame,
    )

    def __init__(self, transport: FileTransport, chained: dict[str, Any] | None) -> None:
        super().__init__()
        self.now_ms = transport.clock.now_ms
        self.chained_voice = chained["tts"] if chained else None
        self.chained_llm = chained["llm"] if chained else None
        self.realtime_ms: list[float] = []
        self.chained_ms: list[float] = []
        self.stages: dict[str, float] = {}  # the chained answer's first of each stage
        self.changed = asyncio.Event()

    def observe(self, data: FramePushed, first: bool) -> None:
        if not first or data.direction is not FrameDirection.DOWNSTREAM:
            return
        frame, source = data.frame, data.source
        if isinstance(frame, TTSAudioRawFrame):
            if isinstance(source, RealtimeService):
                self.realtime_ms.append(self.now_ms())
            elif self.chained_voice is not None and source is self.chained_voice:
                self.chained_ms.append(self.now_ms())
                self.stages.setdefault("audio", self.now_ms())
        elif self.chained_llm is not None and source is self.chained_llm:
            stage = "llm_start" if isinstance(frame, LLMFullResponseStartFrame) else "llm_text"
            if isinstance(frame, LLMFullResponseStartFrame | LLMTextFrame):
                self.stages.setdefault(stage, self.now_ms())
        elif source is self.chained_voice and isinstance(frame, TTSTextFrame):
            self.stages.setdefault("tts_text", self.now_ms())
        self.changed.set()


async def _until(predicate: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - reads the call's observers
            await asyncio.sleep(0.02)


def _arm(server: Any, kind: str, cut_ms: int) -> None:
    fault = (
        CloseMidResponse(code=1011, after_ms=cut_ms)
        if kind == "close"
        else Stall(seconds=30, after_ms=cut_ms)
    )
    server.arm(fault)


def heard_words(played_ms: float) -> list[str]:
    """The reply's words the caller heard in ``played_ms`` of its audio (half a word counts)."""
    heard, start = [], 0.0
    for word in REPLY.split():
        length = MS_PER_CHAR * len(word)
        if start + length / 2 <= played_ms:
            heard.append(word)
        start += length + WORD_GAP_MS
    return normalise(" ".join(heard)).split()


def _minus(words: list[str], other: list[str]) -> list[str]:
    left, out = list(other), []
    for word in words:
        if word in left:
            left.remove(word)
        else:
            out.append(word)
    return out


@dataclass
class Words:
    """One switch: the cut reply's words heard, seeded and said again."""

    heard: list[str]
    seeded: list[str]
    said: list[str]
    # The chained answer's stages, ms after the switch (llm_start, llm_text, tts_text,
    # audio), and llama.cpp's prompt work for it (prompt and cached tokens, first token ms).
    stages: dict[str, float] = dataclasses.field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        repeated = len(self.heard) - len(_minus(self.heard, self.said))
        return {
            "heard": len(self.heard),
            "seeded": len(self.seeded),
            "lost": len(_minus(self.heard, self.seeded)),
            "unheard": len(_minus(self.seeded, self.heard)),
            "repeated": repeated,
        }


# What the shared LLM's prompt cache holds before each call: another conversation under
# the same instructions, as in a process whose chained brain served other calls since.
# Without it every sample found the last one's re-ask prompt cached whole (the same
# question each time), which no real switch does.
OTHER_CONVERSATION = [
    {"role": "system", "content": DEFAULT_INSTRUCTIONS},
    {"role": "user", "content": "How long should I boil an egg for a soft yolk?"},
]


async def one_sample(
    server: Any, recording: Path, kind: str, fallback: bool, cut_ms: int, llm: Any
) -> tuple[float, float | None, Words | None]:
    """Fault -> first audio of the answer (chained with a fallback, realtime without),
    fault -> the switch and the words across it (with a fallback)."""
    await asyncio.to_thread(llm.prefill, OTHER_CONVERSATION, None)
    transport = FileTransport(recording, paced=True)
    if fallback:
        config = FailoverConfig(
            first_audio_deadline_ms=30_000, stall_ms=2_000, head_start=HEAD_START
        )
        graph = build_failover_pipeline(
            transport, failover=config, server_url=server.realtime_url, api_key=KEY
        )
        chained: dict[str, Any] | None = graph.services
    else:
        graph = build_realtime_pipeline(
            transport, server_url=server.realtime_url, api_key=KEY, transcribe=True
        )
        chained = None
    service = graph.brain
    assert isinstance(service, RealtimeService)
    events: list[tuple[float, CallEvent]] = []
    switched: float | None = None

    async def _on_event(_s: Any, event: CallEvent) -> None:
        events.append((transport.clock.now_ms(), event))
        if not fallback and isinstance(event, Reconnected):
            await service.request_response(ResponseReason.APPLICATION)  # ask again

    service.add_event_handler("on_call_event", _on_event)
    seeded: list[str] = []
    words: Words | None = None

    async def _on_switched(_b: Any, event: BrainSwitched) -> None:
        seed = service.call.handover_seed
        turns = seed.verbatim if seed is not None else ()
        cut = [t.text for t in turns if t.role is Role.ASSISTANT and t.text.endswith(CUT_MARK)]
        seeded.extend(normalise(cut[-1].removesuffix(CUT_MARK)).split() if cut else [])

    if fallback:
        graph.services["failover"].add_event_handler("on_brain_switched", _on_switched)
    audio = Audio(transport, chained)
    _arm(server, kind, cut_ms)
    async with CallSession(graph, observers=[audio], end_timeout_secs=3) as session:
        try:
            if kind == "close" and fallback:
                # Armed once the session is up: the reconnect after the close is refused.
                await _until(lambda: service.machine.state is CallState.LISTENING, 30)
                server.arm(RefuseNextConnection())  # the provider stays down
            await _until(lambda: bool(audio.realtime_ms), SAMPLE_TIMEOUT_S)
            if kind == "close":
                await _until(lambda: any(_closed(e) for _, e in events), 30)
                fault_ms = next(t for t, e in events if _closed(e))
            if fallback:
                await _until(lambda: bool(audio.chained_ms), SAMPLE_TIMEOUT_S)
                first = audio.chained_ms[0]
                brain = graph.services["failover"]
                assert isinstance(brain, FailoverBrain) and brain.switched
                switch_ms = brain.policy.switches[0].at_ms
                if kind == "stall":  # the last reply audio before the server went silent
                    fault_ms = max(t for t in audio.realtime_ms if t <= switch_ms)
                switched = switch_ms - fault_ms
                # What the caller heard: the realtime reply's audio played before the chained.
                played = sum(w.duration_ms for w in transport.written if w.at_ms < first)
                assistant = lambda: [  # noqa: E731
                    str(m.get("content") or "")
                    for m in graph.context.get_messages()
                    if m.get("role") == "assistant"
                ]
                before = len(assistant())
                await _until(lambda: len(assistant()) > before, SAMPLE_TIMEOUT_S)
                said = normalise(assistant()[-1]).split()
                stages = {k: round(v - switch_ms, 1) for k, v in audio.stages.items()}
                llm = graph.services["llm"]
                engine = getattr(llm, "_engine", None)
                gens = list(getattr(engine, "generations", []))
                if gens:  # the re-ask's generation: the first after the switch
                    g = gens[-1]
                    stages |= {
                        "prompt_tokens": g.prompt_tokens,
                        "cached_tokens": g.cached_tokens,
                        "first_token_ms": round(g.first_token_ms, 1),
                    }
                spec = getattr(llm, "speculations", None)
                if spec is not None:  # a re-ask got ahead on while the hang was suspected
                    stages["speculation_used"] = spec.used
                words = Words(heard_words(played), list(seeded), said, stages)
            elif kind == "close":
                await _until(lambda: any(t > fault_ms + 50 for t in audio.realtime_ms), 60)
                first = next(t for t in audio.realtime_ms if t > fault_ms + 50)
            else:  # the stall: the first reply audio after a silence, and the audio before it
                await _until(lambda: _gap(audio.realtime_ms) is not None, 60)
                fault_ms, first = _gap(audio.realtime_ms)  # type: ignore[misc]
        finally:
            await session.cancel()
    return first - fault_ms, switched, words


def _gap(times: list[float], silent_ms: float = 1_500) -> tuple[float, float] | None:
    """The first silence in a brain's reply audio: (the last push before it, the first after)."""
    for before, after in itertools.pairwise(times):
        if after - before > silent_ms:
            return before, after
    return None


def _closed(event: CallEvent) -> bool:
    return isinstance(event, Reconnecting) and "1011" in event.reason


async def run(args: argparse.Namespace) -> dict[str, Any]:
    engines = await shared_engines(tts="piper")
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "caller.wav"
        pcm = np.frombuffer(speak(engines.tts, QUESTION, RATE), dtype="<i2")
        silence = np.zeros(RATE // 2, dtype="<i2")
        sf.write(str(recording), np.concatenate([silence, pcm, silence]), RATE, subtype="PCM_16")
        config = ServerConfig(api_key=KEY, fault_injection=True)
        brain = HearingScriptedBrain(engines.stt)
        results: dict[str, Any] = {}
        loads: list[float] = []
        async with running_realtime_server(config=config, brain=brain) as server:
            for kind in args.kinds:
                samples: dict[str, list[float]] = {"failover": [], "reconnect": [], "switch": []}
                words: list[Words] = []
                timed_out = {"failover": 0, "reconnect": 0}  # no answer within the deadline
                for i in range(args.faults):
                    for fallback in (True, False) if i % 2 == 0 else (False, True):
                        name = "failover" if fallback else "reconnect"
                        try:
                            ms, switched, said = await one_sample(
                                server, recording, kind, fallback, args.cut_ms, engines.llm
                            )
                        except TimeoutError:
                            print(f"{kind} {name} #{i}: timed out", file=sys.stderr)
                            timed_out[name] += 1
                            continue
                        samples[name].append(round(ms, 1))
                        if switched is not None:
                            samples["switch"].append(round(switched, 1))
                        if said is not None:
                            words.append(said)
                            print(
                                f"  words {said.counts()} said={' '.join(said.said)} "
                                f"after switch {said.stages}",
                                file=sys.stderr,
                            )
                        loads.append(os.getloadavg()[0])
                        print(f"{kind} {name} #{i}: {ms:.0f} ms", file=sys.stderr)
                results[kind] = _summary(samples)
                results[kind]["words"] = _words_summary(words)
                results[kind]["timed_out"] = timed_out
        return {
            "head_start": HEAD_START,
            "faults_per_kind": args.faults,
            "cut_ms": args.cut_ms,
            "load_avg_during": [round(min(loads), 1), round(max(loads), 1)] if loads else None,
            "kinds": results,
        }


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in samples.items():
        out[name] = {
            "n": len(values),
            "p50_ms": median(values),
            "p95_ms": percentile(values, 95),
            "samples_ms": values,
        }
    base, ours = out["reconnect"]["p50_ms"], out["failover"]["p50_ms"]
    out["failover_over_reconnect_p50"] = round(ours / base, 2) if base and ours else None
    return out


def _words_summary(words: list[Words]) -> dict[str, Any]:
    counts = [w.counts() for w in words]
    out: dict[str, Any] = {
        f"{key}_p50": median([float(c[key]) for c in counts]) for key in WORD_COUNTS
    }
    out["n"] = len(counts)
    out["samples"] = [
        {**c, "heard_words": w.heard, "seeded_words": w.seeded, "said_words": w.said}
        for c, w in zip(counts, words, strict=True)
    ]
    # Where the time after the switch went (medians, ms after the switch).
    keys = sorted({k for w in words for k in w.stages})
    out["after_switch_p50"] = {
        k: median([float(w.stages[k]) for w in words if k in w.stages]) for k in keys
    }
    out["after_switch_samples"] = [w.stages for w in words]
    return out


WORD_COUNTS = ("heard", "seeded", "lost", "unheard", "repeated")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", type=int, default=10, help="faults per kind and per path")
    parser.add_argument(
        "--kinds", nargs="+", choices=["close", "stall"], default=["close", "stall"]
    )
    parser.add_argument(
        "--cut-ms", type=int, default=1_200, help="reply audio sent before the fault"
    )
    parser.add_argument(
        "--no-head-start",
        action="store_true",
        help="no warm-up at call start, no answer got ahead on while a hang is suspected",
    )
    args = parser.parse_args()
    global HEAD_START
    HEAD_START = not args.no_head_start
    data = asyncio.run(run(args))
    rows = []
    for kind, result in data["kinds"].items():
        for name in ("switch", "failover", "reconnect"):
            r = result[name]
            rows.append([kind, name, r["n"], r["p50_ms"], r["p95_ms"]])
        rows.append(
            [kind, "failover / reconnect (p50)", "", result["failover_over_reconnect_p50"], ""]
        )
    print_table(
        f"Fault -> first audio of the answer (load {data['load_avg_during']})",
        ["fault", "path", "n", "p50 ms", "p95 ms"],
        rows,
    )
    word_rows = [
        [kind, result["words"]["n"], *(result["words"][f"{k}_p50"] for k in WORD_COUNTS)]
        for kind, result in data["kinds"].items()
    ]
    print_table(
        f"Words of the cut reply across the switch, medians (load {data['load_avg_during']})",
        ["fault", "n", *WORD_COUNTS],
        word_rows,
    )
    name = "failover" if HEAD_START else "failover_no_head_start"
    print(f"wrote {write_result(name, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
