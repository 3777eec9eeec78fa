"""A call from a recording on the chained graph, all local: Whisper -> LLM -> TTS.

    python examples/chained_call.py [OUT_DIR] [--input CALLER.wav]

The recording plays the caller in real time, as a live line would; the call
ends once the recording is over and the bot has answered and fallen quiet.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from common import parse_args, save_call

from voxpipe import CallSession, FileTransport, TurnSettings, build_chained_pipeline

INSTRUCTIONS = (
    "You are the phone assistant of Green Cross pharmacy. Answer in one or two short "
    "spoken sentences. The pharmacy opens from 9 am to 6 pm, and until 1 pm on Saturday."
)


async def main(caller: Path, out: Path) -> None:
    # paced=True: the recording is played in real time, like a microphone.
    transport = FileTransport(caller, paced=True)
    graph = build_chained_pipeline(
        transport,
        instructions=INSTRUCTIONS,
        # The caller's turn ends after 0.6 s of silence (Silero VAD); see TurnSettings.
        turn=TurnSettings(user_speech_timeout_secs=0.6),
    )
    async with CallSession(graph) as call:
        await call.run_until_input_ends()
    save_call(out, transport, graph)


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.input, args.out))
