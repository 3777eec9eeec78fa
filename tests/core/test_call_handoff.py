"""HandoffCall, the realtime core of a multi-agent call, as protocol scripts.

Each test drives a strict call (an illegal state move raises) with typed
server events and reads back the commands: the handoff's one
``session.update`` (instructions and tools only), the transfer's output only
after ``session.updated``, then one ``response.create``; barge-ins while
handing off; transfers that do not exist; what the new agent is left with.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)

from voxpipe.agents import parse_agents
from voxpipe.call import CallConfig, CallState
from voxpipe.call.commands import (
    Command,
    CreateResponse,
    PlayAudio,
    Publish,
    SendEvent,
    StopOutput,
    SwitchAgent,
)
from voxpipe.call.events import HandoffApplied, HandoffStarted, InterruptionHandled, TransferRefused
from voxpipe.call.handoff_call import HandoffCall
from voxpipe.call.state import StateChanged

TRIAGE = "Greet the caller and find out what they need. Transfer billing questions."
BILLING = "You answer billing questions."
AGENTS = parse_agents(
    {
        "start": "triage",
        "agents": {
            "triage": {"instructions": TRIAGE, "handoffs": ["billing"]},
            "billing": {
                "instructions": BILLING,
                "tools": ["get_balance"],
                "handoffs": ["triage"],
            },
        },
        "handoff": {"keep_turns": 2},
    },
    "agent.toml",
)
BALANCE_TOOL = {
    "type": "function",
    "name": "get_balance",
    "description": "The caller's balance.",
    "parameters": {"type": "object", "properties": {}},
}
PCM_MS = 48


def server(model: Any, **fields: Any) -> Any:
    return model.model_validate({"event_id": "evt", **fields})


def new_call() -> HandoffCall:
    assert AGENTS is not None
    ids = iter(range(1000))
    call = HandoffCall(
        CallConfig(strict=True),
        agents=AGENTS,
        app_tools={"get_balance": BALANCE_TOOL},
        random=random.Random(7).random,
        new_id=lambda: f"seed_{next(ids)}",
    )
    call.start(0)
    call.session_opened(1)
    feed(call, server(SessionCreatedEvent, type="session.created", session={"type": "realtime"}))
    feed(call, session_updated())
    assert call.machine.state is CallState.LISTENING
    return call


def feed(call: HandoffCall, event: Any, now: int = 10) -> list[Command]:
    return call.server_event(event, now)


def session_updated() -> Any:
    return server(SessionUpdatedEvent, type="session.updated", session={"type": "realtime"})


def caller_turn(call: HandoffCall, n: int, text: str, now: int = 10) -> None:
    """The caller's turn ``u<n>``, committed, added and transcribed."""
    feed(
        call,
        server(
            InputAudioBufferCommittedEvent, type="input_audio_buffer.committed", item_id=f"u{n}"
        ),
        now,
    )
    item = {"id": f"u{n}", "type": "message", "role": "user", "content": []}
    feed(call, server(ConversationItemAdded, type="conversation.item.added", item=item), now)
    feed(
        call,
        server(
            ConversationItemInputAudioTranscriptionCompletedEvent,
            type="conversation.item.input_audio_transcription.completed",
            item_id=f"u{n}",
            content_index=0,
            transcript=text,
            usage={"type": "duration", "seconds": 1},
        ),
        now,
    )


def reply_starts(call: HandoffCall, n: int, text: str, now: int = 10) -> list[Command]:
    """Response ``r<n>`` (made by the server's VAD) speaks ``text`` as item ``a<n>``."""
    response = {"id": f"r{n}", "object": "realtime.response", "status": "in_progress"}
    out = feed(call, server(ResponseCreatedEvent, type="response.created", response=response), now)
    item = {"id": f"a{n}", "type": "message", "role": "assistant", "content": []}
    out += feed(call, server(ConversationItemAdded, type="conversation.item.added", item=item), now)
    where = {"response_id": f"r{n}", "item_id": f"a{n}", "output_index": 0, "content_index": 0}
    out += feed(
        call,
        server(
            ResponseAudioTranscriptDeltaEvent,
            type="response.output_audio_transcript.delta",
            delta=text,
            **where,
        ),
        now,
    )
    delta = base64.b64encode(bytes(len(text.split()) * 300 * PCM_MS)).decode()
    out += feed(
        call,
        server(ResponseAudioDeltaEvent, type="response.output_audio.delta", delta=delta, **where),
        now,
    )
    return out


