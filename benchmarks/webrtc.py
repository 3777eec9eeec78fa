"""Benchmark voxpipe serve's WebRTC path against the file transport, in the same run.

Callers are aiortc peers (a browser's WebRTC stack without the browser: the
page's own costs are not measured here); the server runs the embedded
Realtime server with the scripted brain, so every call answers the same way.

(a) Speech end -> first bot audio: the caller's true end of speech (its
    recording's offset, placed where the server received that audio) to the
    first loud bot audio the caller received, over WebRTC; the same recording
    through the file transport (sound-card pacing) in the same run, as the
    baseline. Ratio = what WebRTC adds.
(b) Truncation error: a caller talks over every answer; the truncation point
    against what the caller (playing what it receives) had heard when told of
    the interruption, with the page's playout reports confirming the position
    and without (the sent position alone).
(c) Load: N concurrent calls against one ``voxpipe serve`` process (another
    process, the scripted brain with its synthetic voice: no TTS model; callers
    here): how many heard over 1 s of their answer within 14 s, each caller's end
    of speech to its first loud bot audio (median, and its ratio to the file
    transport's in (a)), output jitter at the callers (the longest silence
    inserted between consecutive 20 ms frames of one answer, p95 over calls),
    the server's CPU per call, how much of the time its event loop was ready to run
    but waited for a CPU (the machine's load, not the server's own work), and the
    load average then.

(d) Direct against relayed (``voxpipe serve --direct``): the same aiortc
    microphone says the same question to (1) ``voxpipe serve`` relaying to the
    embedded server and (2) the embedded server's WebRTC call API directly, with
    voxpipe on the sideband; from the moment the microphone sent the question's
    last frame to the first loud bot audio the caller received, interleaved in
    one run. The direct call's first reply is a tool call voxpipe answers on the
    sideband, so its figure includes one tool round trip (the relayed call
    answers at once). And the sideband's added latency for a tool call: from the
    ``response.function_call_arguments.done`` the page sees to the
    ``function_call_output`` item the provider announces (the handler answers at once).

Prints tables and writes benchmarks/results/webrtc.json (medians, p95, ratios).
Run: ``.venv/bin/python benchmarks/webrtc.py [--turns 6] [--cuts 6] [--calls 1,2,4]
[--direct-turns 6] [--only-direct]`` (``--only-direct``: (d) alone, to webrtc_direct.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from _common import QUESTIONS, median, percentile, print_table, speak, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from direct_serve import page_call, serving_direct  # noqa: E402
from webrtc_peer import calling  # noqa: E402

from voxpipe.call.events import ItemTruncated  # noqa: E402
from voxpipe.engines import make_tts  # noqa: E402
from voxpipe.pipelines.live_call import LiveCallSpec  # noqa: E402
from voxpipe.pipelines.session import CallSession  # noqa: E402
from voxpipe.pipelines.simulated_call import Mode, build_call_graph, embedded_realtime  # noqa: E402
from voxpipe.playback import PlaybackLedger  # noqa: E402
from voxpipe.transports.file import FileTransport  # noqa: E402
from voxpipe.transports.realtime_server import (  # noqa: E402
    ScriptedBrain,
    ScriptedFunctionCall,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.webrtc.app import ServeConfig, running_serve  # noqa: E402
from voxpipe.transports.webrtc.ice import gather_on_loopback  # noqa: E402

RATE = 16_000
ANSWER = "We open at nine on Saturday morning and close at one in the afternoon."
LONG = (
    "Our pharmacy opens at nine in the morning on Saturday and closes at one in the "
    "afternoon, and on Sunday we are closed all day, but the pharmacy on Market Street "
    "stays open until six in the evening every single day of the week."
)
LOUD = 0.02


def recording(voice: Any, parts: list[str | int], path: Path) -> list[tuple[int, int]]:
    """Write spoken lines and silences (ms); the (start, end) ms of each line."""
    pcm, spans, at = bytearray(), [], 0
    for part in parts:
        chunk = bytes(RATE * 2 * part // 1000) if isinstance(part, int) else speak(voice, part)
        if not isinstance(part, int):
            spans.append((at, at + len(chunk) * 1000 // (RATE * 2)))
        pcm += chunk
        at += len(chunk) * 1000 // (RATE * 2)
    sf.write(str(path), np.frombuffer(bytes(pcm), dtype="<i2"), RATE, subtype="PCM_16")
    return spans


def first_loud_ms(pcm: np.ndarray, rate: int, arrivals: list[float] | None = None) -> int | None:
    """Index (20 ms blocks) of the first loud block."""
    block = rate // 50
    x = pcm[: pcm.size // block * block].astype(np.float32).reshape(-1, block) / 32768
    loud = np.flatnonzero(np.sqrt((x**2).mean(axis=1)) > LOUD)
    return int(loud[0]) if loud.size else None


async def webrtc_turn(voice: Any, question: str, tmp: Path) -> float | None:
    path = tmp / "webrtc.wav"
    spans = recording(voice, [1000, question, 3000], path)
    brain = ScriptedBrain([ANSWER], pace=2.0)
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, path) as caller,
    ):
        live = next(iter(serve.app.calls.values())).call
        deadline = time.monotonic() + 20
        while caller.heard.loud_ms() < 300 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        at_end = live.transport.captures.at_position(spans[0][1])
    if at_end is None:
        return None
    speech_end = at_end.captured_at(spans[0][1])
    block = first_loud_ms(caller.heard.samples(), 48_000)
    if block is None or block >= len(caller.heard.arrivals_ms):
        return None
    return caller.heard.arrivals_ms[block] - speech_end


async def file_turn(voice: Any, question: str, tmp: Path) -> float | None:
    path = tmp / "file.wav"
    spans = recording(voice, [1000, question, 3000], path)
    brain = ScriptedBrain([ANSWER], pace=2.0)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        transport = FileTransport(path, paced=True)
        graph = build_call_graph(transport, Mode.REALTIME, server_url=url, api_key=key)
        async with CallSession(graph, end_timeout_secs=2):
            deadline = time.monotonic() + 20
            while not transport.written and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    if not transport.written:
        return None
    speech_end = transport.input_started_ms + spans[0][1]
    return transport.written[0].at_ms - speech_end


async def truncation(voice: Any, tmp: Path, cuts: int) -> list[dict[str, float]]:
    path = tmp / "cut.wav"
    parts: list[str | int] = [1000]
    for i in range(cuts):
        parts += [QUESTIONS[i % len(QUESTIONS)], 3200, "Sorry, one more thing.", 2500]
    recording(voice, parts, path)
    brain = ScriptedBrain([LONG, "Sure."] * cuts, pace=2.0)
    rows: list[dict[str, float]] = []
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, path, report_playout=True) as caller,
    ):
        live = next(iter(serve.app.calls.values())).call
        transport: Any = live.transport
        sent = SentOnly()  # the output's own reports, without the caller's confirmations
        transport.output().report_playback_to(sent)
        events: list[Any] = live.graph.brain.events  # type: ignore[attr-defined]
        deadline = time.monotonic() + len(parts) * 3
        while time.monotonic() < deadline and len(caller.interrupted_rtp) < cuts:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        cut_events = [e for e in events if isinstance(e, ItemTruncated)]
        playout = transport.playout
        for cut, rtp in zip(cut_events, caller.interrupted_rtp, strict=False):
            if playout is None:
                break
            located = playout.locate(((rtp - playout.origin_rtp) % 2**32) / 48)
            if located is None or located[0] != cut.item_id:
                continue
            sent_ms = sent.played_ms(cut.item_id, transport.now_ms())  # frozen at the cut
            rows.append(
                {
                    "heard_ms": round(located[1], 1),
                    "truncated_ms": cut.audio_end_ms,
                    "error_ms": round(abs(located[1] - cut.audio_end_ms), 1),
                    "sent_error_ms": round(abs(located[1] - sent_ms), 1),
                }
            )
    return rows


class SentOnly(PlaybackLedger):
    """A ledger of what the output sent, deaf to the far end's confirmations."""

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        return


