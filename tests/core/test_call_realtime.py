"""RealtimeCall, the client core, as protocol scripts: each step an input and what it commands.

Every scenario starts a strict call (an illegal transition raises) and feeds it
typed server events, interruptions, the output's playback reports, socket
outcomes and ticks, each at a time. Commands are written compactly:

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

import pytest
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
    BackoffConfig,
    CallConfig,
    CallState,
    CallTrigger,
    InterruptionSource,
    RealtimeCall,
    ResponseReason,
    RolloverConfig,
    StateChanged,
    TransitionRejected,
    TurnDetection,
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
    CallFailed,
    EventIgnored,
    InterruptionHandled,
    ItemTruncated,
    RolledOver,
)
from voxpipe.call.recovery import FailureClass, HandshakeRejected, NetworkFailed, SocketClosed
from voxpipe.call.user_audio import SendUserAudio
from voxpipe.errors import FatalProviderError, IllegalTransitionError, RetryBudgetExhaustedError

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

SCENARIOS: dict[str, list[Step]] = {
    "a server-VAD turn is answered, heard, and the call listens again": [
        *CONNECT,
        *SPEAKING,
        (
            2200,
            words("resp_1", "item_1", "We open at nine."),
            ["pipecat:response.output_audio_transcript.delta"],
        ),
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (4000, tick(), []),  # 1900 of 3000 ms heard
        (5100, tick(), ["state:listening"]),  # the last audio has been heard
    ],
    "barge-in while speaking: stop, cancel, truncate at what was heard": [
        *CONNECT,
        *SPEAKING,
        (3300, speech_started(), ["caller-speaking", "stop", *CUT_AT_1200]),
        (3310, audio("resp_1", "item_1", 100), []),  # late audio of the cut response: dropped
        (3320, words("resp_1", "item_1", "and on Sunday"), []),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",), reason="turn_detected"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "one barge-in reported twice (server VAD, then the aggregator) cuts once": [
        *CONNECT,
        *SPEAKING,
        (3300, speech_started(), ["caller-speaking", "stop", *CUT_AT_1200]),
        (3305, interrupt(InterruptionSource.SERVER_VAD), ["ignored:duplicate_interruption"]),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
        (3405, interrupt(InterruptionSource.SERVER_VAD), ["ignored:duplicate_interruption"]),
    ],
    "barge-in while thinking, before response.created: cancel now and again on create": [
        *CONNECT,
        (1000, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            1100,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:response.cancel None",
                "event:InterruptionHandled",
                "state:cancelling",
                "end-response",
            ],
        ),
        (
            1200,
            created("resp_1"),
            [
                "ignored:cancelled_on_create",
                "event:ResponseCreated",
                "send:response.cancel resp_1",
                "pipecat:response.created",
            ],
        ),
        (1210, audio("resp_1", "item_1", 100), []),  # never played
        (
            1300,
            done("resp_1", "cancelled"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "barge-in while a tool runs cancels the response and never runs a later call": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (
            2200,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:response.cancel resp_1",
                "event:InterruptionHandled",
                "state:cancelling",
                "end-response",
            ],
        ),
        (2210, function_call("resp_1", "other"), []),  # the cut response's call is never run
        (
            2300,
            done("resp_1", "cancelled"),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
    ],
    "a tool call: the result is answered in a new response, the reply follows": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2150, done("resp_1"), ["pipecat:response.done", "ignored:tool_pending"]),
        (2400, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            2450,
            created("resp_2"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (2500, audio("resp_2", "item_2", 500), ["state:speaking", "play:item_2+marker+tts"]),
    ],
    "a tool result that comes before response.done waits for it": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2120, want(), ["event:ResponseRequested"]),  # queued behind resp_1
        (
            2150,
            done("resp_1"),
            [
                "pipecat:response.done",
                "ignored:tool_pending",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
    ],
    "a guardrail cut, then its safe line as soon as the stopped response is over": [
        *CONNECT,
        *SPEAKING,
        (3300, interrupt(InterruptionSource.PROCESSOR), CUT_AT_1200),
        (3310, want(ResponseReason.SAFE_LINE, "Say: sorry."), ["event:ResponseRequested"]),
        (
            3400,
            done("resp_1", "cancelled", ("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
                "event:ResponseRequested",
                "state:thinking",
                "send:response.create",
            ],
        ),
    ],
    "cancel racing response.done: the reply completed first, then cancel_not_active": [
        *CONNECT,
        *SPEAKING,
        (3300, interrupt(InterruptionSource.APPLICATION), ["stop", *CUT_AT_1200]),
        (
            3301,
            done("resp_1", items=("item_1",)),
            [
                "pipecat:response.done",
                "event:ResponseCancelled",
                "state:listening",
            ],
        ),
        (3350, error("response_cancel_not_active"), ["event:ProviderErrorSeen"]),
    ],
    "an interruption during playout cuts only the audio still to be heard": [
        *CONNECT,
        *SPEAKING,
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (
            3300,
            speech_started(),
            [
                "caller-speaking",
                "stop",
                "send:conversation.item.truncate item_1@1200",
                "event:InterruptionHandled",
                "event:ItemTruncated",
                "state:listening",
                "end-response",
            ],
        ),
    ],
    "a new server response while the last one is still heard": [
        *CONNECT,
        *SPEAKING,
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (
            2400,
            created("resp_2"),
            ["state:thinking", "event:ResponseCreated", "pipecat:response.created"],
        ),
    ],
    "the output went quiet early (a dropped tail): playout ends when its position stops": [
        *CONNECT,
        *SERVER_TURN,
        (2100, audio("resp_1", "item_1", 3000), ["state:speaking", "play:item_1+marker+tts"]),
        (2100, played("item_1", 2900), []),
        (
            2300,
            done("resp_1", items=("item_1",)),
            ["audio-ended", "pipecat:response.done", "state:playing_out"],
        ),
        (5000, output_stopped(), []),
        (5900, tick(), []),
        (6000, tick(), ["state:listening"]),
    ],
    "the socket closes mid-response: reconnect, seed, replay the caller's audio": [
        *CONNECT,
        *SPEAKING,
        (
            2500,
            lost(SocketClosed(1011, "boom")),
            [
                "close",
                "state:reconnecting",
                "event:Reconnecting",
                "open+165",
            ],
        ),
        (2600, caller_audio(100), []),  # held: no session
        (2700, opened(), []),
        (2710, session_created(), ["pipecat:session.created"]),
        (
            2720,
            session_updated(),
            [  # the caller's committed turn (no transcript) seeds it
                "pipecat:session.updated",
                "send:conversation.item.create",
                "state:listening",
                "append:replay",
                "event:Reconnected",
            ],
        ),
        (2800, caller_audio(20), ["append"]),
    ],
    "session_expired: a fresh secret, a new session seeded with what was said": [
        *CONNECT,
        (100, item_added("user_1"), ["pipecat:conversation.item.added"]),
        (110, committed("user_1"), []),
        (
            120,
            transcribed("user_1", "When do you open?"),
            ["pipecat:conversation.item.input_audio_transcription.completed"],
        ),
        (
            130,
            created("resp_1"),
            ["state:thinking", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            140,
            words("resp_1", "item_1", "At nine."),
            ["pipecat:response.output_audio_transcript.delta"],
        ),
        (150, done("resp_1", items=("item_1",)), ["pipecat:response.done", "state:listening"]),
        (
            900,
            error("session_expired"),
            [
                "event:ProviderErrorSeen",
                "close",
                "state:reconnecting",
                "event:Reconnecting",
                "open+165+secret",
            ],
        ),
        (1200, opened(), []),
        (1210, session_created(), ["pipecat:session.created"]),
        (
            1220,
            session_updated(),
            [
                "pipecat:session.updated",
                "send:conversation.item.create",
                "send:conversation.item.create",
                "state:listening",
                "event:Reconnected",
            ],
        ),
        (1230, item_added("seed_0"), []),  # our own seed: not a new turn for pipecat
    ],
    "a refused key is fatal: never retried, the call ends": [
        *CONNECT,
        (
            500,
            error("invalid_api_key", "invalid_request_error"),
            [
                "event:ProviderErrorSeen",
                "close",
                "state:reconnecting",
                "state:failed",
                "event:CallFailed",
                "end-call",
            ],
        ),
        (600, tick(), []),
        (700, want(), ["ignored:not_live"]),
    ],
    "a refused first connect (401) mints a new secret; a 404 ends the call": [
        (0, lambda call, now: call.start(now), ["open+0"]),
        (
            10,
            lost(HandshakeRejected(401)),
            ["close", "state:reconnecting", "event:Reconnecting", "open+165+secret"],
        ),
        (
            300,
            lost(HandshakeRejected(404)),
            [
                "close",
                "state:reconnecting",
                "state:failed",
                "event:CallFailed",
                "end-call",
            ],
        ),
    ],
    "rate limits exhausted: the failed response is asked again once the limit resets": [
        *CONNECT,
        (100, rate_limits(0, 0.5), ["event:RateLimitsUpdated"]),
        (110, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            120,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            130,
            done("resp_1", "failed", error_code="rate_limit_exceeded"),
            [
                "pipecat:response.done",
                "state:recovering",
                "state:listening",
            ],
        ),
        (500, tick(), []),
        (630, tick(), ["event:ResponseRequested", "state:thinking", "create"]),
    ],
    "rollover between turns; while a tool runs it waits": [
        *CONNECT,
        *SERVER_TURN,
        (
            2100,
            function_call("resp_1"),
            ["state:calling_tool", "pipecat:response.function_call_arguments.done"],
        ),
        (2150, done("resp_1"), ["pipecat:response.done", "ignored:tool_pending"]),
        (16_000, tick(), []),  # due by age, but a tool is running
        (16_100, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            16_200,
            created("resp_2"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (16_300, done("resp_2"), ["pipecat:response.done", "state:listening"]),
        (16_400, tick(), ["state:rolling_over", "close", "open+0"]),
        (16_500, opened(), []),
        (16_510, session_created(), ["pipecat:session.created"]),
        (
            16_520,
            session_updated(),
            [
                "pipecat:session.updated",
                "send:conversation.item.create",
                "state:listening",
                "event:RolledOver",
            ],
        ),
    ],
    "a stalled stream is a dead socket": [
        *CONNECT,
        *SERVER_TURN,
        (5000, tick(), []),
        (10_100, tick(), ["close", "state:reconnecting", "event:Reconnecting", "open+165"]),
    ],
    "a response that never starts times out and is cleared": [
        *CONNECT,
        (100, want(), ["event:ResponseRequested", "state:thinking", "create"]),
        (
            110,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (
            5_000,
            server(RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=[]),
            ["event:RateLimitsUpdated"],
        ),
        (
            10_000,
            server(RateLimitsUpdatedEvent, type="rate_limits.updated", rate_limits=[]),
            ["event:RateLimitsUpdated"],
        ),
        (
            15_200,
            tick(),
            [
                "state:recovering",
                "send:response.cancel resp_1",
                "state:listening",
            ],
        ),
        (15_300, audio("resp_1", "item_1", 100), []),  # the cleared response never plays
    ],
    "local turns: the call commits and asks; a barge-in clears the input but keeps the onset": [
        *CONNECT,
        (100, caller_audio(300), ["append"]),
        (
            500,
            local_turn_ended(),
            [
                "send:input_audio_buffer.commit",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
        (
            600,
            created("resp_1"),
            ["ignored:own_request", "event:ResponseCreated", "pipecat:response.created"],
        ),
        (700, audio("resp_1", "item_1", 2000), ["state:speaking", "play:item_1+marker+tts"]),
        (700, played("item_1", 2000), []),
        (900, caller_audio(100), ["append"]),
        (
            1000,
            interrupt(InterruptionSource.LOCAL_VAD),
            [
                "send:input_audio_buffer.clear",
                "append",
                "send:response.cancel resp_1",
                "send:conversation.item.truncate item_1@300",
                "event:InterruptionHandled",
                "event:ItemTruncated",
                "state:cancelling",
                "end-response",
            ],
        ),
    ],
    "requests before the first session wait for it": [
        (0, lambda call, now: call.start(now), ["open+0"]),
        (5, want(ResponseReason.GREETING), ["event:ResponseRequested"]),
        (10, opened(), []),
        (20, session_created(), ["pipecat:session.created"]),
        (
            30,
            session_updated(),
            [
                "pipecat:session.updated",
                "state:listening",
                "event:ResponseRequested",
                "state:thinking",
                "create",
            ],
        ),
    ],
    "an error that is no connection failure is the request's problem, not the call's": [
        *CONNECT,
        (100, error("invalid_value"), ["event:ProviderErrorSeen", "error"]),
        (200, want(), ["event:ResponseRequested", "state:thinking", "create"]),
    ],
}


SHORT_SESSIONS = RolloverConfig(session_cap_ms=20_000, margin_ms=5_000, force_margin_ms=500)
CONFIGS: dict[str, dict[str, Any]] = {
    "rollover between turns; while a tool runs it waits": {"rollover": SHORT_SESSIONS},
    "local turns: the call commits and asks; a barge-in clears the input but keeps the onset": {
        "turns": TurnDetection(server_vad=False, silence_ms=None)
    },
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run(SCENARIOS[name], new_call(**CONFIGS.get(name, {})))


def test_truncation_and_interruption_report_what_was_heard() -> None:
    call = run([*CONNECT, *SPEAKING])
    commands = call.interrupt(InterruptionSource.APPLICATION, 3300)
    handled = next(
        c.event
        for c in commands
        if isinstance(c, Publish) and isinstance(c.event, InterruptionHandled)
    )
    truncated = next(
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, ItemTruncated)
    )
    assert (handled.item_id, handled.response_id, handled.cancel_sent) == ("item_1", "resp_1", True)
    assert (truncated.audio_end_ms, truncated.received_ms) == (1200, 3000)


def cut_reported(item_id: str, ms: int) -> Action:
    """The output says where the cut stopped ``item_id`` (a telephony provider's marks)."""

    def report(call: RealtimeCall, now: int) -> list[Command]:
        call.ledger.cut_position(item_id, ms, now)
        return []

    return report


def test_a_cut_waits_for_the_position_the_output_reports_then_truncates_there() -> None:
    call = new_call()
    call.ledger.reports_cut_positions(1000)
    cut_without_truncate = [c for c in CUT_AT_1200 if "truncat" not in c.lower()]
    run(
        [
            *CONNECT,
            *SPEAKING,
            (3300, speech_started(), ["caller-speaking", "stop", *cut_without_truncate]),
            (3400, tick(), []),  # the far end has not said yet
            (3500, cut_reported("item_1", 1130), []),
            (
                3510,
                tick(),
                ["send:conversation.item.truncate item_1@1130", "event:ItemTruncated"],
            ),
            (3610, tick(), []),  # truncated once
        ],
        call,
    )


def test_a_cut_position_that_never_comes_truncates_at_the_outputs_own_position() -> None:
    call = new_call()
    call.ledger.reports_cut_positions(1000)
    run([*CONNECT, *SPEAKING], call)
    call.interrupt(InterruptionSource.APPLICATION, 3300)
    assert [describe(c) for c in call.tick(4200)] == []
    assert [describe(c) for c in call.tick(4300)] == [
        "send:conversation.item.truncate item_1@1200",
        "event:ItemTruncated",
    ]


def test_a_cut_reply_is_remembered_only_as_far_as_it_was_heard() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    call.server_event(
        _event(words("resp_1", "item_1", "one two three four five six seven eight nine ten")), 2050
    )
    run(
        [
            (2100, audio("resp_1", "item_1", 1000), ["state:speaking", "play:item_1+marker+tts"]),
            (2100, played("item_1", 1000), []),
        ],
        call,
    )
    call.interrupt(InterruptionSource.PROCESSOR, 2400)  # 300 of 1000 ms heard
    call.server_event(_event(done("resp_1", "cancelled", ("item_1",))), 2450)
    texts = [turn.text for turn in call.record.memory.turns]
    assert texts == ["(spoke; no transcript)", "one two three (interrupted)"]


def test_the_retry_budget_ends_a_reconnect_loop() -> None:
    call = new_call(backoff=BackoffConfig(initial_ms=10, max_ms=10, jitter=0, max_consecutive=2))
    run(CONNECT, call)
    assert describe(call.connection_failed(NetworkFailed("down"), 100)[-1]) == "open+10"
    assert describe(call.connection_failed(NetworkFailed("down"), 200)[-1]) == "open+10"
    commands = call.connection_failed(NetworkFailed("down"), 300)
    failed = [
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, CallFailed)
    ]
    assert isinstance(failed[0].error, RetryBudgetExhaustedError)
    assert failed[0].failure_class is FailureClass.TRANSPORT
    assert call.machine.state is CallState.FAILED


