"""Benchmark supervisor delegation on the chained path, against a plain turn in the same run.

    python benchmarks/delegation.py [--calls 3]

Each call: a caller (real speech, local Whisper) asks one question; the voice
model is a loopback stand-in for OpenAI's chat (it answers at once, so what is
timed is voxpipe's and pipecat's path, the local STT and TTS, and the backend);
local TTS speaks. Three kinds of call, interleaved:

- ``plain``: the voice model answers itself (no backend): the baseline;
- ``fast backend``: it delegates through ``LLMWithBackend`` to OpenAI's chat
  model (the stand-in, answering after 0.1 s): below the 700 ms threshold;
- ``local backend``: it delegates to the local LLM (Qwen 0.5B, llama.cpp):
  above it, so the caller hears a filler first.

Timed on the call's clock from the caller's end of speech (VAD stop) to the
first filler audio and to the answer's first audio (the timeline's turn:
latency runs to the answer, the filler marked apart). Figures: medians over
the calls, the answer's ratio to the plain turn's, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import machine, median, print_table, speak, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from cued_caller import CuedCaller  # noqa: E402
from fake_openai_supervisor import API_KEY, running_supervisor_chat  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402

from voxpipe.delegation import BackendAnswered, DelegateBackend, DelegationSettings  # noqa: E402
from voxpipe.engines import shared_tts  # noqa: E402
from voxpipe.pipelines.chained import build_chained_pipeline  # noqa: E402
from voxpipe.pipelines.session import CallSession  # noqa: E402
from voxpipe.processors.delegation import backend_llm, delegating_llm  # noqa: E402
from voxpipe.processors.observability.timeline import TimelineObserver  # noqa: E402
from voxpipe.timeline import EventKind, Timeline, Turn  # noqa: E402

QUESTION = "What is the balance on my account?"
FRONT = "You are Acme's voice assistant. Hand account questions to the backend."
BACKEND = "You are Acme's accounts expert. The caller's balance is forty two dollars."
KINDS = ("plain", "fast backend", "local backend")
ANSWER_S = 300.0


def caller_line(voice: Any, path: Path) -> Path:
    rate = 16_000
    lead = np.zeros(rate, dtype="<i2").tobytes()
    pcm = lead + speak(voice, QUESTION, rate) + np.zeros(rate // 2, dtype="<i2").tobytes()
    sf.write(str(path), np.frombuffer(pcm, dtype="<i2"), rate, subtype="PCM_16")
    return path


async def one_call(kind: str, line: Path) -> tuple[Turn, float | None]:
    """The call's answered turn, and the backend's wait (ms; None for a plain turn)."""
    async with running_supervisor_chat(backend_delay_s=0.1) as chat:
        frontend = OpenAILLMService(
            api_key=API_KEY,
            base_url=chat.url,
            settings=OpenAILLMService.Settings(model="m", system_instruction=FRONT),
        )
        llm: Any = frontend
        connector = None
        if kind == "fast backend":
            settings = DelegationSettings(DelegateBackend.OPENAI, instructions=BACKEND)
            backend = backend_llm(settings, API_KEY, base_url=chat.url)
            llm = delegating_llm(frontend, settings, backend=backend)
            connector = llm.connector
        elif kind == "local backend":
            llm = delegating_llm(frontend, DelegationSettings(instructions=BACKEND))
            connector = llm.connector
        caller = CuedCaller([line])
        timeline = Timeline()
        graph = build_chained_pipeline(caller, llm=llm, openai_api_key="")
        observer = TimelineObserver(timeline, caller.clock.now_ms)
        async with CallSession(graph, observers=[observer], end_timeout_secs=5):
            async with asyncio.timeout(ANSWER_S):
                while not _answered(timeline):  # noqa: ASYNC110 (the timeline is the record)
                    await asyncio.sleep(0.05)
        turn = next(t for t in timeline.turns() if t.first_audio_ms is not None)
        waits = [e.waited_ms for e in getattr(connector, "events", []) if _is_answered(e)]
        return turn, (waits[0] if waits else None)


def _is_answered(event: Any) -> bool:
    return isinstance(event, BackendAnswered)


def _answered(timeline: Timeline) -> bool:
    turns = [t for t in timeline.turns() if t.first_audio_ms is not None]
    if not turns:
        return False
    began = turns[0].first_audio_ms or 0.0
    return any(e.t_ms > began for e in timeline.of(EventKind.BOT_STOPPED_SPEAKING))


async def main(calls: int) -> None:
    voice = await shared_tts()
    line = caller_line(voice, Path(tempfile.mkdtemp(prefix="voxpipe-delegation-")) / "q.wav")
    loads: list[float] = []
    measured: dict[str, list[Turn]] = {kind: [] for kind in KINDS}
    waits: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(calls):
        for kind in KINDS:
            loads.append(machine()["load_1m"])
            turn, waited = await one_call(kind, line)
            measured[kind].append(turn)
            if waited is not None:
                waits[kind].append(round(waited, 1))
    figures = {
        kind: {**_figures(turns), "backend_wait_ms": waits[kind]}
        for kind, turns in measured.items()
    }
    plain = figures["plain"]["answer_p50_ms"]
    rows = []
    for kind, f in figures.items():
        ratio = round(f["answer_p50_ms"] / plain, 2) if plain and f["answer_p50_ms"] else None
        wait = median(waits[kind])
        row = [kind, f["n"], wait, f["fillers"], f["filler_p50_ms"], f["answer_p50_ms"], ratio]
        rows.append(row)
    print_table(
        f"Delegation: end of speech -> first audio (ms, p50), load {min(loads)}-{max(loads)}",
        ["turn", "n", "backend wait", "fillers", "filler", "answer", "answer x plain"],
        rows,
    )
    path = write_result("delegation", {"calls": calls, "load_1m": loads, "figures": figures})
    print(f"wrote {path}")


def _figures(turns: list[Turn]) -> dict[str, Any]:
    answers = [t.latency_ms for t in turns if t.latency_ms is not None]
    fillers = [t.filler_latency_ms for t in turns if t.filler_latency_ms is not None]
    return {
        "n": len(turns),
        "fillers": len(fillers),
        "filler_ms": fillers,
        "answer_ms": answers,
        "filler_p50_ms": median(fillers),
        "answer_p50_ms": median(answers),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3)
    asyncio.run(main(parser.parse_args().calls))
