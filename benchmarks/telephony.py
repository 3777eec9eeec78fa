"""Benchmark phone calls on voxpipe serve: truncation, the phone band, latency and calls held.

Every call runs through the real telephony path on loopback: aiohttp serving
the Twilio routes, the voxpipe graph, the embedded Realtime server; the far
end is the fake Twilio of the tests (tests/support/fake_twilio.py: Twilio's
buffer, marks and clear as documented, a one-way latency each way), which
records what it played.

(a) Truncation error against what the fake played of the cut reply, at
    one-way latencies of 0, 60 and 150 ms, with the scripted bot's audio
    arriving at 1.2x and 2x real time: the position Twilio's marks gave
    (default); the estimate at the decision (the same call with Twilio
    returning no marks: the sent position corrected by the round trip); the
    output's own paced position when the clear went out; and the naive sent
    position (all audio the bot had delivered, what a transport that
    forwards the bot's burst unpaced would count).
(b) Word error rate at 8 kHz mu-law against 16 kHz: spoken lines (numbers,
    names, addresses) sent by the fake as a phone network carries them, heard
    by the embedded server's local Whisper (tiny.en) through the whole phone
    path; the same lines at 16 kHz straight into the same engine, in the same
    run, are the baseline. Numbers are scored digit by digit. Ratio = what
    the phone band costs.
(c) Caller's end of speech -> first bot audio the fake played, over the phone
    path; the same recording through the file transport (sound-card pacing)
    in the same run, interleaved, as the baseline. Ratio = what the phone
    path adds.
(d) Concurrent phone calls one ``voxpipe serve --twilio`` process (a process of
    its own; the fake callers run here) holds in real time with the scripted
    brain: its CPU per call: answered calls, the longest gap in any answer's
    playback at the fake (the buffer running dry: media late), p95 over calls.

Prints tables and writes benchmarks/results/telephony.json (medians, ratios, load).
Run: ``.venv/bin/python benchmarks/telephony.py [--turns 4] [--calls 1,4,8] [--voice piper]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf
from _common import QUESTIONS, RESULTS, median, percentile, print_table, speak, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from fake_twilio import FakeTwilio, mulaw_recording  # noqa: E402
from phone_calls import calling, heard_truncation, serving, the_call, until  # noqa: E402

from voxpipe.engines import make_tts, shared_stt  # noqa: E402
from voxpipe.evaluation import word_error_rate  # noqa: E402
from voxpipe.pipelines.session import CallSession  # noqa: E402
from voxpipe.pipelines.simulated_call import Mode, build_call_graph, embedded_realtime  # noqa: E402
from voxpipe.timeline import EventKind  # noqa: E402
from voxpipe.transports.file import FileTransport  # noqa: E402
from voxpipe.transports.realtime_server import ScriptedBrain  # noqa: E402
from voxpipe.transports.telephony.routes import TwilioConfig  # noqa: E402

RATE = 16_000
LOUD = 0.02
ANSWER = "We open at nine on Saturday morning and close at one in the afternoon."
LONG = (
    "Our pharmacy opens at nine in the morning on Saturday and closes at one in the "
    "afternoon, and on Sunday we are closed all day, but the pharmacy on Market Street "
    "stays open until six in the evening every single day of the week."
)
LINES = [
    "Do you have any tables available for four people tonight?",
    "My account number is 4 7 2 9 1 6.",
    "Please send the invoice to 221 Baker Street, London.",
    "I would like to book an appointment with Doctor Patel on Tuesday.",
    "The package was delivered to 1600 Pennsylvania Avenue.",
    "Can you transfer me to Sarah in the billing department?",
    "My flight leaves at 7:45 in the morning from Chicago.",
    "I need to cancel my order, it was number 38 52.",
    "What time does the pharmacy on Maple Road close?",
    "My name is Jonathan Fischer and I live in Seattle.",
    "The total came to 129 dollars and 50 cents.",
    "Could you spell that for me, please?",
    "I am calling about the water leak in apartment 12 B.",
    "We moved to 45 Oak Lane, Springfield, last March.",
    "My date of birth is the third of September 1985.",
    "Is the store open on Sunday afternoon?",
    "I want to change my delivery address to 9 Elm Court.",
    "Please call me back at 555 0192.",
    "Maria Gonzalez recommended your clinic to me.",
    "The reservation is under the name Thompson for 8 pm.",
    "My internet has been down since yesterday evening.",
    "How much does a ticket to Boston cost?",
    "I have two children, Emma and Lucas, aged 6 and 9.",
    "Our office is on the fifth floor of 300 Market Street.",
]


def recording(voice: Any, parts: list[str | int], path: Path) -> list[tuple[int, int]]:
    """Write spoken lines and silences (ms) at 16 kHz; the (start, end) ms of each line."""
    pcm, spans, at = bytearray(), [], 0
    for part in parts:
        chunk = bytes(RATE * 2 * part // 1000) if isinstance(part, int) else speak(voice, part)
        if not isinstance(part, int):
            spans.append((at, at + len(chunk) * 1000 // (RATE * 2)))
        pcm += chunk
        at += len(chunk) * 1000 // (RATE * 2)
    sf.write(str(path), np.frombuffer(bytes(pcm), dtype="<i2"), RATE, subtype="PCM_16")
    return spans


def loud(payload_pcm: np.ndarray) -> bool:
    return bool(payload_pcm.size) and float(np.sqrt(np.mean((payload_pcm / 32768.0) ** 2))) > LOUD


# -- (a) truncation ---------------------------------------------------------------------


class PacedPosition:
    """What the phone output had sent of each reply, paced at real time, frozen at its cut."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.sent: dict[str, float] = {}
        self.at_cut: dict[str, float] = {}

    def utterance_began(self, key: str, now_ms: float) -> None:
        self.key = key
        self.sent.setdefault(key, 0.0)

    def chunk_started(self, duration_ms: float, now_ms: float) -> None:
        if self.key is not None:
            self.sent[self.key] += duration_ms

    def playback_cut(self, now_ms: float) -> None:
        if self.key is not None and self.key not in self.at_cut:
            self.at_cut[self.key] = self.sent[self.key]

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        return

    def reports_cut_positions(self, within_ms: float) -> None:
        return

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        return