async def load(calls: int, voice: Any, tmp: Path, baseline_ms: float | None) -> dict[str, Any]:
    gather_on_loopback(True)  # the callers, here, offer 127.0.0.1 as the server does
    path = tmp / f"load{calls}.wav"
    spans = recording(voice, [1000, "Tell me about your opening hours.", 12000], path)
    script = tmp / "script.json"
    script.write_text(json.dumps([LONG]))
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxpipe",
        "serve",
        "--port",
        str(port),
        "--brain",
        "scripted",
        "--script",
        str(script),
        "--max-calls",
        str(calls),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _until_up(url)
        cpu_before, waited_before = _cpu_s(server.pid), _waited_s(server.pid)
        started = time.monotonic()
        results = await asyncio.gather(*[_one_call(url, path, spans[0][1]) for _ in range(calls)])
        wall = time.monotonic() - started
        cpu = _cpu_s(server.pid) - cpu_before
        waited = _waited_s(server.pid) - waited_before
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
    gaps = [r.gap_ms for r in results if r.gap_ms is not None]
    firsts = [r.first_audio_ms for r in results if r.first_audio_ms is not None]
    return {
        "calls": calls,
        "answered": sum(1 for r in results if r.heard_ms > 1000),
        "first_audio_ms_median": median(firsts),
        "first_audio_ratio_vs_file": _ratio(median(firsts), baseline_ms),
        "cpu_percent_of_a_core_per_call": round(100 * cpu / wall / calls, 1),
        "loop_waited_for_a_cpu_percent": round(100 * waited / wall, 1),
        "jitter_p95_ms": percentile(gaps, 95),
        "jitter_median_ms": median(gaps),
        "load_1m": round(os.getloadavg()[0], 2),
    }


