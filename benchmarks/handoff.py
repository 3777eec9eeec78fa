"""Benchmark agent handoffs on both paths, against a plain tool call and turn in the same call.

    python benchmarks/handoff.py [--calls 5]

Each call: the file transport (paced) plays a caller with two lines into the
realtime graph built from a triage/billing agent file; voxpipe's server
answers with :class:`ScriptedAgentsBrain` (the local voice). Line 1 makes
triage call ``get_balance`` (an ordinary tool); line 2 makes it call
``transfer_to_billing``. Both are timed on the call's clock from the tool call
arriving to the next response's first audio:

- ``tool``: function call -> tool output -> ``response.create`` -> first audio
  (the baseline: one round trip for a result);
- ``handoff``: function call -> ``session.update`` -> ``session.updated`` ->
  output -> ``response.create`` -> first audio of the new agent.

So the ratio is what the handoff's extra ``session.update`` round trip costs.

Chained path, the same conversation: local Whisper hears the caller, a
loopback stand-in for OpenAI's streamed chat (the paid remote provider)
answers with the same scripts as the agent its system message names, the
local TTS speaks. Timed as the caller hears it, from the frames the output
transport passes on once their audio has played (monotonic clock):

- ``handoff``: the end of the transfer line's audio -> the new agent's first
  audio (the new agent's request runs once the transfer's result is in the
  context, then its first piece is synthesised);
- ``tool``: the end of "Let me look that up." -> the first audio of the
  answer with the tool's result (the same two steps, without the swap);
- ``plain turn``: the caller's end of speech (VAD) -> the bot's first audio.

Calls alternate between the paths.
Context carried: conversations of 4 to 400 turns (caller and agent lines
alternating) handed over with the bounded context (the extractive summary,
capped at 2,000 characters, + the last ``keep_turns`` turns) against the
whole history, in estimated tokens (characters / 4). The summary is the
turns themselves, cut, so it saves nothing on a short call: the bound shows
on long ones.
Figures: p50/p95 over the calls, the ratio of medians, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import machine, median, percentile, print_table, speak, write_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from fake_openai_agents import running_agents_chat
from pipecat.frames.frames import (
    AggregatedTextFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    TTSTextFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import FunctionCallParams

from voxpipe.agents import parse_agents
from voxpipe.call.state import CallState, StateChanged
from voxpipe.engines import shared_tts
from voxpipe.handoff import bounded_messages
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import (
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.realtime_server.agent_brain import (
    AgentLine,
    AgentScript,
    ScriptedAgentsBrain,
)

KEY = "bench-key"
TRIAGE = "You are Acme's triage agent. Find out what the caller needs."
BILLING = "You are Acme's billing agent. Answer billing questions."
AGENTS = parse_agents(
    {
        "start": "triage",
        "agents": {
            "triage": {"instructions": TRIAGE, "tools": ["get_balance"], "handoffs": ["billing"]},
            "billing": {"instructions": BILLING, "handoffs": ["triage"]},
        },
    },
    "bench",
)
SCRIPTS = {
    "triage": AgentScript(
        TRIAGE,
        [
            AgentLine("Let me look that up.", "get_balance"),
            AgentLine("Your balance is forty two dollars."),
            AgentLine("Let me transfer you to billing.", "transfer_to_billing", {"reason": "bill"}),
        ],
    ),
    "billing": AgentScript(BILLING, [AgentLine("Billing here, how can I help?")]),
}
LINES = ["What is my balance?", "I want to dispute a charge on my bill."]
# A word of each bot line, in the order the caller hears them (the chained path's markers).
LOOKUP, BALANCE, TRANSFER, NEW_AGENT = "look", "forty", "transfer", "billing here"


async def get_balance(params: FunctionCallParams) -> None:
    """The caller's balance."""
    await params.result_callback({"balance_usd": 42})