async def truncation(voice: Any, tmp: Path, latency_ms: float, pace: float) -> dict[str, Any]:
    path = tmp / "cut.wav"
    recording(
        voice,
        [1000, "What time do you open on Saturday?", 3000, "Sorry, one more thing.", 2500],
        path,
    )
    row: dict[str, Any] = {"latency_ms": latency_ms, "pace": pace}
    for marks in (True, False):
        async with serving(
            tmp, brain=ScriptedBrain([LONG, "Sure."], pace=pace), twilio=TwilioConfig()
        ) as (base, serve):
            twilio = FakeTwilio(mulaw_recording(path), latency_ms=latency_ms, returns_marks=marks)
            stream_url, parameters = await twilio.answer(base)
            async with calling(twilio, stream_url, parameters):
                await until(lambda: serve.calls)
                call = the_call(serve)
                paced = PacedPosition()
                call.transport.output().report_playback_to(paced)  # type: ignore[attr-defined]
                cut, _ = await heard_truncation(call, twilio, 30)
                heard = twilio.heard_ms(cut.item_id)
        if marks:
            row["heard_ms"] = round(heard, 1)
            row["marks_error_ms"] = round(abs(cut.audio_end_ms - heard), 1)
            paced_ms = paced.at_cut.get(cut.item_id)
            row["paced_error_ms"] = None if paced_ms is None else round(abs(paced_ms - heard), 1)
            row["naive_error_ms"] = round(abs(cut.received_ms - heard), 1)
        else:
            row["estimate_error_ms"] = round(abs(cut.audio_end_ms - heard), 1)
    return row


# -- (b) the phone band -------------------------------------------------------------------


class HearingBrain(ScriptedBrain):
    """Answers "Okay." and hears the caller with the local Whisper."""

    def __init__(self, stt: Any) -> None:
        super().__init__(["Okay."], pace=2.0)
        self.stt = stt

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        text: str = await asyncio.to_thread(self.stt.transcribe, pcm16, sample_rate)
        return text


