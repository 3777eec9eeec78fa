"""Benchmark the fault matrix: what a caller lives through for each fault the server can inject.

Each sample is one call (the file transport, paced at real time) against
voxpipe's realtime server with fault injection and a scripted brain that
speaks at real time (pace 1). The caller asks a question, waits 8 s, asks a
second one. One second into the first answer's audio a fault hits:

- ``close_mid_response``: the socket closes (1011).
- ``refused_reconnect``: the socket closes (1011) and the first reconnect is
  refused (401 at the handshake).
- ``send_error``: a ``server_error`` event, the socket stays up.
- ``session_expired``: OpenAI's ``session_expired`` error, then the socket closes (1000).
- ``exhaust_rate_limits``: every rate limit reads 0 for 10 s (past the second question).
- ``stall``: the server sends nothing for 12 s (the call's stall timeout is 8 s).
- ``killed_restarted``: the server's process is SIGKILLed and another takes its
  port 1 s later (a supervisor's restart; the server runs in a child process,
  tests/support/server_process.py, for these two).
- ``never_answers``: the server's process is SIGSTOPped: connections are still
  accepted by the kernel, nothing is ever answered; the call is expected to end
  (``ended_ms``: the fault -> the call's end), with the default retry budget.

Columns (p50 over the samples): ``out`` how many calls left the live states
(reconnecting or recovering) after the fault; per sample: ``recovery_ms`` (the
fault -> the call listening on a session again, when the fault took it out of
the live states), whether the first
answer was heard in full (``answer_1``: kept when at least 95% of the no-fault
run's audio reached the output, else cut), the second answer's latency (the
caller's end of speech -> its first audio; lost if none in 20 s) and the
call's end (its last state; ``failed`` when it gave up). The baseline is the
same call without a fault, in the same run, samples interleaved; the second
answer's latency is also given as a ratio of the baseline's (medians).

Prints a table and writes benchmarks/results/faults.json (with the load average).
Run: ``.venv/bin/python benchmarks/faults.py [--samples 3] [--kinds ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from _common import median, print_table, speak, write_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection
from server_process import ServerProcess, free_port

from voxpipe.call.events import CallEvent
from voxpipe.call.state import CallState, StateChanged
from voxpipe.engines import make_tts
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.realtime import RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    CloseMidResponse,
    ExhaustRateLimits,
    RefuseNextConnection,
    ScriptedBrain,
    SendError,
    ServerConfig,
    Stall,
    running_realtime_server,
)

KEY = "bench-key"
RATE = 16_000
QUESTIONS = ("What time do you open on Saturday?", "Do you take cards?")
REPLIES = (
    "On Saturday we open at nine in the morning and close at one in the afternoon.",
    "Yes, we take cards.",
)
GAP_MS = 8_000
FAULT_AFTER_MS = 1_000  # into the first answer's audio
ANSWER_TIMEOUT_MS = 20_000
KINDS = (
    "close_mid_response",
    "refused_reconnect",
    "send_error",
    "session_expired",
    "exhaust_rate_limits",
    "stall",
    "killed_restarted",
    "never_answers",
)
PROCESS_KINDS = ("killed_restarted", "never_answers")
RESTART_AFTER_S = 1.0
NEVER_ANSWERS_WAIT_S = 180.0
OUT_OF_SERVICE = (CallState.RECONNECTING, CallState.RECOVERING)


class ReplyAudio(InlineObserver):
    """When each 20 ms of the realtime brain's audio came out, and how long it was."""

    frame_types: ClassVar[tuple[type[Frame], ...]] = (TTSAudioRawFrame,)

    def __init__(self, transport: FileTransport) -> None:
        super().__init__()
        self.now_ms = transport.clock.now_ms
        self.chunks: list[tuple[float, float]] = []  # (at ms, duration ms)

    def observe(self, data: FramePushed, first: bool) -> None:
        frame = data.frame
        ours = isinstance(data.source, RealtimeService) and isinstance(frame, TTSAudioRawFrame)
        if first and ours and data.direction is FrameDirection.DOWNSTREAM:
            ms = len(frame.audio) / 2 / frame.sample_rate * 1000
            self.chunks.append((self.now_ms(), ms))

    def audio_ms(self, start: float, end: float) -> float:
        return sum(ms for at, ms in self.chunks if start <= at < end)

    def first_after(self, t: float) -> float | None:
        return next((at for at, _ in self.chunks if at >= t), None)


@dataclass
class Sample:
    kind: str
    recovery_ms: float | None = None
    answer_1_ms: float = 0.0
    answer_2_latency_ms: float | None = None
    end_state: str = ""
    ended_ms: float | None = None  # the fault -> the call's end, when it ended by itself
    states: list[str] = field(default_factory=list)