def test_a_fatal_error_is_typed() -> None:
    call = run(CONNECT)
    commands = call.server_event(_event(error("insufficient_quota")), 100)
    ended = [c for c in commands if isinstance(c, EndCall)]
    assert (
        isinstance(ended[0].error, FatalProviderError)
        and ended[0].error.code == "insufficient_quota"
    )


def test_the_machine_is_strict_an_impossible_move_raises() -> None:
    call = run(CONNECT)
    with pytest.raises(IllegalTransitionError):
        call._move(CallTrigger.AUDIO_STARTED, 100)  # audio with no response asked for


def test_not_strict_an_impossible_move_is_published_as_rejected() -> None:
    call = RealtimeCall(CallConfig(strict=False), random=random.Random(1).random, new_id=str)
    commands = call._move(CallTrigger.AUDIO_STARTED, 5)
    assert [type(c.event) for c in commands if isinstance(c, Publish)] == [TransitionRejected]
    assert call.machine.state is CallState.IDLE


def test_speech_stopped_is_located_in_the_callers_frames() -> None:
    call = run(CONNECT, new_call(turns=TurnDetection(server_vad=True, silence_ms=500)))
    for frame_id in range(10):
        call.user_audio(bytes(100 * PCM_MS), frame_id, 100 + frame_id * 100)
    commands = call.server_event(_event(speech_stopped(750)), 1200)
    stopped = commands[0].event  # type: ignore[union-attr]
    assert (stopped.frame_id, stopped.offset_ms, stopped.sent_at_ms) == (2, 50, 300)