async def phone_band(voice: Any, tmp: Path) -> dict[str, Any]:
    stt = await shared_stt()
    parts: list[str | int] = [1000]
    for line in LINES:
        parts += [line, 1800]
    path = tmp / "lines.wav"
    spans = recording(voice, [*parts, 1500], path)
    pcm, _ = sf.read(str(path), dtype="int16")
    wideband = [
        stt.transcribe(pcm[RATE * a // 1000 : RATE * b // 1000].tobytes(), RATE) for a, b in spans
    ]
    async with serving(tmp, brain=HearingBrain(stt), twilio=TwilioConfig()) as (base, serve):
        twilio = FakeTwilio(mulaw_recording(path))
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            timeline = the_call(serve).timeline
            end_ms = spans[-1][1] + 2500

            def transcribed() -> bool:
                # Every line is a turn of its own (the pauses between them end turns);
                # the server's VAD may run behind the fake's clock on a loaded machine.
                stopped = timeline.of(EventKind.USER_STOPPED_SPEAKING)
                heard = timeline.of(EventKind.USER_TRANSCRIPT)
                return len(stopped) >= len(LINES) and len(heard) >= len(stopped)

            await until(lambda: twilio.now_ms() > twilio.caller_sent_ms(end_ms), 300)
            await until(transcribed, 120)
            phone = [str(e.data.get("text", "")) for e in timeline.of(EventKind.USER_TRANSCRIPT)]
    said = " ".join(LINES)
    wide_wer = word_error_rate(said, " ".join(wideband), digits=True)
    phone_wer = word_error_rate(said, " ".join(phone), digits=True)
    per_line = [word_error_rate(s, h, digits=True) for s, h in zip(LINES, wideband, strict=True)]
    return {
        "lines": len(LINES),
        "wer_16k": round(wide_wer, 4),
        "wer_8k_mulaw": round(phone_wer, 4),
        "ratio_8k_vs_16k": round(phone_wer / wide_wer, 2) if wide_wer else None,
        "wer_16k_per_line_median": median(per_line),
        "heard_16k": wideband,
        "heard_8k": phone,
    }


# -- (c) end of speech to first bot audio ----------------------------------------------------


async def phone_turn(voice: Any, question: str, tmp: Path) -> float | None:
    path = tmp / "phone.wav"
    spans = recording(voice, [1000, question, 4000], path)
    async with serving(tmp, brain=ScriptedBrain([ANSWER], pace=2.0), twilio=TwilioConfig()) as (
        base,
        serve,
    ):
        twilio = FakeTwilio(mulaw_recording(path))
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            await until(lambda: twilio.loud_ms() > 300, 30)
            segments = list(twilio.segments)
            speech_end = twilio.caller_sent_ms(spans[0][1])
    for segment in segments:
        if loud(np.frombuffer(twilio.law.decode(segment.payload), dtype="<i2")):
            return segment.start_ms - speech_end
    return None


async def file_turn(voice: Any, question: str, tmp: Path) -> float | None:
    path = tmp / "file.wav"
    spans = recording(voice, [1000, question, 4000], path)
    async with embedded_realtime(Mode.REALTIME, None, None, ScriptedBrain([ANSWER], pace=2.0)) as (
        url,
        key,
    ):
        transport = FileTransport(path, paced=True)
        graph = build_call_graph(transport, Mode.REALTIME, server_url=url, api_key=key)
        async with CallSession(graph, end_timeout_secs=2):
            deadline = time.monotonic() + 30
            while not transport.written and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    if not transport.written:
        return None
    return transport.written[0].at_ms - (transport.input_started_ms + spans[0][1])


# -- (d) concurrent calls -----------------------------------------------------------------------


async def held(calls: int, voice: Any, tmp: Path) -> dict[str, Any]:
    """``calls`` phone calls at once on a ``voxpipe serve --twilio`` process of its own."""
    path = tmp / "held.wav"
    recording(voice, [1000, "Tell me about your opening hours.", 12000], path)
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
        "--twilio",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _until_up(base)
        fakes = [FakeTwilio(mulaw_recording(path), call_sid=f"CA{i:032d}") for i in range(calls)]
        cpu_before, started = _cpu_s(server.pid), time.monotonic()
        answers = [await fake.answer(base) for fake in fakes]
        tasks = [
            asyncio.create_task(fake.run(url, params))
            for fake, (url, params) in zip(fakes, answers, strict=True)
        ]
        await asyncio.sleep(14)
        wall, cpu = time.monotonic() - started, _cpu_s(server.pid) - cpu_before
        gaps = [_gaps(fake) for fake in fakes]  # before hanging up, which ends playback
        answered = sum(1 for fake in fakes if fake.loud_ms() > 1000)
        for fake in fakes:
            await fake.drop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
    longest = [g[0] for g in gaps if g is not None]
    late = [g[1] for g in gaps if g is not None]
    return {
        "calls": calls,
        "answered": answered,
        "gap_p95_ms": percentile(longest, 95),
        "gap_median_ms": median(longest),
        "late_percent_median": median(late),
        "cpu_percent_of_a_core_per_call": round(100 * cpu / wall / calls, 1),
    }


def _gaps(fake: FakeTwilio) -> tuple[float, float] | None:
    """The longest time the fake's buffer ran dry inside one reply (media arriving late),
    and all of them as a percentage of the reply's playing time."""
    segments = [s for s in fake.segments if s.key is not None]
    if len(segments) < 10:
        return None
    longest = total = 0.0
    for before, after in itertools.pairwise(segments):
        if before.key == after.key:
            gap = max(0.0, after.start_ms - before.end_ms)
            longest, total = max(longest, gap), total + gap
    playing = sum(s.end_ms - s.start_ms for s in segments)
    return round(longest, 1), round(100 * total / max(1.0, playing), 1)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# -- the run --------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    voice = make_tts(args.voice)
    only = set(args.only.split(",")) if args.only else {"cuts", "band", "first", "held"}
    data: dict[str, Any] = {"voice": args.voice}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "cuts" in only:
            cuts = [
                await truncation(voice, tmp, latency, pace)
                for latency in (0, 60, 150)
                for pace in (1.2, 2.0)
            ]
            data["truncation"] = {
                "rows": cuts,
                **{
                    f"{kind}_error_ms_median": median([c[f"{kind}_error_ms"] for c in cuts])
                    for kind in ("marks", "estimate", "paced", "naive")
                },
            }
        if "band" in only:
            data["phone_band"] = await phone_band(voice, tmp)
        if "first" in only:
            phone, file = [], []
            for i in range(args.turns):  # interleaved, so load drifts hit both alike
                question = QUESTIONS[i % len(QUESTIONS)]
                phone.append(await phone_turn(voice, question, tmp))
                file.append(await file_turn(voice, question, tmp))
            data["first_audio_ms"] = {
                "phone": {"median": median(phone), "p95": percentile(phone, 95), "runs": phone},
                "file": {"median": median(file), "p95": percentile(file, 95), "runs": file},
                "ratio_phone_vs_file": _ratio(median(phone), median(file)),
            }
        if "held" in only:
            data["held"] = [await held(n, voice, tmp) for n in args.calls]
    return data


def _merged(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """A partial run (``--only``) updates its sections of the last full run's JSON."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return result
    previous = json.loads(path.read_text())
    previous.pop("machine", None)
    return {**previous, **result}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def report(data: dict[str, Any]) -> None:
    if "truncation" in data:
        _report_cuts(data["truncation"])
    if "phone_band" in data:
        _report_band(data["phone_band"], data["voice"])
    if "first_audio_ms" in data:
        _report_first(data["first_audio_ms"])
    if "held" in data:
        _report_held(data["held"])


def _report_cuts(cut: dict[str, Any]) -> None:
    print_table(
        "Truncation error against what the fake Twilio played (ms)",
        [
            "one-way ms",
            "bot pace",
            "heard",
            "marks",
            "estimate (no marks)",
            "paced sent",
            "naive sent",
        ],
        [
            [
                r["latency_ms"],
                f"{r['pace']}x",
                r["heard_ms"],
                r["marks_error_ms"],
                r["estimate_error_ms"],
                r["paced_error_ms"],
                r["naive_error_ms"],
            ]
            for r in cut["rows"]
        ]
        + [
            [
                "median",
                "",
                "",
                cut["marks_error_ms_median"],
                cut["estimate_error_ms_median"],
                cut["paced_error_ms_median"],
                cut["naive_error_ms_median"],
            ]
        ],
    )


def _report_band(band: dict[str, Any], voice: str) -> None:
    print_table(
        f"Word error rate, {band['lines']} lines ({voice} voice, Whisper tiny.en, digit by digit)",
        ["path", "WER", "ratio vs 16 kHz"],
        [
            ["16 kHz straight into Whisper", band["wer_16k"], 1.0],
            ["8 kHz mu-law through the phone path", band["wer_8k_mulaw"], band["ratio_8k_vs_16k"]],
        ],
    )


def _report_first(first: dict[str, Any]) -> None:
    print_table(
        "Caller's end of speech -> first bot audio (ms), scripted brain, same run",
        ["path", "median", "p95", "ratio vs file"],
        [
            [
                "phone (fake Twilio, 0 ms latency)",
                first["phone"]["median"],
                first["phone"]["p95"],
                first["ratio_phone_vs_file"],
            ],
            ["file transport", first["file"]["median"], first["file"]["p95"], 1.0],
        ],
    )


def _report_held(rows: list[dict[str, Any]]) -> None:
    print_table(
        "Concurrent phone calls on one voxpipe serve --twilio process",
        [
            "calls",
            "answered",
            "longest gap p95 ms",
            "longest gap median ms",
            "late % of reply (median)",
            "CPU % of a core per call",
        ],
        [
            [
                r["calls"],
                r["answered"],
                r["gap_p95_ms"],
                r["gap_median_ms"],
                r["late_percent_median"],
                r["cpu_percent_of_a_core_per_call"],
            ]
            for r in rows
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--calls", type=lambda s: [int(n) for n in s.split(",")], default=[1, 4, 8])
    parser.add_argument("--voice", default="piper", choices=["piper", "espeak"])
    parser.add_argument(
        "--only", default="", help="comma list of: cuts,band,first,held (default all)"
    )
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    report(result)
    name = "telephony" if arguments.voice == "piper" else f"telephony_{arguments.voice}"
    print(f"wrote {write_result(name, _merged(name, result) if arguments.only else result)}")
