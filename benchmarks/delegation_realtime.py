"""Benchmark supervisor delegation on the realtime path, against a plain turn in the same run.

    python benchmarks/delegation_realtime.py [--calls 3]

Each call: a caller (real speech) asks one question of voxpipe's embedded
Realtime server, whose brain is a scripted model (it answers at once, so what
is timed is voxpipe's path: the server's VAD, the tool call, the backend, the
instructed filler and the relay). The backend is a loopback stand-in for
OpenAI's chat model. Three kinds of call, interleaved:

- ``plain``: no ``[delegate]``: the model answers itself (the baseline);
- ``fast backend``: it delegates; the backend answers after 0.1 s, under the
  700 ms threshold: no filler;
- ``slow backend``: the backend answers after 1.5 s: the model says one filler
  (a response with response-level instructions), then the answer.

Timed on the call's clock from the caller's end of speech to the filler's
first audio and to the answer's first audio (the timeline's turn: latency
runs to the answer, the filler marked apart). Figures: medians, the answer's
ratio to the plain turn's and what it adds to it, and the load average.
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

from delegating_brain import DelegatingBrain  # noqa: E402
from fake_openai_supervisor import API_KEY, running_supervisor_chat  # noqa: E402

from voxpipe.delegation import DelegateBackend, DelegationSettings  # noqa: E402
from voxpipe.engines import shared_tts  # noqa: E402
from voxpipe.pipelines.realtime import build_realtime_pipeline  # noqa: E402
from voxpipe.pipelines.session import CallSession  # noqa: E402
from voxpipe.processors.observability.timeline import TimelineObserver  # noqa: E402
from voxpipe.processors.realtime.delegation import realtime_backend  # noqa: E402
from voxpipe.timeline import EventKind, Timeline, Turn  # noqa: E402
from voxpipe.transports.file import FileTransport  # noqa: E402
from voxpipe.transports.realtime_server import (  # noqa: E402
    ServerConfig,
    running_realtime_server,
)

QUESTION = "What is the balance on my account?"
BACKEND = "You are Acme's accounts expert."
KINDS = {"plain": None, "fast backend": 0.1, "slow backend": 1.5}
KEY = "bench-key"
ANSWER_S = 120.0


def caller_line(voice: Any, path: Path) -> Path:
    rate = 16_000
    lead = np.zeros(rate + rate // 2, dtype="<i2").tobytes()
    tail = np.zeros(rate * 12, dtype="<i2").tobytes()
    pcm = lead + speak(voice, QUESTION, rate) + tail
    sf.write(str(path), np.frombuffer(pcm, dtype="<i2"), rate, subtype="PCM_16")
    return path


async def one_call(delay_s: float | None, line: Path) -> tuple[Turn, float | None]:
    """The call's answered turn, and the backend's wait (ms; None for a plain turn)."""
    brain = DelegatingBrain(QUESTION)
    async with (
        running_supervisor_chat(backend_delay_s=delay_s or 0.0) as chat,
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as server,
    ):
        delegate = None
        backend = None
        if delay_s is not None:
            delegate = DelegationSettings(DelegateBackend.OPENAI, instructions=BACKEND)
            backend = realtime_backend(delegate, API_KEY, base_url=chat.url)
        transport = FileTransport(line, paced=True)
        graph = build_realtime_pipeline(
            transport,
            server_url=server.realtime_url,
            api_key=KEY,
            delegate=delegate,
            delegate_backend=backend,
        )
        timeline = Timeline()
        observer = TimelineObserver(timeline, transport.clock.now_ms)
        async with CallSession(graph, observers=[observer], end_timeout_secs=5):
            async with asyncio.timeout(ANSWER_S):
                while not _answered(timeline, brain):  # noqa: ASYNC110 (the timeline is the record)
                    await asyncio.sleep(0.05)
    turn = next(t for t in timeline.turns() if t.first_audio_ms is not None)
    waits = [
        float(e.data["waited_ms"])
        for e in timeline.of(EventKind.DELEGATION)
        if e.data.get("phase") == "answered"
    ]
    return turn, (waits[0] if waits else None)


def _answered(timeline: Timeline, brain: DelegatingBrain) -> bool:
    """The answer (the plain one, or the relay) has been said and its audio has ended."""
    if not any(said == brain.plain_answer for _, said in brain.said):
        return False
    turns = [t for t in timeline.turns() if t.first_audio_ms is not None]
    began = turns[0].first_audio_ms if turns else None
    return began is not None and any(
        e.t_ms > began for e in timeline.of(EventKind.BOT_STOPPED_SPEAKING)
    )


async def main(calls: int) -> None:
    voice = await shared_tts()
    line = caller_line(voice, Path(tempfile.mkdtemp(prefix="voxpipe-delegation-rt-")) / "q.wav")
    loads: list[float] = []
    measured: dict[str, list[Turn]] = {kind: [] for kind in KINDS}
    waits: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(calls):
        for kind, delay in KINDS.items():
            loads.append(machine()["load_1m"])
            turn, waited = await one_call(delay, line)
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
        answer = f["answer_p50_ms"]
        ratio = round(answer / plain, 2) if plain and answer else None
        # The scripted model answers at once, so the plain turn is tens of ms: the ratio
        # is large and the difference says what delegation adds.
        added = round(answer - plain, 1) if plain is not None and answer is not None else None
        row = [kind, f["n"], median(waits[kind]), f["fillers"], f["filler_p50_ms"]]
        rows.append([*row, answer, ratio, added])
    print_table(
        f"Realtime delegation: end of speech -> first audio (ms, p50), "
        f"load {min(loads)}-{max(loads)}",
        ["turn", "n", "backend wait", "fillers", "filler", "answer", "x plain", "+ plain"],
        rows,
    )
    data = {"calls": calls, "load_1m": loads, "figures": figures}
    print(f"wrote {write_result('delegation_realtime', data)}")


def _figures(turns: list[Turn]) -> dict[str, Any]:
    answers = [t.latency_ms for t in turns if t.latency_ms is not None]
    fillers = [t.filler_latency_ms for t in turns if t.filler_latency_ms is not None]
    return {
        "n": len(turns),
        "fillers": len(fillers),
        "filler_ms": [round(f, 1) for f in fillers],
        "answer_ms": [round(a, 1) for a in answers],
        "filler_p50_ms": median(fillers),
        "answer_p50_ms": median(answers),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3)
    asyncio.run(main(parser.parse_args().calls))