def test_rollover_reports_how_long_the_switch_took() -> None:
    call = new_call(rollover=SHORT_SESSIONS)
    run(CONNECT, call)
    call.tick(16_000)
    call.session_opened(16_100)
    call.server_event(_event(session_created()), 16_110)
    commands = call.server_event(_event(session_updated()), 16_150)
    rolled = [
        c.event for c in commands if isinstance(c, Publish) and isinstance(c.event, RolledOver)
    ]
    assert rolled[0].switch_ms == 150


def _event(action: Action) -> Any:
    """The server event an input built from ``server(...)`` feeds (for direct calls)."""
    captured: list[Any] = []

    class Spy(RealtimeCall):
        def server_event(self, event: Any, now_ms: int) -> list[Command]:
            captured.append(event)
            return []

    action(Spy(CallConfig(), random=random.random, new_id=str), 0)
    return captured[0]


def test_rate_limited_responses_are_asked_again_a_bounded_number_of_times() -> None:
    call = run(CONNECT)
    call.server_event(_event(rate_limits(0, 0.1)), 40)
    now, retries = 100, 0
    for n in range(8):
        asked = call.response_wanted(ResponseReason.APPLICATION, f"r{n}", now) if n == 0 else []
        asked += call.tick(now)
        if any(isinstance(c, CreateResponse) for c in asked):
            retries += n > 0
            call.server_event(_event(created(f"resp_{n}")), now + 1)
            call.server_event(
                _event(done(f"resp_{n}", "failed", error_code="rate_limit_exceeded")), now + 2
            )
        now += 200
    assert retries == 4  # max_rate_limit_retries, then the caller's next turn asks anew
    assert call.machine.state is CallState.LISTENING


def _create(commands: list[Command]) -> CreateResponse:
    [create] = [c for c in commands if isinstance(c, CreateResponse)]
    return create


def test_only_a_call_with_no_conversation_yet_sends_the_applications_context() -> None:
    # The application speaks first (a greeting): its context goes in before the response.
    call = run(CONNECT)
    assert not call.holds_conversation
    assert _create(
        call.response_wanted(ResponseReason.APPLICATION, "greet", 40)
    ).set_up_conversation

    # The server's VAD answered the caller first: the session holds the conversation, so
    # the response voxpipe asks for next (a tool result's) sends no context again. It did:
    # pipecat's set-up put the whole history in as one more user message (handoff test).
    call = run(CONNECT + SERVER_TURN)
    assert call.holds_conversation
    call.server_event(_event(done("resp_1", items=("item_1",))), 2100)
    asked = call.response_wanted(ResponseReason.TOOL_RESULT, "tool", 2200)
    assert not _create(asked).set_up_conversation

    # A committed caller turn alone is a conversation too.
    call = run(CONNECT)
    call.server_event(_event(committed("user_1")), 50)
    assert call.holds_conversation
