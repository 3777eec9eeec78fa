"""The safe line in the realtime brain's own voice.

A speech-to-speech brain has no TTS after the tap, so after a trip the brain
itself is asked to say the safe line: a ``response.create`` carrying
response-level instructions, sent once the cancelled response is over (the
service's state machine is back to LISTENING), since the API refuses a second
active response. The service sees the new response as one the server made
(as with server VAD) and plays it like any other; the transcript enters the
context through the aggregators.
"""

from __future__ import annotations

from pipecat.services.openai.realtime import events as rt

from voxpipe.call import CallState, StateChanged
from voxpipe.processors.realtime import CallEvent, RealtimeService

INSTRUCTION = "Say exactly this, and nothing else: {line}"


class RealtimeSafeLine:
    """A :data:`~voxpipe.processors.guardrails.tap.SafeLineSpeaker` for the realtime graph.

    Usage::

        graph = build_realtime_pipeline(transport, tap=tap, ...)
        tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))
    """

    def __init__(self, service: RealtimeService) -> None:
        self._service = service
        self._pending: str | None = None
        self.requested = 0
        service.add_event_handler("on_call_event", self._on_call_event)

    async def __call__(self, line: str) -> None:
        """Say ``line`` now if the brain is listening, else as soon as it is."""
        if self._idle():
            await self._request(line)
        else:
            self._pending = line  # a newer trip's line replaces an unsaid one

    def _idle(self) -> bool:
        service = self._service
        return service.machine.state is CallState.LISTENING and not service.guard.response_active

    async def _on_call_event(self, _service: RealtimeService, event: CallEvent) -> None:
        if self._pending is None or not isinstance(event, StateChanged):
            return
        if event.current is CallState.LISTENING:
            line, self._pending = self._pending, None
            await self._request(line)

    async def _request(self, line: str) -> None:
        self.requested += 1
        response = rt.ResponseProperties(
            output_modalities=["audio"], instructions=INSTRUCTION.format(line=line)
        )
        await self._service.send_client_event(rt.ResponseCreateEvent(response=response))
