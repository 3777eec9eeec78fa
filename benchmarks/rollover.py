"""Benchmark session rollover: a 60-minute call, and a real short run against the server.

(a) Policy level (benchmarks/_simulation.py): a busy 60-minute call with the
    provider's session cap shortened to 15 minutes; the real RolloverPolicy and
    CallMemory roll over and prune. Baseline in the same run: one session, no
    rollover, no pruning (it hits the cap and loses its context).
(b) Real run: the realtime graph (file transport, paced) against voxpipe's
    server on loopback, the cap scaled down to 5 s so a ~1-minute call rolls
    over many times; every user turn must be committed (user turns lost = 0).
    The bot-audio gap a rollover causes is measured as the switch time and as
    the answer latency (end of the caller's line -> first bot audio) of turns
    that followed a rollover, against the same call with no rollover.

Prints tables and writes benchmarks/results/rollover.json.
Run: ``.venv/bin/python benchmarks/rollover.py [--lines 12]``.
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
from _common import QUESTIONS, median, print_table, speak, write_result
from _simulation import CallProfile, simulate_baseline, simulate_call

from voxpipe.call import RolloverConfig
from voxpipe.call.rollover import MINUTE_MS
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import RealtimeService, RolledOver
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

KEY = "bench-key"
RATE = 16_000
GAP_MS = 2600


def policy_level() -> dict[str, Any]:
    config = RolloverConfig(session_cap_ms=15 * MINUTE_MS, margin_ms=2 * MINUTE_MS)
    profile = CallProfile(duration_ms=60 * MINUTE_MS)
    ours, base = simulate_call(config, profile), simulate_baseline(config, profile)
    return {
        "session_cap_ms": config.session_cap_ms,
        "voxpipe": ours.as_dict(),
        "baseline_no_rollover": base.as_dict(),
        "input_tokens_ratio": round(ours.total_input_tokens / base.total_input_tokens, 3),
    }


def make_recording(voice: Any, lines: int, path: Path) -> list[tuple[int, int]]:
    pieces, spans, at = [np.zeros(RATE * 300 // 1000, dtype="<i2")], [], 300
    for i in range(lines):
        audio = np.frombuffer(speak(voice, QUESTIONS[i % len(QUESTIONS)], RATE), dtype="<i2")
        spans.append((at, at + len(audio) * 1000 // RATE))
        pieces += [audio, np.zeros(RATE * GAP_MS // 1000, dtype="<i2")]
        at += (len(audio) + RATE * GAP_MS // 1000) * 1000 // RATE
    pieces.append(np.zeros(RATE * 2, dtype="<i2"))
    sf.write(str(path), np.concatenate(pieces), RATE, subtype="PCM_16")
    return spans


async def real_run(path: Path, spans: list[tuple[int, int]], rollover: bool) -> dict[str, Any]:
    cap = (
        RolloverConfig(session_cap_ms=5_000, margin_ms=2_500, force_margin_ms=500)
        if rollover
        else None
    )
    brain = ScriptedBrain(["Sure, I can help with that."], pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        transport = FileTransport(path, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=srv.realtime_url, api_key=KEY, rollover=cap
        )
        service = graph.brain
        assert isinstance(service, RealtimeService)
        finished = asyncio.Event()
        roll_times: list[float] = []
        rolled: list[RolledOver] = []  # service.events keeps only the newest events of a call

        @service.event_handler("on_call_event")
        async def _on_event(_s: Any, event: Any) -> None:
            if isinstance(event, RolledOver):
                roll_times.append(transport.clock.now_ms())
                rolled.append(event)

        @transport.event_handler("on_input_finished")
        async def _done(_t: Any) -> None:
            finished.set()

        async with CallSession(graph.pipeline, end_timeout_secs=5):
            await finished.wait()
            await asyncio.sleep(1.0)
    latencies = answer_latencies(transport, spans)
    after = after_rollover(transport, spans, roll_times, latencies)
    return {
        "user_lines": len(spans),
        "user_turns_committed": service.call.record.user_turns_committed,
        "user_turns_lost": len(spans) - service.call.record.user_turns_committed,
        "rollovers": len(rolled),
        "switch_ms_max": round(max((r.switch_ms for r in rolled), default=0.0), 1),
        "switch_ms_p50": median([r.switch_ms for r in rolled]),
        "replayed_user_ms_total": sum(r.replayed_user_ms for r in rolled),
        "user_audio_dropped_ms": service.call.relay.stats().dropped_ms,
        "answer_latency_p50_ms": median([x for x in latencies if x is not None]),
        "answer_latency_max_ms": max((x for x in latencies if x is not None), default=None),
        "unanswered_lines": sum(1 for x in latencies if x is None),
        "answer_latency_after_rollover_max_ms": max(after, default=None),
    }


def after_rollover(
    transport: FileTransport,
    spans: list[tuple[int, int]],
    roll_times: list[float],
    latencies: list[float | None],
) -> list[float]:
    """Answer latencies of the lines during or right after which a session switched."""
    origin = transport.input_started_ms
    starts = [origin] + [origin + end for _, end in spans[:-1]]
    out = []
    for start, (_, end), latency in zip(starts, spans, latencies, strict=True):
        if latency is not None and any(start < t <= origin + end for t in roll_times):
            out.append(latency)
    return out


def answer_latencies(transport: FileTransport, spans: list[tuple[int, int]]) -> list[float | None]:
    """Per line: the end of the caller's line -> the first bot audio after it."""
    origin = transport.input_started_ms
    ends = [origin + end for _, end in spans]
    nexts = [origin + start for start, _ in spans[1:]] + [float("inf")]
    out: list[float | None] = []
    for end, nxt in zip(ends, nexts, strict=True):
        first = next((w.at_ms for w in transport.written if end < w.at_ms < nxt), None)
        out.append(None if first is None else round(first - end, 1))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from voxpipe.engines import make_tts

    results: dict[str, Any] = {"policy_level": policy_level()}
    voice = make_tts()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "caller.wav"
        spans = make_recording(voice, args.lines, path)
        ours = await real_run(path, spans, rollover=True)
        base = await real_run(path, spans, rollover=False)
    results["real_run"] = {"voxpipe_rollover_5s_cap": ours, "baseline_no_rollover": base}
    p50, b50 = ours["answer_latency_p50_ms"], base["answer_latency_p50_ms"]
    results["real_run"]["answer_latency_p50_ratio"] = (
        None if not p50 or not b50 else round(p50 / b50, 2)
    )
    return results


