"""Two agents on one call: triage hands the caller to billing, offline, on either path.

    python examples/triage_billing.py [OUT_DIR] [--input CALLER.wav] [--mode realtime|chained]

The agents are ``examples/triage_billing.toml``. ``--mode realtime`` (the
default) runs the realtime graph against voxpipe's own Realtime server in
process; its scripted brain answers as whichever agent the session is set up
as (the handoff's ``session.update`` decides who speaks, as with a real
model), in the local voice. ``--mode chained`` runs local Whisper -> the local
LLM -> local TTS; there the small local model decides whether to call
``transfer_to_billing`` (it usually does when the caller mentions a bill). With
no ``--input`` the caller is synthesised: a name, a pause, a billing question.
Prints each handoff and writes OUT_DIR/handoffs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from common import DEMO_CALLER, parse_args, save_call
from pipecat.frames.frames import Frame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.services.llm_service import FunctionCallParams

from voxpipe import CallSession, FileTransport, ServerConfig, running_realtime_server
from voxpipe.call.events import HandoffApplied, HandoffStarted, TransferRefused
from voxpipe.engines import shared_tts
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.guardrails.config import load_agent_file
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.transports.realtime_server.agent_brain import (
    AgentLine,
    AgentScript,
    ScriptedAgentsBrain,
)

AGENT_FILE = Path(__file__).with_name("triage_billing.toml")
SERVER_KEY = "voxpipe-example"
CALLER_LINES = ["Hello, my name is John Smith.", "I have a question about my bill."]
# The realtime server's script, per agent: what a model would say in each response.
LINES = {
    "triage": [
        AgentLine("Hi John, thanks for calling Acme. What can I do for you?"),
        AgentLine("Let me put you through to billing.", "transfer_to_billing", {"reason": "bill"}),
    ],
    "billing": [AgentLine("Billing here. Your balance is forty two dollars, due on Friday.")],
}


async def get_balance(params: FunctionCallParams) -> None:
    """The caller's account balance."""
    await params.result_callback({"balance_usd": 42, "due": "Friday"})


class Handoffs(BaseObserver):
    """Prints and keeps the call's handoff events (both paths push them as frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        frame: Frame = data.frame
        if not data.first_push or not isinstance(frame, RealtimeCallEventFrame):
            return
        event = frame.event
        if isinstance(event, HandoffStarted | HandoffApplied | TransferRefused):
            self.events.append({"event": type(event).__name__, **dataclasses.asdict(event)})
            if isinstance(event, HandoffStarted):
                print(
                    f"handoff: {event.previous} -> {event.current} ({event.reason or 'no reason'})"
                )


async def synthesise_caller(path: Path) -> Path:
    voice = await shared_tts()
    rate = voice.sample_rate
    pieces = [np.zeros(rate, dtype=np.int16)]
    for line in CALLER_LINES:
        pcm = b"".join(await asyncio.to_thread(lambda text=line: list(voice.synthesize(text))))
        pieces += [np.frombuffer(pcm, dtype=np.int16), np.zeros(rate * 5, dtype=np.int16)]
    pieces.append(np.zeros(rate * 8, dtype=np.int16))
    sf.write(str(path), np.concatenate(pieces), rate, subtype="PCM_16")
    return path


async def main(caller: Path, out: Path, mode: str) -> None:
    agents = load_agent_file(AGENT_FILE).agents
    assert agents is not None
    handoffs = Handoffs()
    transport = FileTransport(caller, paced=True)
    if mode == "chained":
        graph = build_chained_pipeline(
            transport, tools=[get_balance], agents=agents, openai_api_key=""
        )
        async with CallSession(graph, observers=[handoffs]) as call:
            await call.run_until_input_ends()
    else:
        scripts = {
            name: AgentScript(agents.agent(name).instructions, LINES[name]) for name in LINES
        }
        brain = ScriptedAgentsBrain(scripts, voice=await shared_tts(), pace=1.5)
        config = ServerConfig(api_key=SERVER_KEY)
        async with running_realtime_server(config=config, brain=brain) as server:
            graph = build_realtime_pipeline(
                transport,
                server_url=server.realtime_url,
                api_key=SERVER_KEY,
                tools=[get_balance],
                agents=agents,
            )
            async with CallSession(graph, observers=[handoffs]) as call:
                await call.run_until_input_ends()
        for answer in brain.answered:
            print(f"response {answer.response_id} answered as {answer.agent}")
    (out / "handoffs.json").write_text(json.dumps(handoffs.events, indent=2) + "\n")
    save_call(out, transport, graph)
    print(f"handoffs: {sum(1 for e in handoffs.events if e['event'] == 'HandoffStarted')}")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("realtime", "chained"), default="realtime")


if __name__ == "__main__":
    args = parse_args(__doc__, _options)
    caller = args.input
    if caller == DEMO_CALLER:  # no --input: a caller with a billing question
        caller = asyncio.run(synthesise_caller(args.out / "caller.wav"))
    asyncio.run(main(caller, args.out, args.mode))
