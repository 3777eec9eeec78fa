"""The safe line in the realtime brain's own voice.

A speech-to-speech brain has no TTS after the tap, so after a trip the brain
itself is asked to say the safe line: a response with response-level
instructions. The call's response guard sends it once the cancelled response
is over (the API refuses a second active response); the transcript enters the
context through the aggregators.
"""

from __future__ import annotations

from voxpipe.call import ResponseReason
from voxpipe.processors.realtime import RealtimeService

INSTRUCTION = "Say exactly this, and nothing else: {line}"


class RealtimeSafeLine:
    """A :data:`~voxpipe.processors.guardrails.tap.SafeLineSpeaker` for the realtime graph.

    Usage::

        graph = build_realtime_pipeline(transport, tap=tap, ...)
        tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))
    """

    def __init__(self, service: RealtimeService) -> None:
        self._service = service
        self.requested = 0

    async def __call__(self, line: str) -> None:
        """Say ``line`` as soon as the stopped response is over."""
        self.requested += 1
        instructions = INSTRUCTION.format(line=line)
        await self._service.request_response(ResponseReason.SAFE_LINE, instructions=instructions)
