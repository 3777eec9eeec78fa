"""How many concurrent realtime calls one embedded-server process holds (issue 19).

One child process runs the embedded Realtime server (voxpipe's own, with its
Silero server VAD on every session) and a light scripted brain: a synthetic
voice, streamed in 20 ms chunks at real time, so the figures are the server's,
not a model's. This process is the callers: N WebSocket calls at once, each
starting (connect, ``session.created``, ``session.update``), then streaming
microphone noise in real time (100 ms appends: the server scores all of it)
and asking for two spoken replies.

Measured per level of N, against N = 1 in the same run (ratios):

- output jitter: silence inserted between consecutive chunks of one reply
  (arrival gap less the previous chunk's length), p95 over all replies;
- first audio: ``response.create`` -> first delta, p95;
- the server's event loop: lateness of a 2 ms timer in the server process,
  while calls only start (so a call start blocking the loop shows there) and
  while they talk; a start is also timed from the client (upgrade ->
  ``session.updated``);
- admission: with ``max_sessions`` = N, the call after the N-th is refused
  with 503 before the upgrade;
- a client call's start (``--client-starts``, before the levels): voxpipe's own
  realtime call (graph, pipeline, session) started in this process one at a
  time, its loop thread's CPU and the loop's lag meanwhile;
- server CPU (% of one core per call, and in all), the share of the talking
  time its threads were runnable but waited for a CPU (``/proc/*/schedstat``:
  on a shared machine, the part of the lag that is other people's work), and
  RSS per call.

The goal in the issue: 100 calls per process with jitter p95 under 20 ms and
no call start blocking the loop for more than 5 ms. The machine is shared and
loaded; the load average is recorded with the results. Loopback only.

    python benchmarks/load.py                 # levels 1,10,25,50,100
    python benchmarks/load.py --levels 1,20   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import aiohttp
import numpy as np

LEVELS = (1, 10, 25, 50, 100)
REPLY = "Hello! This is the voxpipe scripted voice. How can I help you today?"
INPUT_CHUNK_MS = 100
OUTPUT_CHUNK_MS = 20
STAGGER_S = 2.0
REPLIES = 2
TIMER_MS = 2.0
JITTER_GOAL_MS = 20.0
START_BLOCK_GOAL_MS = 5.0
KEY = "bench"


# -- the server process ------------------------------------------------------------


class LoopLag:
    """Lateness of a short timer: how long the event loop was held by something else."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TIMER_MS / 1000
            await asyncio.sleep(TIMER_MS / 1000)
            self.samples.append((loop.time() - due) * 1000)

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples


async def serve(port: int, max_sessions: int, profile: str | None = None) -> None:
    """The child: the embedded server, and a line protocol on stdin for its loop's lag."""
    from voxpipe.transports.realtime_server import (
        ScriptedBrain,
        ServerConfig,
        running_realtime_server,
    )
    from voxpipe.transports.realtime_server.brains import SyntheticVoice

    brain = ScriptedBrain([REPLY], voice=SyntheticVoice(), pace=1.0, chunk_ms=OUTPUT_CHUNK_MS)
    config = ServerConfig(api_key=KEY, max_sessions=max_sessions)
    lag = LoopLag()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    profiler = None
    if profile:
        import cProfile

        # The loop thread's CPU time, not the wall clock: on a loaded machine a
        # wall-clock profile charges the waits for a CPU to whatever was running.
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    async with running_realtime_server(config=config, brain=brain, port=port) as srv:
        monitor = asyncio.create_task(lag.run())
        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "lag":
                # The loop thread's own CPU time: what a start can have held the loop for.
                taken = {"lag_ms": lag.take(), "loop_cpu_s": time.thread_time()}
                print(json.dumps({**taken, "live": len(srv.server.live_sessions)}))
                sys.stdout.flush()
        monitor.cancel()
        # Before the sessions close: a slow shutdown of many sessions can outlast the
        # parent's wait and be killed, and the profile is of the calls, not the close.
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