def caller(voice: Any, path: Path) -> Path:
    rate = 16_000
    silence = np.zeros(rate * 9, dtype="<i2").tobytes()  # room for a chained answer
    pcm = np.zeros(rate // 2, dtype="<i2").tobytes()
    for line in LINES:
        pcm += speak(voice, line, rate) + silence
    sf.write(str(path), np.frombuffer(pcm + silence, dtype="<i2"), rate, subtype="PCM_16")
    return path


def gaps(events: list[Any]) -> dict[str, float]:
    """Tool call / handoff start -> the next response's first audio, on the call's clock."""
    out: dict[str, float] = {}
    started: tuple[str, float] | None = None
    for event in events:
        if not isinstance(event, StateChanged):
            continue
        if event.current is CallState.CALLING_TOOL:
            started = ("tool", event.at_ms)
        elif event.current is CallState.HANDING_OFF:
            started = ("handoff", event.at_ms)
        elif event.current is CallState.SPEAKING and started is not None:
            kind, at = started
            out.setdefault(kind, event.at_ms - at)
            started = None
    return out


async def one_call(recording: Path) -> dict[str, float]:
    assert AGENTS is not None
    brain = ScriptedAgentsBrain(SCRIPTS, voice=await shared_tts(), pace=1.5)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=srv.realtime_url, api_key=KEY, tools=[get_balance], agents=AGENTS
        )
        service = graph.brain
        assert isinstance(service, RealtimeService)
        async with CallSession(graph) as call:
            await call.run_until_input_ends()
        return gaps(service.events)


