"""Benchmark voxpipe realtime-server.

1. Scripted brain, load: how many concurrent sessions one server process
   holds on this machine while every session still gets its audio in real
   time. Each session streams 2 s of microphone noise in real time (the server
   runs Silero VAD on all of it), then asks for a reply and "plays" it with a
   100 ms jitter buffer; an underrun is a delta that arrives after its
   playback time. Baseline, measured in the same run: a bare aiohttp
   WebSocket server that streams the same paced audio with no protocol work.
   Callers arrive spread over two seconds, as calls do, not in lockstep.
2. Local brain: end of speech -> first ``response.output_audio.delta``,
   median over a few spoken questions. Baseline, same run: the naive turn
   (whole-utterance STT, whole LLM reply, then TTS of the first sentence).

Traffic goes to 127.0.0.1 only, bounded in sessions and time. Prints a
table and writes benchmarks/results/realtime_server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import aiohttp
import numpy as np

RESULTS = Path(__file__).parent / "results" / "realtime_server.json"
LEVELS = (1, 10, 25, 50, 75, 100, 125, 150, 200, 300)
CHUNK_MS = 100
NOISE_MS = 2000
JITTER_MS = 100
PACE = 1.5  # the CLI's scripted pace: audio streams 1.5x faster than real time
REPLY = "Hello! This is the voxpipe scripted voice. How can I help you today?"
LATENCY_LIMIT_MS = 500.0
STAGGER_S = 2.0
ENDPOINT_MS = 500  # server_vad's default silence_duration_ms


@dataclass
class SessionResult:
    create_to_created_ms: float = 0.0
    first_delta_ms: float = 0.0
    audio_ms: int = 0
    underruns: int = 0
    failed: str = ""
    gaps_ms: list[float] = field(default_factory=list)


@dataclass
class LevelResult:
    server: str
    sessions: int
    failed: int
    underruns: int
    p50_created_ms: float
    p99_created_ms: float
    p99_event_gap_ms: float
    audio_s: float
    server_cpu_s: float = 0.0
    cpu_ms_per_session_s: float = 0.0
    """Server CPU per second of call (2 s of input audio plus the reply per session)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the bare baseline server -----------------------------------------------


def baseline_server(port: int) -> None:
    """Bare aiohttp: streams the same paced PCM deltas, no parsing beyond JSON, no VAD."""
    from aiohttp import web

    audio = bytes(48 * 3500)
    step = 48 * CHUNK_MS

    async def realtime(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=32 << 20)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "session.created"}))
        async for message in ws:
            if json.loads(message.data).get("type") != "response.create":
                continue
            await ws.send_str(json.dumps({"type": "response.created"}))
            for start in range(0, len(audio), step):
                delta = base64.b64encode(audio[start : start + step]).decode()
                await ws.send_str(
                    json.dumps({"type": "response.output_audio.delta", "delta": delta})
                )
                await asyncio.sleep(CHUNK_MS / 1000 / PACE)
            await ws.send_str(json.dumps({"type": "response.done"}))
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", realtime)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def start_server(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "baseline":
        cmd = [sys.executable, __file__, "--baseline-server", str(port)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "voxpipe",
            "realtime-server",
            "--brain",
            "scripted",
            "--voice",
            "synthetic",
            "--port",
            str(port),
            "--api-key",
            "bench",
        ]
    env = {**os.environ, "LOGURU_LEVEL": "WARNING"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


# -- one simulated caller -----------------------------------------------------


async def caller(
    http: aiohttp.ClientSession, url: str, noise: bytes, start_delay: float
) -> SessionResult:
    result = SessionResult()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(start_delay)  # callers arrive spread over STAGGER_S, not all at once
    try:
        async with http.ws_connect(
            url, headers={"Authorization": "Bearer bench"}, max_msg_size=0
        ) as ws:
            await ws.receive()  # session.created
            step = 48 * CHUNK_MS
            for start in range(0, len(noise), step):
                chunk = base64.b64encode(noise[start : start + step]).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await asyncio.sleep(CHUNK_MS / 1000)
            sent = loop.time()
            await ws.send_str(json.dumps({"type": "response.create"}))
            await play(ws, result, sent, loop)
    except Exception as exc:  # a failed session is reported, not fatal
        result.failed = repr(exc)
    return result


async def play(
    ws: aiohttp.ClientWebSocketResponse,
    result: SessionResult,
    sent: float,
    loop: asyncio.AbstractEventLoop,
) -> None:
    play_start: float | None = None
    last = sent
    async with asyncio.timeout(60):
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {message.type}")
            now = loop.time()
            event = json.loads(message.data)
            kind = event.get("type")
            result.gaps_ms.append((now - last) * 1000)
            last = now
            if kind == "response.created":
                result.create_to_created_ms = (now - sent) * 1000
            elif kind == "response.output_audio.delta":
                if play_start is None:
                    result.first_delta_ms = (now - sent) * 1000
                    play_start = now + JITTER_MS / 1000
                elif now > play_start + result.audio_ms / 1000:
                    result.underruns += 1
                result.audio_ms += len(base64.b64decode(event["delta"])) // 48
            elif kind == "response.done":
                return


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_level(kind: str, port: int, sessions: int, pid: int) -> LevelResult:
    url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    cpu_before = cpu_seconds(pid)
    noise = (np.random.default_rng(1).normal(0, 300, 24 * NOISE_MS)).astype("<i2").tobytes()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        delays = np.random.default_rng(sessions).uniform(0, STAGGER_S, sessions)
        results = await asyncio.gather(*(caller(http, url, noise, d) for d in delays))
    cpu = cpu_seconds(pid) - cpu_before
    ok = [r for r in results if not r.failed]
    call_s = sum(NOISE_MS / 1000 + r.audio_ms / 1000 / PACE for r in ok) or float("nan")
    created = sorted(r.create_to_created_ms for r in ok) or [float("nan")]
    gaps = sorted(g for r in ok for g in r.gaps_ms[2:]) or [float("nan")]
    return LevelResult(
        server=kind,
        sessions=sessions,
        failed=len(results) - len(ok),
        underruns=sum(r.underruns for r in ok),
        p50_created_ms=round(statistics.median(created), 1),
        p99_created_ms=round(created[min(len(created) - 1, int(len(created) * 0.99))], 1),
        p99_event_gap_ms=round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], 1),
        audio_s=round(sum(r.audio_ms for r in ok) / 1000, 1),
        server_cpu_s=round(cpu, 2),
        cpu_ms_per_session_s=round(cpu * 1000 / call_s, 2),
    )


