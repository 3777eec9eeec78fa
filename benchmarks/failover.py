"""Benchmark the brain switch: from a realtime fault to the chained brain's first audio.

Each sample is one call (the file transport, paced) against voxpipe's
realtime server with fault injection; the server's brain is scripted (it
answers at once) and transcribes the caller with the local Whisper, the
chained brain is the local engines (Whisper, Qwen2.5-0.5B, Piper).

Fault kinds:
- ``close``: the socket closes after the reply's first audio and the
  reconnect is refused (the provider is down): the budget of one reconnect
  is spent and the call switches. Fault = the socket's close (as the call
  saw it: its ``Reconnecting`` event).
- ``stall``: the server goes silent after the reply's first audio (30 s):
  the 2 s stall limit switches. Fault = the last reply audio.

Rows: ``switch`` is fault -> the switch (the policy's decision and the
hand-over, independent of the chained models' speed); ``failover`` is fault
-> the chained brain's first audio; ``reconnect`` the baseline.

Baseline in the same run, same fault, no fallback: the realtime brain
recovers by itself (reconnecting after the close, or after its 8 s stall
timeout) and the application asks again once reconnected; time from the
fault to the realtime brain's first audio of that answer. Samples alternate
between the two (a loaded machine drifts). Figures are p50/p95 over the
samples, with the ratio of medians, and the load average.

Prints a table and writes benchmarks/results/failover.json.
Run: ``.venv/bin/python benchmarks/failover.py [--faults 10] [--kinds close stall]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from _common import median, percentile, print_table, speak, write_result
from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.call.events import CallEvent, Reconnected, Reconnecting
from voxpipe.call.failover import FailoverConfig
from voxpipe.call.response_guard import ResponseReason
from voxpipe.call.state import CallState
from voxpipe.engines import shared_engines
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


class HearingScriptedBrain(ScriptedBrain):
    """Answers at once from its script, and hears the caller with the local Whisper."""

    def __init__(self, stt: Any) -> None:
        super().__init__([REPLY], pace=4.0)
        self._stt = stt

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        text: str = await asyncio.to_thread(self._stt.transcribe, pcm16, sample_rate)
        return text.strip() or None


class Audio(InlineObserver):
    """When each brain's reply audio came out (read in the push itself)."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (TTSAudioRawFrame,)

    def __init__(self, transport: FileTransport, chained_voice: Any) -> None:
        super().__init__()
        self.now_ms = transport.clock.now_ms
        self.chained_voice = chained_voice
        self.realtime_ms: list[float] = []
        self.chained_ms: list[float] = []
        self.changed = asyncio.Event()

    def observe(self, data: FramePushed, first: bool) -> None:
        if not first or data.direction is not FrameDirection.DOWNSTREAM:
            return
        if isinstance(data.source, RealtimeService):
            self.realtime_ms.append(self.now_ms())
        elif self.chained_voice is not None and data.source is self.chained_voice:
            self.chained_ms.append(self.now_ms())
        self.changed.set()


async def _until(predicate: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - reads the call's observers
            await asyncio.sleep(0.02)


def _arm(server: Any, kind: str) -> None:
    server.arm(CloseMidResponse(code=1011) if kind == "close" else Stall(seconds=30))


async def one_sample(
    server: Any, recording: Path, kind: str, fallback: bool
) -> tuple[float, float | None]:
    """Fault -> first audio of the answer (chained with a fallback, realtime without),
    and fault -> the switch (with a fallback)."""
    transport = FileTransport(recording, paced=True)
    if fallback:
        config = FailoverConfig(first_audio_deadline_ms=30_000, stall_ms=2_000)
        graph = build_failover_pipeline(
            transport, failover=config, server_url=server.realtime_url, api_key=KEY
        )
        voice = graph.services["tts"]
    else:
        graph = build_realtime_pipeline(
            transport, server_url=server.realtime_url, api_key=KEY, transcribe=True
        )
        voice = None
    service = graph.brain
    assert isinstance(service, RealtimeService)
    events: list[tuple[float, CallEvent]] = []
    switched: float | None = None

    async def _on_event(_s: Any, event: CallEvent) -> None:
        events.append((transport.clock.now_ms(), event))
        if not fallback and isinstance(event, Reconnected):
            await service.request_response(ResponseReason.APPLICATION)  # ask again

    service.add_event_handler("on_call_event", _on_event)
    audio = Audio(transport, voice)
    _arm(server, kind)
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
            else:
                fault_ms = audio.realtime_ms[0]
            if fallback:
                await _until(lambda: bool(audio.chained_ms), SAMPLE_TIMEOUT_S)
                first = audio.chained_ms[0]
                brain = graph.services["failover"]
                assert isinstance(brain, FailoverBrain) and brain.switched
                switched = brain.policy.switches[0].at_ms - fault_ms
            else:
                await _until(lambda: any(t > fault_ms + 50 for t in audio.realtime_ms), 60)
                first = next(t for t in audio.realtime_ms if t > fault_ms + 50)
        finally:
            await session.cancel()
    return first - fault_ms, switched


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
                for i in range(args.faults):
                    for fallback in (True, False) if i % 2 == 0 else (False, True):
                        name = "failover" if fallback else "reconnect"
                        try:
                            ms, switched = await one_sample(server, recording, kind, fallback)
                        except TimeoutError:
                            print(f"{kind} {name} #{i}: timed out", file=sys.stderr)
                            continue
                        samples[name].append(round(ms, 1))
                        if switched is not None:
                            samples["switch"].append(round(switched, 1))
                        loads.append(os.getloadavg()[0])
                        print(f"{kind} {name} #{i}: {ms:.0f} ms", file=sys.stderr)
                results[kind] = _summary(samples)
        return {
            "faults_per_kind": args.faults,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", type=int, default=10, help="faults per kind and per path")
    parser.add_argument(
        "--kinds", nargs="+", choices=["close", "stall"], default=["close", "stall"]
    )
    args = parser.parse_args()
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
    print(f"wrote {write_result('failover', data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