class ServerProcess:
    """The child server, its CPU and memory, and its loop's lag on request."""

    def __init__(self, port: int, max_sessions: int, profile: str | None = None) -> None:
        self.port = port
        self.loop_cpu_s = 0.0
        self.idle_loop_cpu_per_s = 0.0  # the lag timer's own cost, measured idle
        env = {**os.environ, "LOGURU_LEVEL": "WARNING"}
        command = [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            "--max-sessions",
            str(max_sessions),
        ]
        self.proc = subprocess.Popen(
            command + (["--profile", profile] if profile else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the server process did not start")

    def lag(self) -> list[float]:
        """The loop's timer lateness since the last call (and its CPU in ``loop_cpu_s``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("lag\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        self.loop_cpu_s = float(answer["loop_cpu_s"])
        return list(answer["lag_ms"])

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def runqueue_wait_s(self) -> float:
        """Time the server's threads were runnable but waited for a CPU (/proc schedstat)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[1])
        return total / 1e9

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- the callers ---------------------------------------------------------------------


@dataclass
class Call:
    start_ms: float = 0.0
    first_audio_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    audio_ms: float = 0.0
    failed: str = ""


def _delta_ms(data: str) -> float:
    """Milliseconds of PCM16 at 24 kHz in a delta event, without parsing the whole event."""
    start = data.index('"delta":"') + 9
    encoded = data.index('"', start) - start
    return encoded * 3 / 4 / 48


async def reply(ws: aiohttp.ClientWebSocketResponse, call: Call) -> None:
    """Ask for a reply and time its chunks as they arrive."""
    loop = asyncio.get_running_loop()
    await ws.send_str(json.dumps({"type": "response.create"}))
    asked = loop.time()
    last: tuple[float, float] | None = None  # arrival, length of the previous chunk
    async with asyncio.timeout(60):
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {message.type} {message.data}")
            now = loop.time()
            data = message.data
            if '"response.output_audio.delta"' in data:
                length = _delta_ms(data)
                if last is None:
                    call.first_audio_ms.append((now - asked) * 1000)
                else:
                    call.gaps_ms.append(max(0.0, (now - last[0]) * 1000 - last[1]))
                last = (now, length)
                call.audio_ms += length
            elif '"response.done"' in data:
                return


async def microphone(ws: aiohttp.ClientWebSocketResponse, noise: bytes) -> None:
    """Noise in real time, 100 ms a message, until cancelled (as a live caller's mic)."""
    loop = asyncio.get_running_loop()
    step = 48 * INPUT_CHUNK_MS
    started = loop.time()
    sent = 0
    while True:
        chunk = noise[(sent * step) % len(noise) :][:step]
        payload = base64.b64encode(chunk).decode()
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * INPUT_CHUNK_MS / 1000 - loop.time()))


class Gate:
    """Opens once ``parties`` calls have arrived (a failed call arrives too)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.opened = asyncio.Event()

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.opened.set()


@dataclass
class Gates:
    started: Gate  # every call has started (or failed)
    talk: asyncio.Event  # the callers may talk
    finished: Gate  # every call has had its replies (or failed)
    hang_up: asyncio.Event  # the callers may hang up


async def one_call(
    http: aiohttp.ClientSession, url: str, delay_s: float, noise: bytes, gates: Gates
) -> Call:
    call = Call()
    loop = asyncio.get_running_loop()
    stage = gates.started
    await asyncio.sleep(delay_s)
    try:
        began = loop.time()
        async with http.ws_connect(
            url, headers={"Authorization": f"Bearer {KEY}"}, max_msg_size=0
        ) as ws:
            await ws.receive()  # session.created
            update = {"type": "session.update", "session": {"type": "realtime"}}
            await ws.send_str(json.dumps(update))
            while '"session.updated"' not in (await ws.receive()).data:
                pass
            call.start_ms = (loop.time() - began) * 1000
            stage.arrive()
            stage = gates.finished
            await gates.talk.wait()
            mic = asyncio.create_task(microphone(ws, noise))
            try:
                await asyncio.sleep(delay_s)  # replies asked for spread out, as turns are
                for _ in range(REPLIES):
                    await asyncio.sleep(1.0)  # the caller's turn
                    await reply(ws, call)
            finally:
                mic.cancel()
            stage.arrive()
            stage = None
            await gates.hang_up.wait()
    except Exception as exc:  # a failed call is counted, not fatal
        call.failed = repr(exc)
        if stage is gates.started:
            stage.arrive()
            gates.finished.arrive()
        elif stage is gates.finished:
            stage.arrive()
    return call


async def refused_status(url: str) -> int:
    """The HTTP status of one more upgrade."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, headers={"Authorization": f"Bearer {KEY}"}):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


