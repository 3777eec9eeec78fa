"""Supervisor delegation on the realtime path, end to end on voxpipe's own Realtime server.

A caller recording (real speech) plays through the file transport; the
server's VAD ends the turn and its brain, a scripted model that follows what
it is told, calls ``delegate`` with the caller's request; says a line it is
given in response-level instructions as given; and relays a tool result's
answer. The backend is a loopback stand-in for OpenAI's chat model (the paid
remote provider) answering after 1.5 s (a slow backend: one filler, then the
answer) or 0.1 s (a fast one: no filler), the threshold 1000 ms. A recording
proxy shows what went over the wire, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from delegating_brain import DelegatingBrain
from fake_openai_supervisor import API_KEY, Role, running_supervisor_chat
from realtime_calls import compose
from recording_proxy import RecordingProxy, Relayed, recording_proxy

from voxpipe.cli import main
from voxpipe.delegation import DelegateBackend, DelegationSettings
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.pipelines.session import CallSession
from voxpipe.processors.delegation import LOCAL_PAIRING_INSTRUCTION
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.processors.realtime.delegation import FILLER_INSTRUCTION, realtime_backend
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.file import FileTransport
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server

KEY = "test-key"
QUESTION = "What is the balance on my account?"
BACKEND = "You are Acme's accounts expert."
FILLERS = ("One moment.", "Let me check that.")
# The test process runs the server, the proxy, the stand-in and the call on one event
# loop; at load 21-25 on 2 cores a 0.1 s backend was once measured past 700 ms (a filler
# said, as the rule says for such a wait). 1000 ms keeps the fast wait under it and the
# 1.5 s one over it.
THRESHOLD_MS = 1000
pytestmark = pytest.mark.timeout(300)


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 (polls the proxy's record and the brain)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def done(proxy: RecordingProxy, response_id: str) -> bool:
    return any(
        not m.from_client
        and m.type == "response.done"
        and m.body["response"].get("id") == response_id
        for m in proxy.messages
    )


def first(wire: list[Relayed], test: Callable[[Relayed], bool]) -> int:
    return next(i for i, m in enumerate(wire) if test(m))


@pytest.mark.parametrize(
    ("delay_s", "fillers"),
    [(0.1, ()), (1.5, FILLERS[:1])],
    ids=["fast-0.1s-no-filler", "slow-1.5s-one-filler"],
)
async def test_the_realtime_model_delegates_and_fills_only_a_long_wait(
    make_speech: Any, tmp_path: Path, delay_s: float, fillers: tuple[str, ...]
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1500, QUESTION, 12_000], recording)
    brain = DelegatingBrain(QUESTION)
    settings = DelegationSettings(DelegateBackend.OPENAI, THRESHOLD_MS, FILLERS, BACKEND)
    timeline = Timeline()
    async with (
        running_supervisor_chat(backend_delay_s=delay_s) as chat,
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
        recording_proxy(srv.realtime_url) as proxy,
    ):
        transport = FileTransport(recording, paced=True)
        graph = build_realtime_pipeline(
            transport,
            server_url=proxy.url,
            api_key=KEY,
            delegate=settings,
            delegate_backend=realtime_backend(settings, API_KEY, base_url=chat.url),
        )
        observers = [TimelineObserver(timeline, transport.clock.now_ms)]
        async with CallSession(graph, observers=observers, end_timeout_secs=5):
            answer = chat.backend_answer
            await wait_for(lambda: any(s == answer for _, s in brain.said), "the relay")
            relay = next(r for r, s in brain.said if s == answer)
            await wait_for(lambda: done(proxy, relay), "the relay's end")

    # The model delegated once; then the filler (when the wait was long); then the answer.
    waits = [e.data for e in timeline.events if e.kind in (EventKind.DELEGATION, EventKind.FILLER)]
    assert [s for _, s in brain.said] == ["", *fillers, chat.backend_answer], (waits, _story(proxy))
    (backend,) = chat.of(Role.BACKEND)  # OpenAI's chat model answered, told what it is for
    assert backend.messages[0]["content"] == f"{LOCAL_PAIRING_INSTRUCTION}\n\n{BACKEND}"
    assert backend.messages[-1] == {"role": "user", "content": QUESTION}
    _check_the_wire(proxy.messages, fillers, chat.backend_answer, relay)
    _check_the_timeline(timeline, fillers, delay_s)


def _check_the_wire(wire: list[Relayed], fillers: tuple[str, ...], answer: str, relay: str) -> None:
    call_at = first(
        wire,
        lambda m: (
            not m.from_client
            and m.type == "response.function_call_arguments.done"
            and m.body["name"] == "delegate"
        ),
    )
    call_id = wire[call_at].body["call_id"]
    assert json.loads(wire[call_at].body["arguments"]) == {"request": QUESTION}
    output_at = first(
        wire,
        lambda m: (
            m.from_client
            and m.type == "conversation.item.create"
            and m.body["item"].get("call_id") == call_id
        ),
    )
    output = json.loads(wire[output_at].body["item"]["output"])
    assert output == {"answer": answer}  # the backend's answer is the tool's result
    # Between the call and its output, only the filler's response (instructed) went out.
    creates = [m for m in wire[call_at:output_at] if m.from_client and m.type == "response.create"]
    told = [m.body["response"].get("instructions") for m in creates]
    assert told == [FILLER_INSTRUCTION.format(line=f) for f in fillers]
    # After the output exactly one response.create, and its response is the relay.
    after = [m for m in wire[output_at:] if m.from_client and m.type == "response.create"]
    assert len(after) == 1 and "instructions" not in (after[0].body.get("response") or {})
    created = [
        m.body["response"]["id"]
        for m in wire[output_at:]
        if not m.from_client and m.type == "response.created"
    ]
    assert created[:1] == [relay]


def _check_the_timeline(timeline: Timeline, fillers: tuple[str, ...], delay_s: float) -> None:
    lines = [e for e in timeline.events if e.kind in (EventKind.DELEGATION, EventKind.FILLER)]
    phases = [e.data.get("phase", "filler") for e in lines]
    assert phases == ["asked", *["filler"] * len(fillers), "answered"], lines
    answered = lines[-1].data
    assert answered["filled"] is bool(fillers)
    assert answered["waited_ms"] >= delay_s * 1000
    filler_lines = timeline.of(EventKind.FILLER)
    assert [e.data["wording"] for e in filler_lines] == list(fillers)
    for filler in filler_lines:
        assert THRESHOLD_MS <= filler.data["waited_ms"] < answered["waited_ms"]
    if not fillers:
        assert answered["waited_ms"] < THRESHOLD_MS, answered
    turns = [t for t in timeline.turns() if t.first_audio_ms is not None]
    assert len(turns) == 1, timeline.turns()
    (turn,) = turns
    assert turn.latency_ms is not None  # to the answer's audio
    if fillers:
        assert turn.filler_ms is not None and turn.filler_ms < turn.first_audio_ms
        assert turn.filler_latency_ms is not None and turn.filler_latency_ms < turn.latency_ms
    else:
        assert turn.filler_ms is None


def _story(proxy: RecordingProxy) -> list[str]:
    """The wire's turn-taking events, for a failed assertion's message."""
    keep = ("response.create", "response.created", "response.done", "conversation.item.create")
    return [
        ("C " if m.from_client else "S ") + m.type + " " + json.dumps(m.body)[:300]
        for m in proxy.messages
        if m.type in keep or m.type.startswith("input_audio_buffer.speech")
    ]


async def test_voxpipe_call_delegates_on_the_realtime_path_worded_anew_each_wait(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent file's ``[delegate]`` through ``voxpipe call --mode realtime``: two slow
    waits in one call, each filled once, the second filler worded differently."""
    agent = tmp_path / "agent.toml"
    fillers = ", ".join(f'"{f}"' for f in FILLERS)
    agent.write_text(
        f'instructions = "You are Acme\'s voice assistant."\n[delegate]\nbackend = "openai"\n'
        f'threshold_ms = 700\nfillers = [{fillers}]\ninstructions = "{BACKEND}"\n'
    )
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1500, QUESTION, 9000, "And when is my next bill due?", 10_000], recording)
    out = tmp_path / "out"
    brain = DelegatingBrain(QUESTION)
    async with (
        running_supervisor_chat(backend_delay_s=1.5) as chat,
        running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv,
    ):
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # the backend's (OpenAI's chat model)
        monkeypatch.setenv("OPENAI_BASE_URL", chat.url)
        args = ["call", "--input", str(recording), "--out", str(out), "--mode", "realtime"]
        args += ["--server", srv.realtime_url, "--api-key", KEY, "--config", str(agent)]
        # The command runs its own event loop; the stand-in and server serve from this one.
        code = await asyncio.to_thread(main, args)
    assert code == 0
    answer = chat.backend_answer
    assert [s for _, s in brain.said] == ["", FILLERS[0], answer, "", FILLERS[1], answer]
    assert len(chat.of(Role.BACKEND)) == 2
    timeline = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    said = [e["wording"] for e in timeline if e["type"] == "filler"]
    assert said == list(FILLERS)  # one per wait, never the same twice in a row
    answered = [e for e in timeline if e["type"] == "delegation" and e["phase"] == "answered"]
    assert [(e["delegation"], e["filled"]) for e in answered] == [(1, True), (2, True)]
    report = json.loads((out / "report.json").read_text())
    turns = [t for t in report["turns"] if t.get("answer_latency_ms") is not None]
    assert len(turns) == 2, report["turns"]
    for turn in turns:  # the latency runs to the answer; the filler is marked apart
        assert turn["filler_latency_ms"] is not None
        assert turn["filler_latency_ms"] < turn["answer_latency_ms"]
