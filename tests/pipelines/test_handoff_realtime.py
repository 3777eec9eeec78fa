"""Triage hands a caller to billing on the realtime path, end to end on loopback.

A caller recording (real speech) plays through the file transport into the
realtime graph built from an agent file; the realtime service talks to
voxpipe's server through a recording proxy, and the server's brain answers
as whichever agent the session's instructions name. So the wire shows what
the handoff sent, and the brain shows who answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipecat.services.llm_service import FunctionCallParams
from realtime_calls import compose
from recording_proxy import RecordingProxy, Relayed, recording_proxy

from voxpipe.call.events import HandoffApplied, HandoffStarted, timeline_entry
from voxpipe.guardrails.config import load_agent_file
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import CallEvent, RealtimeService
from voxpipe.timeline import EventKind
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.realtime_server.agent_brain import (
    AgentLine,
    AgentScript,
    ScriptedAgentsBrain,
)

KEY = "test-key"
TRIAGE = "You are Acme's triage agent. Greet the caller, find out what they need."
BILLING = "You are Acme's billing agent. You answer billing questions."
AGENT_FILE = f"""
start = "triage"

[agents.triage]
instructions = "{TRIAGE}"
handoffs = ["billing"]

[agents.billing]
instructions = "{BILLING}"
tools = ["get_balance"]
handoffs = ["triage"]
"""
TRANSFER_LINE = "Let me transfer you to our billing team."
BILLING_LINE = "This is billing. Your balance is forty two dollars."


async def get_balance(params: FunctionCallParams) -> None:
    """The caller's account balance."""
    await params.result_callback({"balance_usd": 42})


def brain() -> ScriptedAgentsBrain:
    return ScriptedAgentsBrain(
        {
            "triage": AgentScript(
                TRIAGE,
                [AgentLine(TRANSFER_LINE, "transfer_to_billing", {"reason": "billing question"})],
            ),
            "billing": AgentScript(BILLING, [AgentLine(BILLING_LINE)]),
        },
        pace=2.0,
    )


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 (polls the proxy's record and the brain)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def index(messages: list[Relayed], test: Callable[[Relayed], bool]) -> int:
    return next(i for i, m in enumerate(messages) if test(m))


async def test_triage_hands_the_caller_to_billing_with_one_session_update(
    make_speech: Any, tmp_path: Path
) -> None:
    agent_file = tmp_path / "agent.toml"
    agent_file.write_text(AGENT_FILE)
    agents = load_agent_file(agent_file).agents
    assert agents is not None
    recording = tmp_path / "caller.wav"
    compose(make_speech, [400, "Hi, I have a question about my bill.", 12_000], recording)
    answers = brain()
    config = ServerConfig(api_key=KEY)
    async with (
        running_realtime_server(config=config, brain=answers) as srv,
        recording_proxy(srv.realtime_url) as proxy,
    ):
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=proxy.url, api_key=KEY, tools=[get_balance], agents=agents
        )
        service = graph.brain
        assert isinstance(service, RealtimeService)
        events: list[CallEvent] = []

        @service.event_handler("on_call_event")
        async def _on_event(_s: RealtimeService, event: CallEvent) -> None:
            events.append(event)

        async with CallSession(graph.pipeline, end_timeout_secs=5):
            await wait_for(lambda: len(answers.answered) >= 2, "the second response")
            billing_response = answers.answered[1].response_id
            await wait_for(lambda: _done(proxy, billing_response), "the billing response's end")

    assert [a.agent for a in answers.answered[:2]] == ["triage", "billing"]
    assert answers.answered[1].tools == ("get_balance", "transfer_to_triage")
    assert answers.answered[1].instructions.startswith(BILLING)
    assert TRIAGE not in answers.answered[1].instructions
    _check_the_wire(proxy, billing_response)
    (started,) = [e for e in events if isinstance(e, HandoffStarted)]
    assert (started.previous, started.current, started.reason) == (
        "triage",
        "billing",
        "billing question",
    )
    (applied,) = [e for e in events if isinstance(e, HandoffApplied)]
    assert applied.responded and not applied.barged_in
    entry = timeline_entry(started)
    assert entry is not None and entry[0] is EventKind.HANDOFF


def _done(proxy: RecordingProxy, response_id: str) -> bool:
    return any(
        not m.from_client
        and m.type == "response.done"
        and m.body["response"].get("id") == response_id
        for m in proxy.messages
    )


def _check_the_wire(proxy: RecordingProxy, billing_response: str) -> None:
    wire = proxy.messages
    call_at = index(
        wire,
        lambda m: (
            not m.from_client
            and m.type == "response.function_call_arguments.done"
            and m.body["name"] == "transfer_to_billing"
        ),
    )
    call_id = wire[call_at].body["call_id"]
    output_at = index(
        wire,
        lambda m: (
            m.from_client
            and m.type == "conversation.item.create"
            and m.body["item"].get("call_id") == call_id
        ),
    )
    between = [m for m in wire[call_at:output_at] if m.from_client]
    updates = [m for m in between if m.type == "session.update"]
    assert len(updates) == 1, [m.type for m in between]
    session = updates[0].body["session"]
    assert set(session) == {"type", "instructions", "tools"}  # audio, VAD, transcription untouched
    assert session["instructions"].startswith(BILLING)
    assert [t["name"] for t in session["tools"]] == ["get_balance", "transfer_to_triage"]
    assert not [m for m in between if m.type == "response.create"]
    # session.updated came back before the output went out, and the audio stayed as it was.
    server_after = [m for m in wire[call_at:output_at] if not m.from_client]
    updated = [m for m in server_after if m.type == "session.updated"]
    assert len(updated) == 1
    first = next(m for m in wire if not m.from_client and m.type == "session.updated")
    assert updated[0].body["session"]["audio"] == first.body["session"]["audio"]
    assert updated[0].body["session"]["instructions"].startswith(BILLING)
    # Then exactly one response.create, and the response it made is billing's.
    creates = [m for m in wire[output_at:] if m.from_client and m.type == "response.create"]
    assert len(creates) == 1
    created = [
        m.body["response"]["id"]
        for m in wire[output_at:]
        if not m.from_client and m.type == "response.created"
    ]
    assert created[:1] == [billing_response]
    audio = [
        m
        for m in wire
        if not m.from_client
        and m.type == "response.output_audio.delta"
        and m.body["response_id"] == billing_response
    ]
    assert audio  # billing spoke