def report(results: dict[str, Any]) -> None:
    pol = results["policy_level"]
    ours, base = pol["voxpipe"], pol["baseline_no_rollover"]
    keys = [
        "rollovers",
        "prunes",
        "user_turns",
        "user_turns_buffered",
        "user_turns_lost",
        "context_losses",
        "max_bot_audio_gap_ms",
        "total_input_tokens",
    ]
    print_table(
        "60-minute call, policy level (session cap 15 min)",
        ["", "voxpipe rollover", "baseline: one session"],
        [[k, ours[k], base[k]] for k in keys]
        + [["input tokens ratio", pol["input_tokens_ratio"], 1]],
    )
    real = results["real_run"]
    a, b = real["voxpipe_rollover_5s_cap"], real["baseline_no_rollover"]
    keys = list(a)
    print_table(
        "Real run against the server (cap scaled to 5 s)",
        ["", "voxpipe rollover", "baseline: no rollover"],
        [[k, a[k], b[k]] for k in keys]
        + [["answer latency p50 ratio", real["answer_latency_p50_ratio"], 1]],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=12)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()  # pipecat logs every frame at DEBUG
    logger.add(sys.stderr, level="WARNING")
    results = asyncio.run(run(args))
    report(results)
    print(f"wrote {write_result('rollover', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
