"""A scripted Realtime brain that delegates, for voxpipe's embedded server (no tests here).

It answers as a speech-to-speech model given voxpipe's ``delegate`` tool does:
a caller's turn is handed to ``delegate`` (with ``request``); a line it is
given in response-level instructions ("Say exactly this, and nothing else:
...") is said as given; a tool result it has not answered yet is relayed (its
``answer`` said). Offered no ``delegate`` tool, it answers ``plain_answer``
itself (the baseline). Speech is the synthetic voice, paced.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator

from voxpipe.processors.realtime.delegation import DELEGATE_TOOL, FILLER_INSTRUCTION
from voxpipe.realtime_server.effects import BrainOutput, BrainRequest, FunctionCallProduced
from voxpipe.transports.realtime_server.brains import ScriptedBrain

FILLER_PREFIX = FILLER_INSTRUCTION.split("{line}")[0]


class DelegatingBrain:
    """See the module docstring; ``said`` records (response id, words) per response."""

    def __init__(
        self,
        request: str,
        *,
        plain_answer: str = "Your balance is forty two dollars.",
        pace: float = 2.0,
    ) -> None:
        self.request = request
        self.plain_answer = plain_answer
        self.pace = pace
        self.said: list[tuple[str, str]] = []  # "" for a response that only delegated
        self._relayed: set[str] = set()  # the tool results answered already

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        return None

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        system = str(request.messages[0].get("content") or "")
        tools = {str((t.get("function") or {}).get("name")) for t in request.tools}
        results = [
            m
            for m in request.messages
            if m.get("role") == "tool" and m.get("tool_call_id") not in self._relayed
        ]
        if system.startswith(FILLER_PREFIX):
            say = system[len(FILLER_PREFIX) :]
        elif results:  # a result it has not answered yet: say its answer
            self._relayed.add(str(results[-1].get("tool_call_id")))
            say = str(json.loads(results[-1]["content"]).get("answer") or "Sorry.")
        elif DELEGATE_TOOL not in tools:
            say = self.plain_answer
        else:
            call_id = "call_" + uuid.uuid5(uuid.NAMESPACE_OID, request.response_id).hex[:16]
            self.said.append((request.response_id, ""))
            arguments = json.dumps({"request": self.request})
            yield FunctionCallProduced(DELEGATE_TOOL, arguments, call_id)
            return
        self.said.append((request.response_id, say))
        speaker = ScriptedBrain([say], pace=self.pace)
        async for output in speaker.respond(dataclasses.replace(request, turn_index=0)):
            yield output