def done(call: HandoffCall, n: int, status: str = "completed", now: int = 10) -> list[Command]:
    output = [{"id": f"a{n}", "type": "message", "role": "assistant", "content": []}]
    response = {
        "id": f"r{n}",
        "object": "realtime.response",
        "status": status,
        "status_details": {"type": status},
        "output": output,
    }
    return feed(call, server(ResponseDoneEvent, type="response.done", response=response), now)


def transfer(call: HandoffCall, n: int, name: str, reason: str, now: int = 10) -> list[Command]:
    event = server(
        ResponseFunctionCallArgumentsDoneEvent,
        type="response.function_call_arguments.done",
        response_id=f"r{n}",
        item_id=f"fc{n}",
        output_index=1,
        call_id=f"call_{n}",
        name=name,
        arguments=json.dumps({"reason": reason}),
    )
    return feed(call, event, now)


def sent(out: list[Command], event_type: str) -> list[Any]:
    return [c.event for c in out if isinstance(c, SendEvent) and c.event.type == event_type]


def published(out: list[Command], kind: type[Any]) -> list[Any]:
    return [c.event for c in out if isinstance(c, Publish) and isinstance(c.event, kind)]


def wire(out: list[Command]) -> list[str]:
    """The socket's view: client event types and response.creates, in order."""
    names = []
    for command in out:
        if isinstance(command, SendEvent):
            names.append(command.event.type)
        elif isinstance(command, CreateResponse):
            names.append("response.create")
    return names


def test_the_transfer_updates_the_session_once_then_answers_then_asks_the_new_agent() -> None:
    call = new_call()
    caller_turn(call, 1, "Hi, my name is Ada Lovelace and I was charged twice.")
    reply_starts(call, 1, "Let me transfer you to billing.")
    assert call.machine.state is CallState.SPEAKING

    out = transfer(call, 1, "transfer_to_billing", "double charge", now=100)
    assert call.machine.state is CallState.HANDING_OFF
    assert wire(out) == ["session.update"]  # nothing else: no output, no response yet
    (update,) = sent(out, "session.update")
    session = update.session.model_dump(exclude_none=True)
    assert set(session) == {"type", "instructions", "tools"}  # audio, VAD, transcription untouched
    assert session["instructions"].startswith(BILLING) and TRIAGE not in session["instructions"]
    assert [t["name"] for t in session["tools"]] == ["get_balance", "transfer_to_triage"]
    (switch,) = [c for c in out if isinstance(c, SwitchAgent)]
    assert (switch.agent, switch.instructions) == ("billing", BILLING)
    (started,) = published(out, HandoffStarted)
    assert (started.previous, started.current, started.reason) == (
        "triage",
        "billing",
        "double charge",
    )
    assert call.roster.current == "billing"

    assert wire(done(call, 1, now=120)) == []  # the old response ends: still waiting
    out = feed(call, session_updated(), now=150)
    assert wire(out) == ["conversation.item.create", "response.create"]
    (output,) = sent(out, "conversation.item.create")
    assert output.item.type == "function_call_output" and output.item.call_id == "call_1"
    assert json.loads(output.item.output)["transferred_to"] == "billing"
    (applied,) = published(out, HandoffApplied)
    assert (applied.wait_ms, applied.barged_in, applied.responded) == (50, False, True)
    assert call.machine.state is CallState.THINKING


def test_session_updated_before_the_old_response_ends_holds_the_new_response_until_then() -> None:
    call = new_call()
    caller_turn(call, 1, "I have a billing question.")
    reply_starts(call, 1, "One moment.")
    transfer(call, 1, "transfer_to_billing", "billing")
    out = feed(call, session_updated(), now=30)
    assert wire(out) == ["conversation.item.create"]  # the output; response.create must wait
    assert call.machine.state is CallState.LISTENING
    out = done(call, 1, now=40)
    assert wire(out).count("response.create") == 1
    assert call.machine.state is CallState.THINKING