class Heard(BaseObserver):
    """When the caller heard each bot line begin and end, and stopped speaking (monotonic ms).

    From what the output transport passes on: it emits a line's text as the
    line comes up for playback, ``BotStartedSpeakingFrame`` with its first
    audio played and ``BotStoppedSpeakingFrame`` once no audio follows. A line
    whose audio follows the previous one with no pause begins where it ends.
    """

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output
        self.began: dict[str, float] = {}  # a line's text -> its first audio heard
        self.ended: dict[str, float] = {}  # a line's text -> its last audio heard
        self.caller_stopped: list[float] = []
        self._line: str | None = None  # the line playing or coming up
        self._speaking = False

    async def on_push_frame(self, data: FramePushed) -> None:
        frame, now = data.frame, time.monotonic() * 1000
        if isinstance(frame, VADUserStoppedSpeakingFrame) and data.first_push:
            self.caller_stopped.append(now)
        if data.source is not self.output or data.direction is not FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, AggregatedTextFrame) and not isinstance(frame, TTSTextFrame):
            if self._speaking and self._line is not None:  # back to back: no pause heard
                self.ended.setdefault(self._line, now)
                self.began.setdefault(frame.text, now)
            self._line = frame.text
        elif isinstance(frame, BotStartedSpeakingFrame) and self._line is not None:
            self._speaking = True
            self.began.setdefault(self._line, now)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            if self._line is not None:
                self.ended.setdefault(self._line, now)

    def line(self, word: str) -> str | None:
        """The first line heard with ``word`` in it."""
        return next((text for text in self.began if word in text.lower()), None)

    def gaps(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, ended, began in (("tool", LOOKUP, BALANCE), ("handoff", TRANSFER, NEW_AGENT)):
            before, after = self.line(ended), self.line(began)
            if before in self.ended and after is not None:
                out[kind] = round(self.began[after] - self.ended[before], 1)
        lookup = self.line(LOOKUP)
        if self.caller_stopped and lookup is not None:
            out["plain"] = round(self.began[lookup] - self.caller_stopped[0], 1)
        return out


async def one_chained_call(recording: Path) -> dict[str, float]:
    assert AGENTS is not None
    async with running_agents_chat(SCRIPTS) as chat:
        transport = FileTransport(recording, paced=True)
        graph = build_chained_pipeline(
            transport, llm=chat.llm_service(), tools=[get_balance], agents=AGENTS, openai_api_key=""
        )
        heard = Heard(transport.output())
        async with CallSession(graph, observers=[heard]) as call:
            await call.run_until_input_ends()
        return heard.gaps()


def context_sizes(turns: int, keep_turns: int = 2) -> dict[str, int]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": TRIAGE}]
    for n in range(turns // 2):
        messages.append(
            {
                "role": "user",
                "content": f"Here is my question number {n}, about my account and a recent charge.",
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": f"Thanks, I noted question {n}; let me check that for you.",
            }
        )
    everything = [{"role": "system", "content": BILLING}, *messages[1:]]
    bounded = bounded_messages(messages, BILLING, keep_turns)
    full_chars = sum(len(str(m["content"])) for m in everything)
    bounded_chars = sum(len(str(m["content"])) for m in bounded)
    return {
        "turns": turns,
        "full_items": len(everything),
        "bounded_items": len(bounded),
        "full_chars": full_chars,
        "bounded_chars": bounded_chars,
    }


def _row(what: str, values: list[float], base: list[float]) -> list[Any]:
    ratio = None
    if median(values) and median(base):
        ratio = round((median(values) or 0) / (median(base) or 1), 2)
    return [what, len(values), median(values), percentile(values, 95), ratio]


async def main(calls: int) -> None:
    voice = await shared_tts()
    recording = caller(voice, Path(tempfile.mkdtemp(prefix="voxpipe-handoff-")) / "caller.wav")
    loads: list[float] = []
    realtime: dict[str, list[float]] = {"tool": [], "handoff": []}
    chained: dict[str, list[float]] = {"tool": [], "handoff": [], "plain": []}
    for _ in range(calls):  # the paths alternate, so both see the same load
        for measure, into in ((one_call, realtime), (one_chained_call, chained)):
            loads.append(machine()["load_1m"])
            measured = await measure(recording)
            for kind, values in into.items():
                if kind in measured:
                    values.append(measured[kind])
    sizes = [context_sizes(turns) for turns in (4, 20, 100, 400)]
    print_table(
        f"Realtime handoff gap (ms), load {min(loads)}-{max(loads)}",
        ["what", "n", "p50", "p95", "x tool"],
        [
            _row("tool call -> next first audio", realtime["tool"], realtime["tool"]),
            _row("handoff -> new agent's first audio", realtime["handoff"], realtime["tool"]),
        ],
    )
    print_table(
        f"Chained handoff gap as heard (ms), load {min(loads)}-{max(loads)}",
        ["what", "n", "p50", "p95", "x tool"],
        [
            _row(
                "caller's end (VAD) -> first audio (plain turn)", chained["plain"], chained["tool"]
            ),
            _row(
                "end of line before a tool -> answer's first audio",
                chained["tool"],
                chained["tool"],
            ),
            _row(
                "end of transfer line -> new agent's first audio",
                chained["handoff"],
                chained["tool"],
            ),
        ],
    )
    print_table(
        "Context the new agent starts from (keep_turns=2; ~tokens = chars / 4)",
        ["turns", "items all/bounded", "~tokens all", "~tokens bounded", "x all"],
        [
            [
                size["turns"],
                f"{size['full_items']}/{size['bounded_items']}",
                size["full_chars"] // 4,
                size["bounded_chars"] // 4,
                round(size["bounded_chars"] / size["full_chars"], 2),
            ]
            for size in sizes
        ],
    )
    ratio = _row("", realtime["handoff"], realtime["tool"])[4]
    path = write_result(
        "handoff",
        {
            "calls": calls,
            "load_1m": loads,
            "tool_ms": realtime["tool"],
            "handoff_ms": realtime["handoff"],
            "ratio_p50": ratio,
            "chained": {
                "plain_turn_ms": chained["plain"],
                "tool_gap_ms": chained["tool"],
                "handoff_gap_ms": chained["handoff"],
                "handoff_x_tool_p50": _row("", chained["handoff"], chained["tool"])[4],
                "handoff_x_plain_p50": _row("", chained["handoff"], chained["plain"])[4],
            },
            "context": sizes,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5)
    asyncio.run(main(parser.parse_args().calls))
