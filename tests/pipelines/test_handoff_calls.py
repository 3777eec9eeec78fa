"""Triage hands a caller to billing, on the realtime path and the chained path, end to end.

A caller recording (real speech) plays through the file transport into a
graph built from one agent file. Realtime: the service talks to voxpipe's
server through a recording proxy, and the server's brain answers as
whichever agent the session's instructions name, so the wire shows what the
handoff sent and the brain shows who answered. Chained: local Whisper hears
the caller, a loopback stand-in for OpenAI's chat (the paid remote provider)
answers as the agent the context's system message names, local TTS speaks.
Both paths must give the same handoffs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acme_agents import BILLING, CALLER, SCRIPTS, TRIAGE, agent_file, get_balance
from fake_openai_agents import AgentsChat, Chat, running_agents_chat
from pipecat.observers.base_observer import BaseObserver, FramePushed
from realtime_calls import compose
from recording_proxy import RecordingProxy, Relayed, recording_proxy

from voxpipe.call.events import HandoffApplied, HandoffStarted, timeline_entry
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.guardrails.config import load_agent_file
from voxpipe.pipelines.chained import build_chained_pipeline
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.realtime import CallEvent, RealtimeService
from voxpipe.timeline import EventKind
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.realtime_server.agent_brain import (
    ScriptedAgentsBrain,
)

KEY = "test-key"
AGENT_FILE = agent_file(billing_tools=["get_balance"])


# What both paths must do: (from, to, reason) of each handoff, in order.
HANDOFFS = [("triage", "billing", "billing question")]


def brain() -> ScriptedAgentsBrain:
    return ScriptedAgentsBrain(SCRIPTS, pace=2.0)


def handoffs(events: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.previous, e.current, e.reason) for e in events if isinstance(e, HandoffStarted)]


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
    compose(make_speech, [*CALLER, 12_000], recording)
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
            await wait_for(lambda: len(answers.answered) >= 3, "the third response")
            billing_response = answers.answered[2].response_id
            await wait_for(lambda: _done(proxy, billing_response), "the billing response's end")

    assert [a.agent for a in answers.answered[:3]] == ["triage", "triage", "billing"]
    assert answers.answered[0].tools == ("transfer_to_billing",)
    assert answers.answered[2].tools == ("get_balance", "transfer_to_triage")
    assert answers.answered[2].instructions.startswith(BILLING)
    assert TRIAGE not in answers.answered[2].instructions
    _check_the_wire(proxy, billing_response)
    assert handoffs(events) == HANDOFFS
    (started,) = [e for e in events if isinstance(e, HandoffStarted)]
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
    # The session holds the conversation already: voxpipe adds tool outputs to it and
    # never the whole history again (pipecat's conversation set-up, on the first
    # response voxpipe asked for itself, sent it as one more user message).
    items = [m.body["item"] for m in wire if m.from_client and m.type == "conversation.item.create"]
    assert [i["type"] for i in items] == ["function_call_output"] * len(items), items
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


async def test_the_same_agent_file_hands_off_the_same_way_on_the_chained_path(
    make_speech: Any, tmp_path: Path
) -> None:
    agent_file = tmp_path / "agent.toml"
    agent_file.write_text(AGENT_FILE)
    agents = load_agent_file(agent_file).agents
    assert agents is not None
    recording = tmp_path / "caller.wav"
    compose(make_speech, [*CALLER, 14_000], recording)
    async with running_agents_chat(SCRIPTS) as chat:
        transport = FileTransport(recording, paced=True)
        graph = build_chained_pipeline(
            transport, llm=chat.llm_service(), tools=[get_balance], agents=agents, openai_api_key=""
        )
        events = Recorded()
        async with CallSession(graph, observers=[events], end_timeout_secs=5):
            try:
                await wait_for(lambda: _billing_chat(chat) is not None, "billing's chat", 120.0)
            except AssertionError:
                raise AssertionError(f"chats so far: {chat.chats}") from None
            await wait_for(lambda: transport.bot_pcm() != b"", "the bot's voice", 60.0)

    assert handoffs(events.events) == HANDOFFS  # as on the realtime path
    second = _billing_chat(chat)
    assert second is not None
    # Triage greeted, then transferred; every later chat is billing's (the old agent never
    # answers again, even for a caller's turn that came while the handoff went on).
    agents_in_order = [c.agent for c in chat.chats]
    at = agents_in_order.index("billing")
    before = agents_in_order[:at]
    assert len(before) >= 2 and set(before) == {"triage"}, before
    assert set(agents_in_order[at:]) == {"billing"}, agents_in_order
    first = chat.chats[0]
    assert first.tools == ("transfer_to_billing",)
    assert second.tools == ("get_balance", "transfer_to_triage")
    system = [m for m in second.messages if m["role"] == "system"]
    assert len(system) == 1 and system[0]["content"].startswith(BILLING)
    assert TRIAGE not in json.dumps(second.messages)  # the old agent's instructions are gone
    # The caller's name (turn 1) is carried, in the summary or the last turns verbatim.
    carried = json.dumps(second.messages).lower()
    assert any(name in carried for name in ("john", "jon", "smith")), carried
    (result,) = [m for m in second.messages if m["role"] == "tool"]
    assert json.loads(result["content"])["transferred_to"] == "billing"
    assert len(second.messages) <= 1 + agents.settings.keep_turns + 2
    (applied,) = [e for e in events.events if isinstance(e, HandoffApplied)]
    assert applied.responded


def _billing_chat(chat: AgentsChat) -> Chat | None:
    """Billing's answer to the handoff: its first chat that ends on the transfer's result."""
    return next(
        (c for c in chat.chats if c.agent == "billing" and c.messages[-1]["role"] == "tool"),
        None,
    )


class Recorded(BaseObserver):
    """The call events the graph carried (the chained path's handoff events among them)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.first_push and isinstance(data.frame, RealtimeCallEventFrame):
            self.events.append(data.frame.event)
