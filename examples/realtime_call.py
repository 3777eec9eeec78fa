"""A call on the realtime graph against voxpipe's own Realtime server, started in process.

    python examples/realtime_call.py [OUT_DIR] [--input CALLER.wav] [--brain scripted|local]

The realtime graph speaks the OpenAI Realtime protocol; here it talks to the
embedded server (``voxpipe realtime-server``) on a free loopback port, so no
key and no network are needed. Its brain is a script spoken by the local
voice (the same answers every run), or the local models (``--brain local``:
Whisper -> LLM -> TTS inside the server). With OpenAI, drop the server and pass
``api_key=`` (or set ``OPENAI_API_KEY``): the graph is the same.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from common import parse_args, save_call

from voxpipe import (
    CallSession,
    FileTransport,
    ServerConfig,
    build_realtime_pipeline,
    running_realtime_server,
)
from voxpipe.engines import shared_tts
from voxpipe.transports.realtime_server import ScriptedBrain

# The in-process server's own key: the graph presents it, nothing leaves the machine.
SERVER_KEY = "voxpipe-example"

# Response n of the session says entry n (the script cycles).
SCRIPT = [
    "Hello, this is Green Cross pharmacy. We are open from nine to six today.",
    "Yes, we take cards and cash.",
    "You are welcome, goodbye!",
]


async def server_brain(kind: str) -> Any:
    if kind == "local":
        from voxpipe.transports.realtime_server.local_brain import LocalBrain

        return await LocalBrain.load()
    # pace: the server streams audio a little faster than real time, as OpenAI does.
    return ScriptedBrain(SCRIPT, voice=await shared_tts(), pace=1.5)


async def main(caller: Path, out: Path, brain: str) -> None:
    config = ServerConfig(api_key=SERVER_KEY)
    async with running_realtime_server(config=config, brain=await server_brain(brain)) as server:
        transport = FileTransport(caller, paced=True)
        graph = build_realtime_pipeline(
            transport,
            server_url=server.realtime_url,  # ws://127.0.0.1:PORT/v1/realtime
            api_key=SERVER_KEY,
            transcribe=True,  # ask the server for the caller's words (the local brain has them)
        )
        async with CallSession(graph) as call:
            await call.run_until_input_ends()
    save_call(out, transport, graph)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--brain", choices=["scripted", "local"], default="scripted")


if __name__ == "__main__":
    args = parse_args(__doc__, _options)
    asyncio.run(main(args.input, args.out, args.brain))