@dataclass(frozen=True)
class LoadCall:
    """One concurrent caller: its answer's longest inserted silence, how much of it was heard
    (loud), and its end of speech to the first loud bot audio (None: no answer heard)."""

    gap_ms: float | None
    heard_ms: float
    first_audio_ms: float | None


async def _one_call(url: str, path: Path, speech_end_ms: int) -> LoadCall:
    async with calling(url, path) as caller:
        # The player starts the recording as the connection comes up: its end of speech is
        # this far into it (to a frame or two; the same for every caller and every N).
        speech_end = time.monotonic() * 1000 + speech_end_ms
        await asyncio.sleep(14)
        arrivals = caller.heard.arrivals_ms
        samples = caller.heard.samples()
    block = 960  # 20 ms at 48 kHz
    x = samples[: samples.size // block * block].astype(np.float32).reshape(-1, block) / 32768
    loud = np.flatnonzero(np.sqrt((x**2).mean(axis=1)) > LOUD)
    first = arrivals[int(loud[0])] - speech_end if loud.size else None
    if loud.size < 10:
        return LoadCall(None, float(loud.size * 20), first)
    span = arrivals[int(loud[0]) : int(loud[-1]) + 1]
    gaps = np.diff(span) - 20.0  # silence inserted between consecutive 20 ms frames
    return LoadCall(float(max(0.0, gaps.max())), float(loud.size * 20), first)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("voxpipe serve did not come up")


def _waited_s(pid: int) -> float:
    """How long the process's main thread (its event loop) was ready to run but waited for a
    CPU (the kernel's run-queue delay): the share of the machine it did not get."""
    fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(fields[1]) / 1e9


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


DIRECT_KEY = "sk-bench"
TOOL = {"type": "function", "name": "lookup_hours", "parameters": {"type": "object"}}


def _first_audio_after(heard: Any, after_ms: float) -> float | None:
    """When the first loud 20 ms frame arriving after ``after_ms`` came (monotonic ms)."""
    samples = heard.samples()
    for index, at in enumerate(heard.arrivals_ms):
        if at < after_ms:
            continue
        frame = samples[index * 960 : (index + 1) * 960].astype(np.float32) / 32768
        if frame.size and float(np.sqrt((frame**2).mean())) > LOUD:
            return float(at)
    return None


async def relayed_mic_turn(path: Path) -> float | None:
    """Relayed: the microphone's last frame of the question -> first loud bot audio heard."""
    brain = ScriptedBrain([ANSWER], pace=2.0)
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, path, live_mic=True) as caller,
    ):
        assert caller.mic is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if caller.mic.said and _first_audio_after(caller.heard, caller.mic.said[0].ended_ms):
                break
            await asyncio.sleep(0.05)
        if not caller.mic.said:
            return None
        end = caller.mic.said[0].ended_ms
        first = _first_audio_after(caller.heard, end)
    return None if first is None else first - end