def test_a_barge_in_while_handing_off_cuts_the_line_and_the_old_agent_never_speaks_again() -> None:
    call = new_call()
    caller_turn(call, 1, "Billing please.")
    reply_starts(call, 1, "Sure, transferring you to billing now.")
    transfer(call, 1, "transfer_to_billing", "billing")
    call.ledger.utterance_began("a1", 20)
    call.ledger.chunk_started(600, 20)
    speech = server(
        InputAudioBufferSpeechStartedEvent,
        type="input_audio_buffer.speech_started",
        audio_start_ms=0,
        item_id="u2",
    )
    out = feed(call, speech, now=320)
    assert any(isinstance(c, StopOutput) for c in out)
    assert [e.response_id for e in sent(out, "response.cancel")] == ["r1"]
    (truncate,) = sent(out, "conversation.item.truncate")
    assert truncate.item_id == "a1" and 250 <= truncate.audio_end_ms <= 350  # what was heard
    assert published(out, InterruptionHandled)
    assert call.machine.state is CallState.HANDING_OFF
    done(call, 1, status="cancelled", now=330)

    # The server's VAD makes a response under the old instructions: cancelled, never played.
    out = reply_starts(call, 2, "Hello again from triage.", now=340)
    assert [e.response_id for e in sent(out, "response.cancel")] == ["r2"]
    assert not [c for c in out if isinstance(c, PlayAudio)]

    out = feed(call, session_updated(), now=360)
    assert wire(out) == ["conversation.item.create"]  # the caller is speaking: their turn answers
    (applied,) = published(out, HandoffApplied)
    assert applied.barged_in and not applied.responded
    assert call.machine.state is CallState.LISTENING
    assert not [c for c in done(call, 2, status="cancelled", now=370) if isinstance(c, PlayAudio)]


def test_a_transfer_the_agent_does_not_have_is_answered_with_an_error_and_the_call_stays() -> None:
    call = new_call()
    caller_turn(call, 1, "Can I talk to sales?")
    reply_starts(call, 1, "Let me see.")
    out = transfer(call, 1, "transfer_to_sales", "sales")
    assert not sent(out, "session.update")
    (output,) = sent(out, "conversation.item.create")
    body = json.loads(output.item.output)
    assert body == {
        "error": "transfer_to_sales does not exist",
        "transfers_available": ["transfer_to_billing"],
    }
    assert published(out, TransferRefused) == [TransferRefused("triage", "transfer_to_sales")]
    assert call.roster.current == "triage" and call.machine.state is CallState.CALLING_TOOL
    out = done(call, 1)
    assert wire(out) == ["response.create"]  # the model answers from the error


def test_the_new_agent_sees_a_bounded_context_with_the_callers_name() -> None:
    call = new_call()
    caller_turn(call, 1, "Hello, this is Grace Hopper calling.")
    reply_starts(call, 1, "Hello Grace, how can I help?")
    done(call, 1)
    for n in range(2, 6):
        caller_turn(call, n, f"Question number {n} about my account.")
        reply_starts(call, n, f"Answer number {n}.")
        done(call, n)
    caller_turn(call, 6, "Actually, my invoice is wrong.")
    reply_starts(call, 6, "Transferring you to billing.")
    out = transfer(call, 6, "transfer_to_billing", "invoice")
    (update,) = sent(out, "session.update")
    instructions = update.session.instructions
    assert "Grace Hopper" in instructions  # turn 1, carried in the summary
    assert TRIAGE not in instructions
    deleted = [e.item_id for e in sent(out, "conversation.item.delete")]
    assert "u1" in deleted and "a1" in deleted and "u6" not in deleted
    (started,) = published(out, HandoffStarted)
    assert started.kept_turns <= 2 and started.dropped_items == len(deleted) == 9  # u1-u5, a1-a4
    assert started.summary_chars > 0


def test_the_handoff_moves_through_handing_off_in_the_timeline() -> None:
    call = new_call()
    caller_turn(call, 1, "Billing.")
    reply_starts(call, 1, "Transferring.")
    out = transfer(call, 1, "transfer_to_billing", "")
    out += done(call, 1)
    out += feed(call, session_updated())
    moves = [(e.previous, e.current) for e in published(out, StateChanged)]
    assert moves == [
        (CallState.SPEAKING, CallState.HANDING_OFF),
        (CallState.HANDING_OFF, CallState.LISTENING),
        (CallState.LISTENING, CallState.THINKING),
    ]
