"""The direct-mode sideband core: tools, guardrail trips, cost and timeline from events."""

from __future__ import annotations

from voxpipe.call.sideband import RunTool, SendEvent, SidebandControl
from voxpipe.guardrails import DenyPolicy
from voxpipe.timeline import EventKind

USAGE = {
    "total_tokens": 30,
    "input_tokens": 20,
    "output_tokens": 10,
    "input_token_details": {"text_tokens": 20, "audio_tokens": 0, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 2, "audio_tokens": 8},
}


def test_a_tool_of_voxpipe_runs_and_its_output_answers() -> None:
    control = SidebandControl(tools=frozenset({"lookup_hours"}))
    done = {
        "type": "response.function_call_arguments.done",
        "name": "lookup_hours",
        "call_id": "call_1",
        "arguments": '{"day": "saturday"}',
    }
    assert control.on_event(done, 100) == [RunTool("call_1", "lookup_hours", '{"day": "saturday"}')]
    sent = control.tool_finished("call_1", "lookup_hours", '{"opens": "9:00"}', 160)
    assert [c.event["type"] for c in sent] == ["conversation.item.create", "response.create"]
    assert sent[0].event["item"] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"opens": "9:00"}',
    }
    assert control.tool_calls == [{"call_id": "call_1", "name": "lookup_hours", "ms": 60}]


def test_a_tool_that_is_not_voxpipes_is_left_alone() -> None:
    control = SidebandControl(tools=frozenset({"lookup_hours"}))
    other = {"type": "response.function_call_arguments.done", "name": "open_door", "call_id": "c"}
    assert control.on_event(other, 0) == []


def test_a_trip_in_the_transcript_cancels_and_clears_once() -> None:
    control = SidebandControl(tools=frozenset(), policies=[DenyPolicy(words=["swordfish"])])
    delta = {"type": "response.output_audio_transcript.delta", "response_id": "resp_1"}
    assert control.on_event({**delta, "delta": "The password is sword"}, 10) == []
    commands = control.on_event({**delta, "delta": "fish."}, 20)  # caught across deltas
    assert commands == [
        SendEvent({"type": "response.cancel", "response_id": "resp_1"}),
        SendEvent({"type": "output_audio_buffer.clear"}),
    ]
    assert control.on_event({**delta, "delta": " swordfish"}, 30) == []  # once per response
    assert [t["rule"] for t in control.trips] == ["deny:swordfish"]
    assert control.timeline.of(EventKind.GUARDRAIL_TRIPPED)


def test_usage_is_priced_and_the_report_has_no_audio() -> None:
    control = SidebandControl(tools=frozenset())
    response = {"id": "r1", "status": "completed", "usage": USAGE}
    done = {"type": "response.done", "response": response}
    control.on_event(done, 500)
    report = control.report()
    assert report["responses"] == 1 and report["cost_complete"]
    assert float(report["cost_usd"]) > 0
    assert report["mode"] == "direct" and report["audio"].startswith("none")
    assert control.timeline.of(EventKind.COST)


def test_a_replacing_call_is_seeded_with_what_was_said_and_never_a_tripped_reply() -> None:
    control = SidebandControl(tools=frozenset(), policies=[DenyPolicy(words=["swordfish"])])
    assert control.seed("Be brief.", 0) == []  # nothing said yet: nothing to seed
    heard = "conversation.item.input_audio_transcription.completed"
    control.on_event({"type": heard, "item_id": "i1", "transcript": "When do you open?"}, 10)
    said = {"type": "response.output_audio_transcript.done", "response_id": "r1"}
    control.on_event({**said, "item_id": "i2", "transcript": "At nine."}, 20)
    control.on_event({"type": heard, "item_id": "i3", "transcript": "And the password?"}, 30)
    delta = {"type": "response.output_audio_transcript.delta", "response_id": "r2"}
    control.on_event({**delta, "delta": "It is swordfish."}, 40)  # tripped
    control.on_event({**said, "response_id": "r2", "transcript": "It is swordfish."}, 50)
    [update] = control.seed("Be brief.", 60)
    assert update.event["type"] == "session.update"
    instructions = update.event["session"]["instructions"]
    assert instructions.startswith("Be brief.")
    assert "user: When do you open?" in instructions and "assistant: At nine." in instructions
    assert "user: And the password?" in instructions and "swordfish" not in instructions
    assert control.timeline.of(EventKind.RECONNECT)


def test_a_sideband_blip_is_on_the_timeline_and_in_the_report() -> None:
    control = SidebandControl(tools=frozenset())
    assert control.report()["sideband_reconnects"] == 0
    control.reconnected(1_000, attempt=2)
    assert control.report()["sideband_reconnects"] == 1
    [event] = control.timeline.of(EventKind.RECONNECT)
    assert event.data == {"leg": "sideband", "attempt": 2}
