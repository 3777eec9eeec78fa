"""One slot swapped for an OpenAI service: OpenAI's chat model answers, the rest stays local.

    OPENAI_API_KEY=sk-... python examples/openai_llm_slot.py [OUT_DIR] [--input CALLER.wav]
        [--base-url URL] [--model gpt-4.1-mini]

Every slot of a graph takes an explicit pipecat service. Here the chained
graph's LLM slot gets pipecat's ``OpenAILLMService``; speech recognition and
the voice are voxpipe's local services, passed explicitly too, because with
``OPENAI_API_KEY`` set the graph would otherwise put OpenAI in every slot.
``--base-url`` (default: ``$OPENAI_BASE_URL``, else OpenAI's) points the
service at any server that speaks OpenAI's chat API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from common import parse_args, save_call
from pipecat.services.openai.llm import OpenAILLMService

from voxpipe import CallSession, FileTransport, build_chained_pipeline
from voxpipe.processors.local.stt import LocalWhisperSTTService
from voxpipe.processors.local.tts import LocalTTSService

INSTRUCTIONS = (
    "You are the phone assistant of Green Cross pharmacy. Answer in one or two short "
    "spoken sentences. No lists, no markdown."
)


async def main(caller: Path, out: Path, api_key: str, base_url: str | None, model: str) -> None:
    # The prompt travels with the service: build_chained_pipeline's instructions=
    # only reach the services the builder makes itself.
    llm = OpenAILLMService(
        api_key=api_key,
        base_url=base_url,  # None: the openai SDK's default, OpenAI's own endpoint
        settings=OpenAILLMService.Settings(model=model, system_instruction=INSTRUCTIONS),
    )
    transport = FileTransport(caller, paced=True)
    graph = build_chained_pipeline(
        transport, llm=llm, stt=LocalWhisperSTTService(), tts=LocalTTSService()
    )
    async with CallSession(graph) as call:
        await call.run_until_input_ends()
    save_call(out, transport, graph)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model", default="gpt-4.1-mini")


if __name__ == "__main__":
    args = parse_args(__doc__, _options)
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise SystemExit("set OPENAI_API_KEY: the LLM slot is OpenAI's chat model")
    asyncio.run(main(args.input, args.out, api_key, args.base_url, args.model))