async def direct_mic_turn(path: Path) -> tuple[float | None, float | None]:
    """Direct: the same measure; and the sideband's tool round trip seen from the page."""
    brain = ScriptedBrain([ScriptedFunctionCall("lookup_hours", {}), ANSWER], pace=2.0)

    async def lookup_hours(arguments: dict[str, Any]) -> dict[str, Any]:
        return {"opens": "9:00"}

    config = ServerConfig(api_key=DIRECT_KEY)
    async with (
        running_realtime_server(config=config, brain=brain) as srv,
        serving_direct(
            srv,
            api_key=DIRECT_KEY,
            session={"type": "realtime", "model": "gpt-realtime", "tools": [TOOL]},
            tools={"lookup_hours": lookup_hours},
        ) as serve,
    ):
        async with page_call(serve) as (peer, _):
            peer.mic.say(path)
            deadline = time.monotonic() + 30
            end = first = None
            while time.monotonic() < deadline and first is None:
                await asyncio.sleep(0.05)
                if peer.mic.said:
                    end = peer.mic.said[0].ended_ms
                    first = _first_audio_after(peer.heard, end)
            arrivals = peer.event_arrivals
        asked = [t for t, e in arrivals if e["type"] == "response.function_call_arguments.done"]
        answered = [
            t
            for t, e in arrivals
            if e["type"] == "conversation.item.added"
            and e["item"]["type"] == "function_call_output"
        ]
    tool_ms = answered[0] - asked[0] if asked and answered else None
    return (None if first is None or end is None else first - end), tool_ms