def held(level: LevelResult) -> bool:
    return level.failed == 0 and level.underruns == 0 and level.p99_created_ms < LATENCY_LIMIT_MS


async def load_benchmark(levels: tuple[int, ...]) -> list[LevelResult]:
    rows: list[LevelResult] = []
    for kind in ("baseline", "voxpipe"):
        port = free_port()
        proc = start_server(kind, port)
        try:
            await run_level(kind, port, 1, proc.pid)  # warm-up: first-use imports and caches
            for sessions in levels:
                level = await run_level(kind, port, sessions, proc.pid)
                rows.append(level)
                print(
                    f"  {kind:<8} {sessions:>4} sessions: underruns={level.underruns} "
                    f"failed={level.failed} p99 create->created={level.p99_created_ms} ms",
                    flush=True,
                )
                if not held(level):
                    break
        finally:
            proc.terminate()
            proc.wait(10)
    return rows


# -- local brain latency ----------------------------------------------------------------


QUESTIONS = (
    "What is the capital of France?",
    "Which planet is closest to the sun?",
    "How many days are there in a week?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
)


async def local_benchmark() -> dict[str, Any]:
    from voxpipe.engines import make_tts
    from voxpipe.realtime_server import codec
    from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
    from voxpipe.transports.realtime_server.local_brain import LocalBrain

    brain = await LocalBrain.load()
    voice = make_tts("espeak")
    streaming: list[float] = []
    from_stop: list[float] = []
    spoken = {
        q: codec.resample(b"".join(voice.synthesize(q)), voice.sample_rate, 24_000)
        for q in ("Hello there.", *QUESTIONS)
    }
    naive_turn(brain.engines, spoken["Hello there."], "Hello there.")  # warm-up
    # Naive turns first, then the server's: run back to back on the same question, the
    # second would find the whole prompt in llama.cpp's cache; apart, both reuse only the
    # shared system prompt.
    naive = [naive_turn(brain.engines, spoken[q], q) * 1000 for q in QUESTIONS]
    async with running_realtime_server(config=ServerConfig(api_key="bench"), brain=brain) as srv:
        for question in QUESTIONS:
            lead, tail = bytes(48 * 400), bytes(48 * 1200)
            speech_end, first, stopped = await spoken_turn(
                srv.realtime_url, lead, spoken[question], tail
            )
            streaming.append((first - speech_end) * 1000)
            from_stop.append((first - stopped) * 1000)
    return {
        "questions": len(QUESTIONS),
        "speech_end_to_first_audio_ms": [round(v) for v in streaming],
        "speech_stopped_to_first_audio_ms": [round(v) for v in from_stop],
        "naive_turn_ms": [round(v) for v in naive],
        "median_speech_end_to_first_audio_ms": round(statistics.median(streaming)),
        "median_speech_stopped_to_first_audio_ms": round(statistics.median(from_stop)),
        "median_naive_turn_ms": round(statistics.median(naive)),
    }


async def spoken_turn(
    url: str, lead: bytes, speech: bytes, tail: bytes
) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    step = 48 * CHUNK_MS
    speech_end = stopped = 0.0
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{url}?model=local", headers={"Authorization": "Bearer bench"}, max_msg_size=0
        ) as ws,
    ):
        await ws.receive()
        audio = lead + speech + tail
        speech_end_byte = len(lead) + len(speech)

        async def send_audio() -> None:
            nonlocal speech_end
            for start in range(0, len(audio), step):
                chunk = base64.b64encode(audio[start : start + step]).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                if start < speech_end_byte <= start + step:
                    speech_end = loop.time()
                await asyncio.sleep(CHUNK_MS / 1000)

        sender = asyncio.create_task(send_audio())
        async with asyncio.timeout(120):
            while True:
                event = json.loads((await ws.receive()).data)
                if event["type"] == "input_audio_buffer.speech_stopped":
                    stopped = loop.time()
                elif event["type"] == "response.output_audio.delta":
                    first = loop.time()
                    break
        await sender
    return speech_end, first, stopped