@dataclass
class Level:
    calls: int
    failed: int
    start_p95_ms: float | None
    admission_status: int | None
    jitter_p95_ms: float | None
    jitter_max_ms: float | None
    first_audio_p95_ms: float | None
    loop_cpu_per_start_ms: float | None
    start_lag_p95_ms: float | None
    start_lag_max_ms: float | None
    talk_lag_p95_ms: float | None
    talk_lag_max_ms: float | None
    client_lag_p95_ms: float | None
    cpu_pct_per_call: float | None
    server_cpu_pct: float | None
    runqueue_wait_pct: float | None  # of the talking time: runnable, waiting for a CPU
    waited_per_ms_run: float | None  # ms waiting for a CPU per ms on one
    rss_mb_per_call: float | None
    failures: dict[str, int] = field(default_factory=dict)
    held: bool = False


async def run_level(server: ServerProcess, n: int, admission: bool) -> Level:
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"
    noise = (np.random.default_rng(n).normal(0, 300, 24 * 2000)).astype("<i2").tobytes()
    delays = np.random.default_rng(n + 1).uniform(0, STAGGER_S, n)
    gates = Gates(Gate(n), asyncio.Event(), Gate(n), asyncio.Event())
    client_lag = LoopLag()
    monitor = asyncio.create_task(client_lag.run())
    rss_before = server.rss_mb()
    server.lag()  # reset
    cpu_at, wall_at = server.loop_cpu_s, time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.create_task(one_call(http, url, float(d), noise, gates)) for d in delays]
        async with asyncio.timeout(STAGGER_S + 60):
            await gates.started.opened.wait()
        start_lag = server.lag()
        idle_cpu = server.idle_loop_cpu_per_s * (time.monotonic() - wall_at)
        start_cpu_ms = (server.loop_cpu_s - cpu_at - idle_cpu) * 1000 / n
        status = await refused_status(url) if admission else None
        rss_open = server.rss_mb()
        cpu_before, wall_before = server.cpu_s(), time.monotonic()
        waited_before = server.runqueue_wait_s()
        gates.talk.set()
        async with asyncio.timeout(STAGGER_S + 120):
            await gates.finished.opened.wait()
        cpu = server.cpu_s() - cpu_before
        wall = time.monotonic() - wall_before
        waited = server.runqueue_wait_s() - waited_before
        talk_lag = server.lag()
        rss_talked = server.rss_mb()
        gates.hang_up.set()
        calls = await asyncio.gather(*tasks)
    monitor.cancel()
    ok = [c for c in calls if not c.failed]
    gaps = [g for c in ok for g in c.gaps_ms]
    p = _common.percentile
    level = Level(
        calls=n,
        failed=n - len(ok),
        start_p95_ms=p([c.start_ms for c in ok], 95),
        admission_status=status,
        jitter_p95_ms=p(gaps, 95),
        jitter_max_ms=round(max(gaps), 1) if gaps else None,
        first_audio_p95_ms=p([f for c in ok for f in c.first_audio_ms], 95),
        # Below 10 starts the idle timer's own cost, subtracted, swamps the figure.
        loop_cpu_per_start_ms=round(start_cpu_ms, 2) if n >= 10 else None,
        start_lag_p95_ms=p(start_lag, 95),
        start_lag_max_ms=round(max(start_lag), 1) if start_lag else None,
        talk_lag_p95_ms=p(talk_lag, 95),
        talk_lag_max_ms=round(max(talk_lag), 1) if talk_lag else None,
        client_lag_p95_ms=p(client_lag.samples, 95),
        cpu_pct_per_call=round(cpu / wall / n * 100, 2) if wall else None,
        server_cpu_pct=round(cpu / wall * 100, 1) if wall else None,
        runqueue_wait_pct=round(waited / wall * 100, 1) if wall else None,
        waited_per_ms_run=round(waited / cpu, 2) if cpu else None,
        rss_mb_per_call=round((max(rss_open, rss_talked) - rss_before) / n, 2),
        failures=dict(Counter(c.failed[:120] for c in calls if c.failed).most_common(3)),
    )
    level.held = (
        level.failed == 0
        and level.jitter_p95_ms is not None
        and level.jitter_p95_ms < JITTER_GOAL_MS
        and (status is None or status == 503)
    )
    return level