async def _until(predicate: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - reads the call's observers
            await asyncio.sleep(0.02)


def _arm_before(server: Any, kind: str) -> None:
    if kind in ("close_mid_response", "refused_reconnect"):
        server.arm(CloseMidResponse(code=1011, after_ms=FAULT_AFTER_MS))
    elif kind == "stall":
        server.arm(Stall(seconds=12, after_ms=FAULT_AFTER_MS))


def _arm_now(server: Any, kind: str) -> None:
    if kind == "send_error":
        server.arm(SendError())
    elif kind == "session_expired":
        server.arm(
            SendError(
                error_type="invalid_request_error",
                code="session_expired",
                message="Your session hit the maximum duration of 60 minutes.",
                close_code=1000,
            )
        )
    elif kind == "exhaust_rate_limits":
        server.arm(ExhaustRateLimits(reset_seconds=10))


async def one_call(server: Any, recording: Path, spans: list[tuple[int, int]], kind: str) -> Sample:
    if kind not in PROCESS_KINDS:
        return await _one_call(server, server.realtime_url, recording, spans, kind)
    child = await ServerProcess.spawn(free_port(), KEY, list(REPLIES))
    try:
        await child.listen()
        url = f"ws://127.0.0.1:{child.port}/v1/realtime"
        return await _one_call(child, url, recording, spans, kind)
    finally:
        await child.close()


async def _process_fault(
    child: ServerProcess, kind: str, replacement: ServerProcess | None
) -> None:
    """Kill and restart (the replacement, spawned ahead, takes the port), or freeze."""
    if kind == "never_answers":
        child.freeze()
        return
    assert replacement is not None
    child.kill()
    await asyncio.sleep(RESTART_AFTER_S)
    await replacement.listen()


async def _one_call(
    server: Any, url: str, recording: Path, spans: list[tuple[int, int]], kind: str
) -> Sample:
    transport = FileTransport(recording, paced=True)
    graph = build_realtime_pipeline(transport, server_url=url, api_key=KEY)
    service = graph.brain
    assert isinstance(service, RealtimeService)
    states: list[tuple[float, StateChanged]] = []

    async def _on_event(_s: Any, event: CallEvent) -> None:
        if isinstance(event, StateChanged):
            states.append((transport.clock.now_ms(), event))

    service.add_event_handler("on_call_event", _on_event)
    audio = ReplyAudio(transport)
    _arm_before(server, kind)
    sample = Sample(kind)
    replacement: ServerProcess | None = None
    if kind == "killed_restarted":  # imported ahead: the restart's delay is RESTART_AFTER_S
        replacement = await ServerProcess.spawn(server.port, KEY, list(REPLIES))
    async with CallSession(graph, observers=[audio], end_timeout_secs=3) as session:
        try:
            await _until(lambda: bool(audio.chunks), 60)
            # The recording's positions on the call's clock (the input has started by now).
            q2_start, q2_end = (transport.input_started_ms + ms for ms in spans[1])
            fault_ms = audio.chunks[0][0] + FAULT_AFTER_MS
            await _until(lambda: transport.clock.now_ms() >= fault_ms, 10)
            if kind == "refused_reconnect":
                server.arm(RefuseNextConnection())  # before the close's reconnect
            if kind in PROCESS_KINDS:
                faulted = time.monotonic()
                await _process_fault(server, kind, replacement)
            else:
                _arm_now(server, kind)
            if kind == "never_answers":
                # Nothing can be answered: the call must end by itself.
                with contextlib.suppress(TimeoutError):
                    await _until(lambda: session.finished, NEVER_ANSWERS_WAIT_S)
                if session.finished:
                    sample.ended_ms = round((time.monotonic() - faulted) * 1000, 1)
            else:
                with_answer = lambda: audio.first_after(q2_end) is not None  # noqa: E731
                deadline_s = (q2_end + ANSWER_TIMEOUT_MS - transport.clock.now_ms()) / 1000
                try:
                    await _until(with_answer, max(deadline_s, 1.0))
                    await asyncio.sleep(2.0)  # the answer plays out
                except TimeoutError:
                    pass
        finally:
            await session.cancel()
            if replacement is not None:
                await replacement.close()
    sample.answer_1_ms = audio.audio_ms(0, q2_start)
    first_2 = audio.first_after(q2_end)
    sample.answer_2_latency_ms = None if first_2 is None else first_2 - q2_end
    sample.recovery_ms = _recovery(states, fault_ms)
    sample.end_state = service.machine.state.value
    sample.states = [e.current.value for _, e in states]
    return sample


def _recovery(states: list[tuple[float, StateChanged]], fault_ms: float) -> float | None:
    """The fault -> back in LISTENING, if the call went out of service after it."""
    out = next((t for t, e in states if t >= fault_ms - 50 and e.current in OUT_OF_SERVICE), None)
    if out is None:
        return None
    back = next(
        (t for t, e in states if t > out and e.current is CallState.LISTENING),
        None,
    )
    return None if back is None else round(back - fault_ms, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    voice = make_tts()
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "caller.wav"
        pieces, spans, at = [], [], 0
        for part in (500, QUESTIONS[0], GAP_MS, QUESTIONS[1], ANSWER_TIMEOUT_MS):
            if isinstance(part, int):
                pcm = np.zeros(RATE * part // 1000, dtype="<i2")
            else:
                pcm = np.frombuffer(speak(voice, part, RATE), dtype="<i2")
                spans.append((at, at + len(pcm) * 1000 // RATE))
            pieces.append(pcm)
            at += len(pcm) * 1000 // RATE
        sf.write(str(recording), np.concatenate(pieces), RATE, subtype="PCM_16")
        config = ServerConfig(api_key=KEY, fault_injection=True)
        brain = ScriptedBrain(list(REPLIES), pace=1.0)
        samples: dict[str, list[Sample]] = {k: [] for k in ("none", *args.kinds)}
        loads: list[float] = []
        async with running_realtime_server(config=config, brain=brain) as server:
            for i in range(args.samples):
                for kind in ("none", *args.kinds):
                    try:
                        sample = await asyncio.wait_for(
                            one_call(server, recording, spans, kind), NEVER_ANSWERS_WAIT_S + 120
                        )
                    except TimeoutError:
                        print(f"{kind} #{i}: timed out", file=sys.stderr)
                        continue
                    server.faults.disarm(RefuseNextConnection)  # none left over
                    samples[kind].append(sample)
                    loads.append(os.getloadavg()[0])
                    print(f"{kind} #{i}: {sample}", file=sys.stderr)
        return {
            "samples_per_kind": args.samples,
            "load_avg_during": [round(min(loads), 1), round(max(loads), 1)] if loads else None,
            "kinds": _summary(samples),
        }


def _summary(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    base = samples["none"]
    full_ms = median([s.answer_1_ms for s in base]) or 0.0
    base_latency = median([s.answer_2_latency_ms for s in base if s.answer_2_latency_ms])
    out: dict[str, Any] = {}
    for kind, rows in samples.items():
        kept = sum(s.answer_1_ms >= 0.95 * full_ms for s in rows)
        latencies = [s.answer_2_latency_ms for s in rows if s.answer_2_latency_ms is not None]
        latency = median(latencies)  # type: ignore[arg-type]
        out[kind] = {
            "n": len(rows),
            "recovery_ms_p50": median([s.recovery_ms for s in rows if s.recovery_ms is not None]),
            "recovered": sum(s.recovery_ms is not None for s in rows),
            "answer_1_kept": kept,
            "answer_1_heard_ms_p50": median([s.answer_1_ms for s in rows]),
            "answer_2_answered": len(latencies),
            "answer_2_latency_ms_p50": latency,
            "answer_2_latency_over_baseline": (
                round(latency / base_latency, 2) if latency and base_latency else None
            ),
            "end_states": sorted({s.end_state for s in rows}),
            "ended_ms_p50": median([s.ended_ms for s in rows if s.ended_ms is not None]),
            "ended_by_itself": sum(s.ended_ms is not None for s in rows),
            "samples": [s.__dict__ for s in rows],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=3, help="calls per fault kind")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    data = asyncio.run(run(args))
    rows = []
    for kind, r in data["kinds"].items():
        rows.append(
            [
                kind,
                r["n"],
                f"{r['recovered']}/{r['n']}",
                r["recovery_ms_p50"],
                f"{r['answer_1_kept']}/{r['n']}",
                r["answer_1_heard_ms_p50"],
                f"{r['answer_2_answered']}/{r['n']}",
                r["answer_2_latency_ms_p50"],
                r["answer_2_latency_over_baseline"],
                ", ".join(r["end_states"]),
                r["ended_ms_p50"],
            ]
        )
    print_table(
        f"Faults one second into an answer (load {data['load_avg_during']})",
        [
            "fault",
            "n",
            "out",
            "recovery ms",
            "ans 1 kept",
            "ans 1 heard ms",
            "ans 2",
            "ans 2 latency ms",
            "x base",
            "end",
            "ended ms",
        ],
        rows,
    )
    name = "faults" if set(args.kinds) == set(KINDS) else "faults_" + "_".join(args.kinds)
    print(f"wrote {write_result(name, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