def naive_turn(engines: Any, pcm24: bytes, question: str) -> float:
    """Whole STT, whole LLM reply, then TTS of the first sentence."""
    from voxpipe.realtime_server import codec
    from voxpipe.speech_text import SENTENCES_ONLY, split_text

    started = time.monotonic()
    heard = engines.stt.transcribe(codec.resample(pcm24, 24_000, 16_000), 16_000)
    from voxpipe.realtime_server.session_config import DEFAULT_INSTRUCTIONS

    # The server's own system prompt: both paths then share llama.cpp's cached prefix.
    messages = [
        {"role": "system", "content": DEFAULT_INSTRUCTIONS},
        {"role": "user", "content": heard or question},
    ]
    reply = "".join(c.text for c in engines.llm.stream_chat(messages, None, max_tokens=200))
    first = (split_text(reply, SENTENCES_ONLY) or [""])[0]
    next(iter(engines.tts.synthesize(first)), b"")
    return time.monotonic() - started


# -- report ----------------------------------------------------------------------------


def print_table(rows: list[LevelResult]) -> None:
    print(f"\nvoxpipe realtime-server benchmark ({os.cpu_count()} cores, {platform.machine()})")
    print(
        f"{'server':<9}{'sessions':>9}{'failed':>8}{'underruns':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'p99 gap ms':>12}{'audio s':>9}{'cpu ms/s':>10}"
    )
    for r in rows:
        print(
            f"{r.server:<9}{r.sessions:>9}{r.failed:>8}{r.underruns:>10}{r.p50_created_ms:>9}"
            f"{r.p99_created_ms:>9}{r.p99_event_gap_ms:>12}{r.audio_s:>9}"
            f"{r.cpu_ms_per_session_s:>10}"
        )


def report(rows: list[LevelResult], local: dict[str, Any] | None) -> dict[str, Any]:
    print_table(rows)
    most = {
        kind: max([r.sessions for r in rows if r.server == kind and held(r)], default=0)
        for kind in ("baseline", "voxpipe")
    }
    ratio = most["voxpipe"] / most["baseline"] if most["baseline"] else None
    print(
        f"\nmost sessions held in real time: voxpipe {most['voxpipe']}, "
        f"bare aiohttp {most['baseline']} (ratio {ratio})"
    )
    pairs = {(r.server, r.sessions): r for r in rows}
    latency_ratios = {
        n: round(
            pairs[("voxpipe", n)].p99_created_ms / max(pairs[("baseline", n)].p99_created_ms, 0.1),
            2,
        )
        for kind, n in pairs
        if kind == "voxpipe" and ("baseline", n) in pairs
    }
    print(f"p99 create->created, voxpipe / bare aiohttp by sessions: {latency_ratios}")
    if local:
        naive = local["median_naive_turn_ms"]
        # The naive turn starts when endpointing has already decided; compare like with like.
        local["ratio_speech_stopped_to_naive"] = round(
            local["median_speech_stopped_to_first_audio_ms"] / naive, 2
        )
        local["ratio_speech_end_to_naive_plus_endpointing"] = round(
            local["median_speech_end_to_first_audio_ms"] / (naive + ENDPOINT_MS), 2
        )
        print(
            f"local brain: end of speech -> first audio delta, median "
            f"{local['median_speech_end_to_first_audio_ms']} ms (speech_stopped -> first delta "
            f"{local['median_speech_stopped_to_first_audio_ms']} ms); naive turn {naive} ms "
            f"(+{ENDPOINT_MS} ms endpointing); ratios "
            f"{local['ratio_speech_stopped_to_naive']} (from speech_stopped), "
            f"{local['ratio_speech_end_to_naive_plus_endpointing']} (from end of speech)"
        )
    return {
        "machine": _common.machine(),
        "levels": [asdict(r) for r in rows],
        "max_sessions_held": most,
        "max_sessions_ratio_to_bare_aiohttp": ratio,
        "p99_created_ratio_to_bare_aiohttp": latency_ratios,
        "local_brain": local,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--skip-local", action="store_true", help="skip the local-brain latency")
    parser.add_argument(
        "--skip-load", action="store_true", help="reuse the load rows of the last results file"
    )
    args = parser.parse_args()
    if args.baseline_server:
        baseline_server(args.baseline_server)
        return 0
    levels = tuple(int(n) for n in args.levels.split(","))
    if args.skip_load and RESULTS.exists():
        rows = [LevelResult(**row) for row in json.loads(RESULTS.read_text())["levels"]]
    else:
        rows = asyncio.run(load_benchmark(levels))
    local = None if args.skip_local else asyncio.run(local_benchmark())
    results = report(rows, local)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