# -- a client call's start -----------------------------------------------------------


@dataclass
class ClientStarts:
    starts: int
    build_cpu_ms_p50: float | None  # building the realtime graph (loop thread CPU)
    build_cpu_ms_max: float | None
    start_cpu_ms_p50: float | None  # build + pipeline start + session open (loop thread CPU)
    start_lag_p95_ms: float | None  # this process's loop lag while a call starts
    start_lag_max_ms: float | None
    idle_lag_p95_ms: float | None
    idle_lag_max_ms: float | None


async def client_starts(server: ServerProcess, n: int) -> ClientStarts:
    """voxpipe's own realtime call starting in this process, one at a time, N times.

    A call start is what blocks a process holding live calls: each start is timed
    on this process's loop thread (CPU), and a 2 ms timer's lateness meanwhile
    is what the live calls' audio would have felt.
    """
    import tempfile

    import soundfile as sf

    from voxpipe.call.state import CallState
    from voxpipe.pipelines.realtime import build_realtime_pipeline
    from voxpipe.pipelines.session import CallSession
    from voxpipe.transports.file import FileTransport

    url = f"ws://127.0.0.1:{server.port}/v1/realtime"
    lag = LoopLag()
    monitor = asyncio.create_task(lag.run())
    await asyncio.sleep(2.0)
    idle = lag.take()
    builds, starts, lags = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "quiet.wav"
        sf.write(str(wav), np.zeros(16_000 * 30, dtype="<i2"), 16_000, subtype="PCM_16")
        for i in range(n + 1):  # the first warms imports and caches, not counted
            transport = FileTransport(wav, paced=True)  # reads the file: not a live call's cost
            lag.take()
            began = time.thread_time()
            graph = build_realtime_pipeline(transport, server_url=url, api_key=KEY)
            built = time.thread_time()
            async with CallSession(graph, end_timeout_secs=3) as session:
                service: Any = graph.brain
                async with asyncio.timeout(60):
                    while service.machine.state is not CallState.LISTENING:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
                opened = time.thread_time()
                window = lag.take()
                await session.cancel()
            if i:
                builds.append((built - began) * 1000)
                starts.append((opened - began) * 1000)
                lags.extend(window)
    monitor.cancel()
    p = _common.percentile
    return ClientStarts(
        starts=n,
        build_cpu_ms_p50=p(builds, 50),
        build_cpu_ms_max=round(max(builds), 2) if builds else None,
        start_cpu_ms_p50=p(starts, 50),
        start_lag_p95_ms=p(lags, 95),
        start_lag_max_ms=round(max(lags), 1) if lags else None,
        idle_lag_p95_ms=p(idle, 95),
        idle_lag_max_ms=round(max(idle), 1) if idle else None,
    )


# -- report ------------------------------------------------------------------------


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return round(value / base, 2)


