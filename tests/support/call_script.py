"""Protocol scripts for :class:`~voxpipe.call.RealtimeCall`, the client core.

A script is a list of steps, each an input at a time and the commands it must
give; :func:`run` feeds a strict call (an illegal transition raises) typed
server events, interruptions, the output's playback reports, socket outcomes
and ticks. Commands are written compactly:

    send:<client event> [details]   a client event on the socket
    append                          caller audio appended (``append:replay`` after a switch)
    create / update-session         pipecat's response.create / session.update
    pipecat:<server event>          pipecat makes its frames for the event
    play:<item>[+marker][+tts]      reply audio pushed (first of its item / response)
    audio-ended / stop / end-response / caller-speaking / error
    state:<state>                   the state machine moved
    ignored:<reason>                an event that, by design, changed nothing
    event:<CallEvent>               another published event
    open+<delay>[+secret] / close / end-call
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from typing import Any

from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RateLimitsUpdatedEvent,
    RealtimeErrorEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)

from voxpipe.call import (
    CallConfig,
    InterruptionSource,
    RealtimeCall,
    ResponseReason,
    StateChanged,
)
from voxpipe.call.commands import (
    BroadcastUserSpeech,
    CloseSession,
    Command,
    CreateResponse,
    EndCall,
    EndResponseOutput,
    Forward,
    OpenSession,
    PlayAudio,
    Publish,
    ReportError,
    ResponseAudioEnded,
    SendEvent,
    StopOutput,
    UpdateSession,
)
from voxpipe.call.events import (
    EventIgnored,
)
from voxpipe.call.user_audio import SendUserAudio

PCM_MS = 48
Action = Callable[[RealtimeCall, int], list[Command]]
Step = tuple[int, Action, list[str]]


# -- describing commands -------------------------------------------------------------


def describe(command: Command) -> str:
    match command:
        case SendEvent(event=event):
            return f"send:{event.type}{_details(event)}"
        case SendUserAudio(replayed=replayed):
            return "append:replay" if replayed else "append"
        case CreateResponse():
            return "create"
        case UpdateSession():
            return "update-session"
        case Forward(event_type=event_type):
            return f"pipecat:{event_type}"
        case PlayAudio():
            marks = ("+marker" if command.new_item else "") + (
                "+tts" if command.new_response else ""
            )
            return f"play:{command.item_id}{marks}"
        case ResponseAudioEnded():
            return "audio-ended"
        case StopOutput():
            return "stop"
        case EndResponseOutput():
            return "end-response"
        case BroadcastUserSpeech():
            return "caller-speaking"
        case ReportError():
            return "error"
        case Publish(event=StateChanged(current=state)):
            return f"state:{state.value}"
        case Publish(event=EventIgnored(reason=reason)):
            return f"ignored:{reason.value}"
        case Publish(event=event):
            return f"event:{type(event).__name__}"
        case OpenSession(delay_ms=delay, refresh_secret=refresh):
            return f"open+{delay}" + ("+secret" if refresh else "")
        case CloseSession():
            return "close"
        case EndCall():
            return "end-call"
    raise AssertionError(command)


def _details(event: Any) -> str:
    if event.type == "response.cancel":
        return f" {event.response_id}"
    if event.type == "conversation.item.truncate":
        return f" {event.item_id}@{event.audio_end_ms}"
    if event.type in ("conversation.item.delete", "conversation.item.create"):
        return ""
    return ""


# -- inputs --------------------------------------------------------------------------


def server(model: Any, **fields: Any) -> Action:
    event = model.model_validate({"event_id": "evt", **fields})
    return lambda call, now: call.server_event(event, now)


def session_created() -> Action:
    return server(
        SessionCreatedEvent, type="session.created", session={"type": "realtime", "id": "sess_1"}
    )


def session_updated() -> Action:
    return server(SessionUpdatedEvent, type="session.updated", session={"type": "realtime"})


def created(response_id: str) -> Action:
    return server(
        ResponseCreatedEvent,
        type="response.created",
        response={"id": response_id, "object": "realtime.response", "status": "in_progress"},
    )


def audio(response_id: str, item_id: str, ms: int) -> Action:
    delta = base64.b64encode(bytes(ms * PCM_MS)).decode()
    return server(
        ResponseAudioDeltaEvent,
        type="response.output_audio.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=0,
        content_index=0,
        delta=delta,
    )


def words(response_id: str, item_id: str, text: str) -> Action:
    return server(
        ResponseAudioTranscriptDeltaEvent,
        type="response.output_audio_transcript.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=0,
        content_index=0,
        delta=text,
    )


def function_call(response_id: str, name: str = "get_hours") -> Action:
    return server(
        ResponseFunctionCallArgumentsDoneEvent,
        type="response.function_call_arguments.done",
        response_id=response_id,
        item_id="fc_1",
        output_index=0,
        call_id="call_1",
        name=name,
        arguments="{}",
    )


def done(
    response_id: str,
    status: str = "completed",
    items: tuple[str, ...] = (),
    *,
    reason: str | None = None,
    error_code: str | None = None,
    input_tokens: int | None = None,
) -> Action:
    details: dict[str, Any] = {"type": status}
    if reason:
        details["reason"] = reason
    if error_code:
        details["error"] = {"type": "rate_limit", "code": error_code}
    output = [
        {"id": i, "type": "message", "role": "assistant", "content": [], "object": "realtime.item"}
        for i in items
    ]
    response: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": details,
        "output": output,
    }
    if input_tokens is not None:
        response["usage"] = {"input_tokens": input_tokens, "output_tokens": 10, "total_tokens": 0}
    return server(ResponseDoneEvent, type="response.done", response=response)


def speech_started() -> Action:
    return server(
        InputAudioBufferSpeechStartedEvent,
        type="input_audio_buffer.speech_started",
        audio_start_ms=0,
        item_id="user_1",
    )


def speech_stopped(end_ms: int) -> Action:
    return server(
        InputAudioBufferSpeechStoppedEvent,
        type="input_audio_buffer.speech_stopped",
        audio_end_ms=end_ms,
        item_id="user_1",
    )


def committed(item_id: str) -> Action:
    return server(
        InputAudioBufferCommittedEvent, type="input_audio_buffer.committed", item_id=item_id
    )


def transcribed(item_id: str, text: str) -> Action:
    return server(
        ConversationItemInputAudioTranscriptionCompletedEvent,
        type="conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=text,
        usage={"type": "duration", "seconds": 1},
    )


def item_added(item_id: str) -> Action:
    item = {"id": item_id, "type": "message", "role": "user", "content": []}
    return server(ConversationItemAdded, type="conversation.item.added", item=item)


def error(code: str, error_type: str = "invalid_request_error") -> Action:
    return server(
        RealtimeErrorEvent, type="error", error={"type": error_type, "code": code, "message": code}
    )


def rate_limits(remaining: int, reset_seconds: float) -> Action:
    limit = {
        "name": "tokens",
        "limit": 1000,
        "remaining": remaining,
        "reset_seconds": reset_seconds,
    }
    return server(RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=[limit])


def interrupt(source: InterruptionSource) -> Action:
    """As the driver reports it: a processor's or the aggregator's come as frames."""
    as_frame = source in (InterruptionSource.PROCESSOR, InterruptionSource.LOCAL_VAD)
    return lambda call, now: call.interrupt(source, now, as_frame=as_frame)


def want(reason: ResponseReason = ResponseReason.APPLICATION, text: str | None = None) -> Action:
    return lambda call, now: call.response_wanted(reason, f"req-{now}", now, instructions=text)


def played(item_id: str, ms: int) -> Action:
    """The output began ``item_id`` and played ``ms`` of it, starting now."""

    def report(call: RealtimeCall, now: int) -> list[Command]:
        call.ledger.utterance_began(item_id, now)
        call.ledger.chunk_started(ms, now)
        return []

    return report


def tick() -> Action:
    return lambda call, now: call.tick(now)


def lost(signal: Any) -> Action:
    return lambda call, now: call.connection_failed(signal, now)


def opened() -> Action:
    return lambda call, now: call.session_opened(now)


def caller_audio(ms: int) -> Action:
    return lambda call, now: call.user_audio(bytes(ms * PCM_MS), now, now)


def local_turn_ended() -> Action:
    return lambda call, now: call.local_turn_ended(f"turn-{now}", now)


def output_stopped() -> Action:
    return lambda call, now: call.output_stopped(now)


# -- running ---------------------------------------------------------------------------


def new_call(**config: Any) -> RealtimeCall:
    ids = iter(range(1000))
    return RealtimeCall(
        CallConfig(strict=True, **config),
        random=random.Random(7).random,
        new_id=lambda: f"seed_{next(ids)}",
    )


def run(steps: list[Step], call: RealtimeCall | None = None) -> RealtimeCall:
    call = call or new_call()
    for i, (now, action, expected) in enumerate(steps):
        got = [describe(c) for c in action(call, now)]
        assert got == expected, f"step {i} at {now} ms: {got}"
    return call


CONNECT: list[Step] = [
    (0, lambda call, now: call.start(now), ["open+0"]),
    (10, opened(), []),
    (20, session_created(), ["pipecat:session.created"]),
    (30, session_updated(), ["pipecat:session.updated", "state:listening"]),
]
SERVER_TURN: list[Step] = [  # the server's VAD heard a question and answers it
    (1000, speech_started(), ["caller-speaking"]),
    (
        2000,
        speech_stopped(2500),
        ["event:ServerSpeechStopped", "pipecat:input_audio_buffer.speech_stopped"],
    ),
    (2010, committed("user_1"), []),
    (
        2020,
        created("resp_1"),
        ["state:thinking", "event:ResponseCreated", "pipecat:response.created"],
    ),
]
SPEAKING: list[Step] = [
    *SERVER_TURN,
    (2100, audio("resp_1", "item_1", 3000), ["state:speaking", "play:item_1+marker+tts"]),
    (2100, played("item_1", 3000), []),
]
CUT_AT_1200 = [
    "send:response.cancel resp_1",
    "send:conversation.item.truncate item_1@1200",
    "event:InterruptionHandled",
    "event:ItemTruncated",
    "state:cancelling",
    "end-response",
]


def cut_reported(item_id: str, ms: int) -> Action:
    """The output says where the cut stopped ``item_id`` (a telephony provider's marks)."""

    def report(call: RealtimeCall, now: int) -> list[Command]:
        call.ledger.cut_position(item_id, ms, now)
        return []

    return report


def event_of(action: Action) -> Any:
    """The server event an input built from ``server(...)`` feeds (for direct calls)."""
    captured: list[Any] = []

    class Spy(RealtimeCall):
        def server_event(self, event: Any, now_ms: int) -> list[Command]:
            captured.append(event)
            return []

    action(Spy(CallConfig(), random=random.random, new_id=str), 0)
    return captured[0]
