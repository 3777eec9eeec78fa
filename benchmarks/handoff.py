"""Benchmark agent handoffs on the realtime path, against a plain tool call in the same call.

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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _common import machine, median, percentile, print_table, speak, write_result
from pipecat.services.llm_service import FunctionCallParams

from voxpipe.agents import parse_agents
from voxpipe.call.state import CallState, StateChanged
from voxpipe.engines import shared_tts
from voxpipe.handoff import bounded_messages
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import RealtimeService
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
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


async def get_balance(params: FunctionCallParams) -> None:
    """The caller's balance."""
    await params.result_callback({"balance_usd": 42})


def caller(voice: Any, path: Path) -> Path:
    rate = 16_000
    silence = np.zeros(rate * 6, dtype="<i2").tobytes()
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


async def main(calls: int) -> None:
    voice = await shared_tts()
    recording = caller(voice, Path(tempfile.mkdtemp(prefix="voxpipe-handoff-")) / "caller.wav")
    loads, tool, handoff = [], [], []
    for _ in range(calls):
        loads.append(machine()["load_1m"])
        measured = await one_call(recording)
        if "tool" in measured:
            tool.append(measured["tool"])
        if "handoff" in measured:
            handoff.append(measured["handoff"])
    sizes = [context_sizes(turns) for turns in (4, 20, 100, 400)]
    ratio = None
    if median(tool) and median(handoff):
        ratio = round((median(handoff) or 0) / (median(tool) or 1), 2)
    rows = [
        ["tool call -> next first audio", len(tool), median(tool), percentile(tool, 95), "1.00"],
        [
            "handoff -> new agent's first audio",
            len(handoff),
            median(handoff),
            percentile(handoff, 95),
            ratio,
        ],
    ]
    print_table(
        f"Realtime handoff gap (ms), load {min(loads)}-{max(loads)}",
        ["what", "n", "p50", "p95", "x tool"],
        rows,
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
    path = write_result(
        "handoff",
        {
            "calls": calls,
            "load_1m": loads,
            "tool_ms": tool,
            "handoff_ms": handoff,
            "ratio_p50": ratio,
            "context": sizes,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5)
    asyncio.run(main(parser.parse_args().calls))
