"""Benchmark self-interruption (the voice cut-off loop) with the echo guard off and on, same run.

The caller is an aiortc peer on a speakerphone without echo cancellation:
what it plays comes back into its microphone at each ``--echo`` level and
delay (``-20:150``: 20 dB down, 150 ms late, on top of the loopback's own
round trip; ``tests/support/webrtc_peer.py``, ``EchoLine``). The server is a
real ``voxpipe serve`` on the embedded Realtime server (server VAD, Silero)
whose scripted brain speaks with the local voice (Piper), so the echo is
speech to the VAD.

(a) False barge-ins, per echo: one call with the guard off, one with it on.
    The caller asks ``--questions`` questions, each once the bot has been
    quiet for 2.5 s (at most ``--slot-s`` per question), and says nothing
    else. A false barge-in is the bot's reply cut while the caller had said
    nothing for 3 s. Per call: false barge-ins (total, median per question),
    seconds of bot speech the caller heard, on/off ratio, and the echo path
    the guard measured (coupling, delay).
(b) Real barge-ins: the caller asks, and once it has heard ``--after-ms`` of
    the answer talks over it at the bot's own level. Per call of
    ``--barge-ins``: how many cut the bot, and the median time from the
    caller's first word to the cut; no echo and no guard (the baseline), no
    echo with the guard, each echo with the guard, and the first echo with
    the guard barging in after only ``--early-ms`` (before the guard has
    measured the echo path). Ratio: reaction time against the baseline.
    (Without the guard, an echoing call is cut by its echo before any real
    barge-in, so that row is (a).)

Prints tables and writes benchmarks/results/echo.json (medians, totals, ratios, load).
Run: ``.venv/bin/python benchmarks/echo.py [--questions 2] [--barge-ins 3] [--echo -20:150 ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import QUESTIONS, median, print_table, speak, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from echo_calls import (  # noqa: E402
    REPLIES,
    bot_speaking,
    cuts,
    serving_a_voice,
    the_call,
    until,
    until_quiet,
)
from webrtc_peer import Caller, calling  # noqa: E402

from voxpipe.echo import EchoGuardConfig, Verdict  # noqa: E402
from voxpipe.engines import make_tts  # noqa: E402

RATE = 16_000
BARGE_IN = "Sorry, one more thing, could you say that again please?"
QUIET_MS = 2_500
OFF, ON = "off", "on"
Echo = tuple[float, int]  # level (dB) and delay (ms) of the echo line


def line(voice: Any, text: str, path: Path, lead_ms: int = 0) -> Path:
    pcm = bytes(RATE * 2 * lead_ms // 1000) + (speak(voice, text) if text else b"")
    sf.write(str(path), np.frombuffer(pcm, dtype="<i2"), RATE, subtype="PCM_16")
    return path


async def false_barge_ins(
    voice: Any, tmp: Path, guard: str, echo: Echo, questions: int, slot_s: float
) -> dict[str, Any]:
    config = EchoGuardConfig() if guard == ON else None
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    lines = [line(voice, text, tmp / f"q{i}.wav") for i, text in enumerate(asked)]
    silence = line(voice, "", tmp / "lead.wav", lead_ms=1000)
    echo_db, delay_ms = echo
    async with (
        serving_a_voice(voice, guard=config) as serve,
        calling(serve.url, silence, echo_db=echo_db, echo_delay_ms=delay_ms) as caller,
    ):
        await until(lambda: bool(serve.app.calls), 30)
        live = the_call(serve)
        rows = [await _one_question(live, caller, question, slot_s) for question in lines]
        counts, estimate = _verdicts(live), _estimate(live)
    return {
        "guard": guard,
        "echo_db": echo_db,
        "echo_delay_ms": delay_ms,
        "questions": rows,
        "false_barge_ins_total": sum(r["false_barge_ins"] for r in rows),
        "false_barge_ins_median": median([r["false_barge_ins"] for r in rows]),
        "bot_heard_s_median": median([r["bot_heard_s"] for r in rows]),
        "verdicts": counts,
        "estimate": estimate,
    }


async def _one_question(live: Any, caller: Caller, question: Path, slot_s: float) -> dict[str, Any]:
    """Ask, then say nothing until the bot has been quiet for a while (at most ``slot_s``)."""
    mic = caller.mic
    assert mic is not None
    before_cuts, before_heard = len(cuts(live, caller)), caller.heard.loud_ms()
    since = len(live.timeline.events)
    mic.say(question)
    await until(lambda: not mic.speaking, 30)
    with contextlib.suppress(TimeoutError):
        await until(lambda: _answered(live, since), 60)  # the reply began
        await until_quiet(live, QUIET_MS, slot_s)
    new = cuts(live, caller)[before_cuts:]
    return {
        "false_barge_ins": sum(1 for c in new if c.false),
        "bot_heard_s": round((caller.heard.loud_ms() - before_heard) / 1000, 2),
        "replies": _replies(live, since),
    }


async def real_barge_ins(
    voice: Any, tmp: Path, guard: str, echo: Echo | None, trials: int, after_ms: int
) -> dict[str, Any]:
    config = EchoGuardConfig() if guard == ON else None
    question = line(voice, QUESTIONS[0], tmp / "ask.wav")
    barge = line(voice, BARGE_IN, tmp / "barge.wav")
    silence = line(voice, "", tmp / "lead.wav", lead_ms=1000)
    reactions: list[float | None] = []
    echo_db, delay_ms = (None, 0) if echo is None else echo
    line_db = -math.inf if echo_db is None else echo_db  # a microphone that hears no echo
    async with (
        serving_a_voice(voice, guard=config, replies=[REPLIES[0]]) as serve,
        calling(serve.url, silence, echo_db=line_db, echo_delay_ms=delay_ms) as caller,
    ):
        await until(lambda: bool(serve.app.calls), 30)
        live = the_call(serve)
        for _ in range(trials):
            reactions.append(await _one_barge_in(live, caller, question, barge, after_ms))
            with contextlib.suppress(TimeoutError):
                await until_quiet(live, QUIET_MS, 60)
        estimate = _estimate(live)
    measured = [r for r in reactions if r is not None]
    return {
        "guard": guard,
        "echo_db": echo_db,
        "echo_delay_ms": None if echo is None else delay_ms,
        "barge_after_heard_ms": after_ms,
        "barge_ins": len(reactions),
        "cut": len(measured),
        "reaction_ms": reactions,
        "reaction_ms_median": median(measured),
        "estimate": estimate,
    }


async def _one_barge_in(
    live: Any, caller: Caller, question: Path, barge: Path, after_ms: int
) -> float | None:
    """Ask, talk over the answer once ``after_ms`` of it was heard; ms from the first word to
    the cut (None: no cut)."""
    mic = caller.mic
    assert mic is not None
    mic.say(question)
    await until(lambda: not mic.speaking, 30)
    await until(lambda: bot_speaking(live), 60)
    started = caller.heard.loud_ms()
    await until(lambda: caller.heard.loud_ms() - started >= after_ms, 30)
    before = len(cuts(live, caller))
    mic.say(barge)
    with contextlib.suppress(TimeoutError):
        await until(lambda: len(cuts(live, caller)) > before, 15)
    await until(lambda: not mic.speaking, 30)
    new = cuts(live, caller)[before:]
    onset = mic.said[-1].started_ms
    after = [c.at_ms - onset for c in new if c.at_ms >= onset]
    return round(after[0], 1) if after else None


def _answered(live: Any, since: int) -> bool:
    kinds = {e.kind.value for e in live.timeline.events[since:]}
    return "bot_started_speaking" in kinds


def _replies(live: Any, since: int) -> int:
    return sum(1 for e in live.timeline.events[since:] if e.kind.value == "response_created")


def _verdicts(live: Any) -> dict[str, int] | None:
    if live.echo_guard is None:
        return None
    counts: dict[Verdict, int] = live.echo_guard.guard.counts
    return {verdict.value: n for verdict, n in counts.items()}


def _estimate(live: Any) -> dict[str, Any] | None:
    """The echo path the guard measured (coupling dB, delay ms), or None without a guard."""
    if live.echo_guard is None:
        return None
    estimate = live.echo_guard.guard.estimate
    return {
        "coupling_db": round(estimate.coupling_db, 1),
        "measured": estimate.measured,
        "delay_ms": estimate.delay_ms,
    }


def parse_echo(text: str) -> Echo:
    """``-20:150``: echo 20 dB down, 150 ms late (on top of the network's round trip)."""
    level, delay = text.split(":")
    return float(level), int(delay)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    voice = make_tts()
    echoes = [parse_echo(e) for e in args.echo]
    loops: list[dict[str, Any]] = []
    barges: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        # The baseline: no echo, no guard; then the guard alone; same run.
        barges.append(await real_barge_ins(voice, tmp, OFF, None, args.barge_ins, args.after_ms))
        barges.append(await real_barge_ins(voice, tmp, ON, None, args.barge_ins, args.after_ms))
        for echo in echoes:
            off = await false_barge_ins(voice, tmp, OFF, echo, args.questions, args.slot_s)
            on = await false_barge_ins(voice, tmp, ON, echo, args.questions, args.slot_s)
            loops.append(
                {
                    "off": off,
                    "on": on,
                    "ratio_on_vs_off": _ratio(
                        on["false_barge_ins_total"], off["false_barge_ins_total"]
                    ),
                }
            )
            barges.append(await real_barge_ins(voice, tmp, ON, echo, args.barge_ins, args.after_ms))
        if args.early_ms:
            early = echoes[0]
            barges.append(
                await real_barge_ins(voice, tmp, ON, early, args.barge_ins, args.early_ms)
            )
    base = barges[0]["reaction_ms_median"]
    for row in barges:
        row["reaction_ratio_vs_baseline"] = _ratio(row["reaction_ms_median"], base)
    return {
        "questions_per_call": args.questions,
        "slot_s": args.slot_s,
        "self_interruption": loops,
        "real_barge_in": barges,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def report(data: dict[str, Any]) -> None:
    print_table(
        "False barge-ins per call (the caller silent after each question), guard off vs on",
        [
            "echo dB",
            "delay ms",
            "off: false",
            "off: per question (median)",
            "off: bot heard s (median)",
            "on: false",
            "on: bot heard s (median)",
            "on/off",
            "coupling dB / delay ms measured",
        ],
        [
            [
                row["off"]["echo_db"],
                row["off"]["echo_delay_ms"],
                row["off"]["false_barge_ins_total"],
                row["off"]["false_barge_ins_median"],
                row["off"]["bot_heard_s_median"],
                row["on"]["false_barge_ins_total"],
                row["on"]["bot_heard_s_median"],
                row["ratio_on_vs_off"],
                _estimate_text(row["on"]["estimate"]),
            ]
            for row in data["self_interruption"]
        ],
    )
    print_table(
        "Real barge-ins: the caller talks over the answer at the bot's level",
        [
            "echo dB",
            "delay ms",
            "guard",
            "after heard ms",
            "barge-ins",
            "bot cut",
            "first word -> cut ms (median)",
            "ratio vs no echo, no guard",
        ],
        [
            [
                "none" if r["echo_db"] is None else r["echo_db"],
                r["echo_delay_ms"],
                r["guard"],
                r["barge_after_heard_ms"],
                r["barge_ins"],
                r["cut"],
                r["reaction_ms_median"],
                r["reaction_ratio_vs_baseline"],
            ]
            for r in data["real_barge_in"]
        ],
    )


def _estimate_text(estimate: dict[str, Any] | None) -> str | None:
    if estimate is None:
        return None
    return f"{estimate['coupling_db']} / {estimate['delay_ms']}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2, help="questions per call")
    parser.add_argument("--barge-ins", type=int, default=3, help="barge-ins per call")
    parser.add_argument(
        "--echo",
        nargs="+",
        default=["-20:150", "-30:150", "-10:150", "-20:40", "-20:300"],
        help="echo levels and delays, dB:ms",
    )
    parser.add_argument("--after-ms", type=int, default=1000, help="barge in after this much")
    parser.add_argument(
        "--early-ms", type=int, default=300, help="and, at the first echo, this early (0: not)"
    )
    parser.add_argument("--slot-s", type=float, default=25.0, help="at most this long per question")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    report(result)
    print(f"wrote {write_result('echo', result)}")