def report(
    levels: list[Level], max_sessions: int, idle: tuple[float | None, float | None]
) -> dict[str, Any]:
    base = levels[0]
    load = os.getloadavg()
    title = f"(load {load[0]:.1f} {load[1]:.1f}, {os.cpu_count()} cores)"
    _common.print_table(
        f"Calls on one embedded-server process: audio {title}",
        [
            "calls",
            "failed",
            "jitter p95 ms",
            "x 1 call",
            "jitter max ms",
            "first audio p95 ms",
            "start p95 ms",
            f"call {max_sessions + 1}",
            "held",
        ],
        [
            [
                lv.calls,
                lv.failed,
                lv.jitter_p95_ms,
                ratio(lv.jitter_p95_ms, base.jitter_p95_ms),
                lv.jitter_max_ms,
                lv.first_audio_p95_ms,
                lv.start_p95_ms,
                lv.admission_status,
                "yes" if lv.held else "no",
            ]
            for lv in levels
        ],
    )
    _common.print_table(
        f"Calls on one embedded-server process: the server {title}",
        [
            "calls",
            "loop CPU per start ms",
            "lag starting p95/max ms",
            "lag talking p95/max ms",
            "client lag p95 ms",
            "% core/call",
            "x 1 call",
            "server % core",
            "waited for a CPU, ms per ms run",
            "MB/call",
        ],
        [
            [
                lv.calls,
                lv.loop_cpu_per_start_ms,
                f"{lv.start_lag_p95_ms}/{lv.start_lag_max_ms}",
                f"{lv.talk_lag_p95_ms}/{lv.talk_lag_max_ms}",
                lv.client_lag_p95_ms,
                lv.cpu_pct_per_call,
                ratio(lv.cpu_pct_per_call, base.cpu_pct_per_call),
                lv.server_cpu_pct,
                lv.waited_per_ms_run,
                lv.rss_mb_per_call,
            ]
            for lv in levels
        ],
    )
    print(f"idle server loop lag p95/max: {idle[0]}/{idle[1]} ms (same run)")
    most = max((lv.calls for lv in levels if lv.held), default=0)
    print(
        f"held (jitter p95 < {JITTER_GOAL_MS} ms, no failure): up to {most} calls; "
        f"goal: 100 calls, starts blocking the loop < {START_BLOCK_GOAL_MS} ms"
    )
    return {
        "levels": [asdict(lv) for lv in levels],
        "baseline_calls": base.calls,
        "jitter_p95_ratio_to_baseline": {
            lv.calls: ratio(lv.jitter_p95_ms, base.jitter_p95_ms) for lv in levels
        },
        "cpu_per_call_ratio_to_baseline": {
            lv.calls: ratio(lv.cpu_pct_per_call, base.cpu_pct_per_call) for lv in levels
        },
        "most_calls_held": most,
        "max_sessions": max_sessions,
        "load_average": [round(x, 2) for x in load],
        "idle_loop_lag_p95_max_ms": list(idle),
        "goals": {
            "calls": 100,
            "jitter_p95_ms": JITTER_GOAL_MS,
            "start_block_ms": START_BLOCK_GOAL_MS,
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench(levels: tuple[int, ...], profile: str | None, starts: int) -> dict[str, Any]:
    results: list[Level] = []
    max_sessions = max(levels)
    server = ServerProcess(free_port(), max_sessions, profile)
    started: ClientStarts | None = None
    try:
        if starts:
            started = await client_starts(server, starts)
            print(f"  client call starts: {started}", flush=True)
        await run_level(server, 1, admission=False)  # warm-up: imports, VAD model, caches
        server.lag()
        cpu_at = server.loop_cpu_s
        await asyncio.sleep(3.0)
        quiet = server.lag()
        server.idle_loop_cpu_per_s = (server.loop_cpu_s - cpu_at) / 3.0
        idle = (_common.percentile(quiet, 95), round(max(quiet), 1) if quiet else None)
        for n in levels:
            level = await run_level(server, n, admission=n == max_sessions)
            results.append(level)
            print(
                f"  {n:>4} calls: failed {level.failed}, jitter p95 {level.jitter_p95_ms} ms, "
                f"loop lag at starts max {level.start_lag_max_ms} ms"
                + (f", failures {level.failures}" if level.failures else ""),
                flush=True,
            )
    finally:
        server.stop()
    data = report(results, max_sessions, idle)
    data["client_starts"] = asdict(started) if started else None
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-sessions", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="write the server process's cProfile stats here")
    parser.add_argument(
        "--client-starts",
        type=int,
        default=10,
        help="time this many voxpipe realtime call starts in this process (0: none)",
    )
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.max_sessions, args.profile))
        return 0
    levels = tuple(int(n) for n in args.levels.split(","))
    results = asyncio.run(bench(levels, args.profile, args.client_starts))
    path = _common.write_result("load", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