async def direct_vs_relayed(voice: Any, tmp: Path, turns: int) -> dict[str, Any]:
    """(d): interleaved, so load drifts hit both paths alike."""
    relayed: list[float] = []
    direct: list[float] = []
    tools: list[float] = []
    loads: list[float] = []
    for i in range(turns):
        path = tmp / f"question-{i % len(QUESTIONS)}.wav"
        recording(voice, [QUESTIONS[i % len(QUESTIONS)]], path)
        loads.append(os.getloadavg()[0])
        if (r := await relayed_mic_turn(path)) is not None:
            relayed.append(r)
        d, tool = await direct_mic_turn(path)
        if d is not None:
            direct.append(d)
        if tool is not None:
            tools.append(tool)
    return {
        "turns": turns,
        "relayed_ms": {"median": median(relayed), "p95": percentile(relayed, 95), "runs": relayed},
        "direct_ms": {"median": median(direct), "p95": percentile(direct, 95), "runs": direct},
        "ratio_direct_vs_relayed": _ratio(median(direct), median(relayed)),
        "sideband_tool_ms": {"median": median(tools), "p95": percentile(tools, 95), "runs": tools},
        "load_1m": {"min": round(min(loads), 2), "max": round(max(loads), 2)},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    voice = make_tts()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.only_direct:
            return {"direct_vs_relayed": await direct_vs_relayed(voice, tmp, args.direct_turns)}
        direct = await direct_vs_relayed(voice, tmp, args.direct_turns)
        webrtc, file = [], []
        for i in range(args.turns):  # interleaved, so load drifts hit both alike
            question = QUESTIONS[i % len(QUESTIONS)]
            webrtc.append(await webrtc_turn(voice, question, tmp))
            file.append(await file_turn(voice, question, tmp))
        cuts = await truncation(voice, tmp, args.cuts)
        loads = [await load(n, voice, tmp, median(file)) for n in args.calls]
    return {
        "first_audio_ms": {
            "webrtc": {"median": median(webrtc), "p95": percentile(webrtc, 95), "runs": webrtc},
            "file": {"median": median(file), "p95": percentile(file, 95), "runs": file},
            "ratio_webrtc_vs_file": _ratio(median(webrtc), median(file)),
        },
        "truncation": {
            "cuts": len(cuts),
            "error_ms_median": median([c["error_ms"] for c in cuts]),
            "error_ms_max": max((c["error_ms"] for c in cuts), default=None),
            "sent_only_error_ms_median": median([c["sent_error_ms"] for c in cuts]),
            "sent_only_error_ms_max": max((c["sent_error_ms"] for c in cuts), default=None),
            "rows": cuts,
        },
        "load": loads,
        "direct_vs_relayed": direct,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def report_direct(direct: dict[str, Any]) -> None:
    print_table(
        "Mic's last frame of the question -> first bot audio at the caller (ms), same run",
        ["path", "median", "p95", "ratio vs relayed", "load 1m"],
        [
            [
                "relayed (voxpipe serve)",
                direct["relayed_ms"]["median"],
                direct["relayed_ms"]["p95"],
                1.0,
                f"{direct['load_1m']['min']}-{direct['load_1m']['max']}",
            ],
            [
                "direct (page -> provider, sideband)",
                direct["direct_ms"]["median"],
                direct["direct_ms"]["p95"],
                direct["ratio_direct_vs_relayed"],
                "",
            ],
        ],
    )
    tool = direct["sideband_tool_ms"]
    print_table(
        "Sideband tool round trip (function call seen -> output in the conversation, ms)",
        ["calls", "median", "p95"],
        [[len(tool["runs"]), tool["median"], tool["p95"]]],
    )


def report(data: dict[str, Any]) -> None:
    if "direct_vs_relayed" in data:
        report_direct(data["direct_vs_relayed"])
    if "first_audio_ms" not in data:
        return
    first = data["first_audio_ms"]
    print_table(
        "Speech end -> first bot audio (ms), scripted brain, same run",
        ["path", "median", "p95", "ratio vs file"],
        [
            [
                "WebRTC (aiortc caller)",
                first["webrtc"]["median"],
                first["webrtc"]["p95"],
                first["ratio_webrtc_vs_file"],
            ],
            ["file transport", first["file"]["median"], first["file"]["p95"], 1.0],
        ],
    )
    cut = data["truncation"]
    print_table(
        "Truncation against what the caller had heard (ms)",
        ["cuts", "position", "error median", "error max"],
        [
            [
                cut["cuts"],
                "confirmed by the caller (default)",
                cut["error_ms_median"],
                cut["error_ms_max"],
            ],
            [
                cut["cuts"],
                "sent position only",
                cut["sent_only_error_ms_median"],
                cut["sent_only_error_ms_max"],
            ],
        ],
    )
    print_table(
        "Concurrent calls on one voxpipe serve process (scripted brain, synthetic voice)",
        [
            "calls",
            "answered",
            "first audio p50 ms",
            "ratio vs file",
            "jitter p95 ms",
            "CPU % of a core per call",
            "loop waited for a CPU %",
            "load 1m",
        ],
        [
            [
                r["calls"],
                r["answered"],
                r["first_audio_ms_median"],
                r["first_audio_ratio_vs_file"],
                r["jitter_p95_ms"],
                r["cpu_percent_of_a_core_per_call"],
                r["loop_waited_for_a_cpu_percent"],
                r["load_1m"],
            ]
            for r in data["load"]
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--cuts", type=int, default=6)
    parser.add_argument("--calls", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--direct-turns", type=int, default=6)
    parser.add_argument("--only-direct", action="store_true")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    report(result)
    print(f"wrote {write_result('webrtc_direct' if arguments.only_direct else 'webrtc', result)}")
