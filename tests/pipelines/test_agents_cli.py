"""``start`` + ``[agents]`` through ``voxpipe call``, ``serve`` and ``daily``: the agent
file's agents take the call and hand it on, or the command stops before anything starts.

The calls are the real command (``main(["call", ...])``) on a caller recording
of real speech. Realtime: the in-process Realtime server with the scripted
brain (``--brain scripted --script``), whose second response calls
``transfer_to_billing``. Chained: local Whisper and Piper in the ``[chained]``
STT and TTS slots, a loopback stand-in for OpenAI's chat (the paid remote
provider) answering as the agent the context's system message names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from acme_agents import (
    BILLING,
    BILLING_LINE,
    CALLER,
    GREETING,
    REASON,
    SCRIPTS,
    TRANSFER_LINE,
    TRIAGE,
    agent_file,
)
from fake_daily import FakeRoom, installed
from fake_openai_agents import API_KEY, running_agents_chat
from realtime_calls import compose
from webrtc_peer import calling

from voxpipe.cli import main
from voxpipe.cli.serve import _agents
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.timeline import EventKind
from voxpipe.transports.daily.call import DailyCall, RoomOptions
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.realtime_server.agent_brain import (
    ScriptedAgentsBrain,
)
from voxpipe.transports.webrtc.app import ServeConfig, running_serve

AGENTS = agent_file()
KEY = "test-key"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def handoffs(out: Path) -> list[dict[str, Any]]:
    return [e for e in lines(out / "timeline.jsonl") if e["type"] == "handoff"]


async def call(tmp_path: Path, make_speech: Any, toml: str, tail_ms: int, *extra: str) -> Path:
    agent = tmp_path / "agent.toml"
    agent.write_text(toml)
    caller = tmp_path / "caller.wav"
    compose(make_speech, [*CALLER, tail_ms], caller)
    out = tmp_path / "out"
    args = ["call", "--input", str(caller), "--out", str(out), "--config", str(agent), *extra]
    # The command runs its own event loop (a stand-in may serve from this one).
    code = await asyncio.to_thread(main, args)
    assert code == 0
    return out


def check_the_handoff(out: Path, transfer_line: str | None = None) -> None:
    """One handoff from triage to billing, applied, and billing's line after it
    (and ``transfer_line``, when triage says one, between them)."""
    entries = handoffs(out)
    started = [e for e in entries if e["phase"] == "started"]
    applied = [e for e in entries if e["phase"] == "applied"]
    assert [(e["from"], e["to"], e["reason"]) for e in started] == [("triage", "billing", REASON)]
    assert [(e["from"], e["to"]) for e in applied] == [("triage", "billing")], entries
    assert applied[0]["responded"] is True and applied[0]["barged_in"] is False
    assert not [e for e in entries if e["phase"] == "refused"]
    transcript = json.loads((out / "transcript.json").read_text())
    replies = [t["replied"] for t in transcript["turns"]]
    said = " ".join(replies)
    assert GREETING in said and BILLING_LINE in said, replies
    assert said.index(GREETING) < said.index(BILLING_LINE)
    if transfer_line is not None:
        assert said.index(GREETING) < said.index(transfer_line) < said.index(BILLING_LINE)


@pytest.mark.timeout(600)
async def test_voxpipe_call_hands_the_caller_from_triage_to_billing_on_realtime(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the in-process server answers
    script = tmp_path / "script.json"
    transfer = {"function_call": {"name": "transfer_to_billing", "arguments": {"reason": REASON}}}
    script.write_text(json.dumps([GREETING, transfer, BILLING_LINE]))
    extra = ("--mode", "realtime", "--brain", "scripted", "--script", str(script))
    out = await call(tmp_path, make_speech, AGENTS, 8_000, *extra)
    check_the_handoff(out)
    report = json.loads((out / "report.json").read_text())
    assert report["outcome"]["end"] == "completed", report["outcome"]
    # The report lists the handoff, from its transfer to the new agent in force.
    (handoff,) = report["agents"]["handoffs"]
    assert (handoff["from"], handoff["to"], handoff["reason"]) == ("triage", "billing", REASON)
    assert handoff["applied_at_ms"] >= handoff["at_ms"], handoff
    assert "<h2>Agent handoffs</h2>" in (out / "report.html").read_text()


@pytest.mark.timeout(600)
async def test_the_realtime_session_runs_as_each_agent_in_turn(
    make_speech: Any, tmp_path: Path
) -> None:
    # A server whose brain answers as whichever agent the session is set up as (the
    # instructions it holds), as a real model would: the handoff's session.update decides.
    brain = ScriptedAgentsBrain(SCRIPTS, pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        extra = ("--mode", "realtime", "--server", srv.realtime_url, "--api-key", KEY)
        out = await call(tmp_path, make_speech, AGENTS, 8_000, *extra)
    check_the_handoff(out, transfer_line=TRANSFER_LINE)
    answered = brain.answered
    assert [a.agent for a in answered] == ["triage", "triage", "billing"], answered
    assert answered[0].tools == ("transfer_to_billing",)
    assert answered[0].instructions.startswith(TRIAGE)
    assert answered[2].tools == ("transfer_to_triage",)
    assert answered[2].instructions.startswith(BILLING)
    assert TRIAGE not in answered[2].instructions


@pytest.mark.timeout(600)
async def test_voxpipe_call_hands_the_caller_from_triage_to_billing_on_chained(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = '[chained]\nstt = ["whisper"]\ntts = ["piper"]\n'
    async with running_agents_chat(SCRIPTS) as chat:
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", chat.url)
        out = await call(tmp_path, make_speech, AGENTS + slots, 14_000, "--mode", "chained")
    check_the_handoff(out)
    # The chats: triage's until the transfer, billing's from then on, with billing's
    # instructions and tools and not triage's.
    agents = [c.agent for c in chat.chats]
    at = agents.index("billing")
    assert at >= 2 and set(agents[:at]) == {"triage"}, agents
    assert set(agents[at:]) == {"billing"}, agents
    assert chat.chats[0].tools == ("transfer_to_billing",)
    billing = chat.chats[at]
    assert billing.tools == ("transfer_to_triage",)
    assert TRIAGE not in json.dumps(billing.messages)


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the brain's and the server's state
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


@pytest.mark.timeout(600)
async def test_voxpipe_serve_gives_each_webrtc_call_the_files_agents(
    make_speech: Any, tmp_path: Path
) -> None:
    # The serve command's own reading of --config, then a WebRTC caller (aiortc).
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENTS)
    args = argparse.Namespace(config=agent, mode="realtime", fallback=None, direct=False)
    agents = _agents(args)
    assert agents is not None and agents.start == "triage"
    recording = tmp_path / "caller.wav"
    compose(make_speech, [*CALLER, 3_000], recording)
    brain = ScriptedAgentsBrain(SCRIPTS, pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        spec = LiveCallSpec(
            server_url=srv.realtime_url, api_key=KEY, record_dir=tmp_path / "calls", agents=agents
        )
        async with running_serve(ServeConfig(call=spec)) as serve:
            async with calling(serve.url, recording, live_mic=True) as caller:
                call_id = caller.answer["call_id"]
                await until(lambda: len(brain.answered) >= 3, 120, "billing's response")
                await until(lambda: BILLING_LINE in _bot_said(caller.messages), 60, "its line")
            await until(lambda: not serve.app.calls, 30, "the call's end")
    assert [a.agent for a in brain.answered[:3]] == ["triage", "triage", "billing"]
    assert brain.answered[2].instructions.startswith(BILLING)
    out = tmp_path / "calls" / call_id
    await until(lambda: (out / "report.json").exists(), 60, "the call's report")
    started = [e for e in handoffs(out) if e["phase"] == "started"]
    assert [(e["from"], e["to"], e["reason"]) for e in started] == [("triage", "billing", REASON)]


@pytest.mark.timeout(600)
async def test_voxpipe_daily_gives_its_call_the_files_agents(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daily command's reading of --config (no --direct there), then the agent in a
    # room of daily-python's stand-in (the paid remote provider), a human asking twice.
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENTS)
    args = argparse.Namespace(config=agent, mode="realtime", fallback=None)
    agents = _agents(args)
    assert agents is not None
    room = FakeRoom()
    brain = ScriptedAgentsBrain(SCRIPTS, pace=2.0)
    async with running_realtime_server(config=ServerConfig(api_key=KEY), brain=brain) as srv:
        spec = LiveCallSpec(server_url=srv.realtime_url, api_key=KEY, agents=agents)
        with installed(monkeypatch, room):
            call = DailyCall(RoomOptions(room.url, greeting=None), spec)
            task = asyncio.create_task(call.run())
            try:
                await until(lambda: room.agent_joined or task.done(), 30, "the agent to join")
                alice = room.human_joins("Alice")
                alice.say(_pcm(make_speech, CALLER[1]))
                await until(lambda: len(brain.answered) >= 1, 60, "triage's greeting")
                # Alice asks once the greeting has played: said over the call's first reply,
                # before the echo guard has learned the line's coupling, her words were at
                # times all judged echo (nothing barged in, and billing never came).
                played = EventKind.BOT_STOPPED_SPEAKING
                await until(lambda: bool(call.call.timeline.of(played)), 60, "the greeting heard")
                alice.say(_pcm(make_speech, CALLER[3]))
                try:
                    await until(lambda: len(brain.answered) >= 3, 120, "billing's response")
                except AssertionError as stuck:
                    # What the call went through, so a rare failure can be diagnosed.
                    answered = [(a.response_id, a.agent) for a in brain.answered]
                    tail = call.call.timeline.jsonl().splitlines()[-60:]
                    raise AssertionError(
                        f"{stuck}; answered {answered}; timeline:\n" + "\n".join(tail)
                    ) from None
            finally:
                call.end()
                await asyncio.wait_for(asyncio.shield(task), 30)
    assert [a.agent for a in brain.answered[:3]] == ["triage", "triage", "billing"]
    entries = [e.data for e in call.call.timeline.of(EventKind.HANDOFF)]
    assert [(e["phase"], e["from"], e["to"]) for e in entries] == [
        ("started", "triage", "billing"),
        ("applied", "triage", "billing"),
    ], entries


def _pcm(make_speech: Any, text: Any) -> bytes:
    """``text`` spoken as 16 kHz mono PCM with silence after it (what a human says)."""
    audio, _ = sf.read(str(make_speech(str(text), lead_ms=0, tail_ms=1500)), dtype="int16")
    return np.asarray(audio, dtype="<i2").tobytes()


def _bot_said(messages: list[Any]) -> str:
    """The bot's final captions on the page's data channel (a caption per sentence)."""
    decoded = [json.loads(m) for m in messages if isinstance(m, str) and m.startswith("{")]
    return " ".join(
        m["text"]
        for m in decoded
        if m.get("type") == "caption" and m.get("role") == "bot" and m.get("final")
    )


def refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, toml: str, *extra: str
) -> str:
    agent = tmp_path / "agent.toml"
    agent.write_text(toml)
    out = tmp_path / "out"
    if command == "call":
        args = ["call", "--input", str(tmp_path / "caller.wav"), "--out", str(out), *extra]
    elif command == "serve":
        args = ["serve", "--port", "0", "--record", str(out), *extra]
    else:
        args = ["daily", "https://acme.daily.co/room", "--record", str(out), *extra]
    assert main([*args, "--config", str(agent)]) == 2
    assert not out.exists()  # nothing started, nothing written
    return capsys.readouterr().err


WITH_TOOL = AGENTS.replace(
    'handoffs = ["triage"]', 'handoffs = ["triage"]\ntools = ["get_balance"]'
)


@pytest.mark.parametrize("mode", ["realtime", "chained"])
@pytest.mark.parametrize("command", ["call", "serve", "daily"])
def test_an_agent_tool_without_a_handler_is_refused_by_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, mode: str
) -> None:
    error = refused(capsys, tmp_path, command, WITH_TOOL, "--mode", mode)
    agent = tmp_path / "agent.toml"
    expected = (
        f"voxpipe {command}: error: {agent}: [agents.billing].tools: agent 'billing' lists "
        "the tool 'get_balance', and the command line has no handler to run it: "
        "tools with handlers need the Python API"
    )
    assert expected in error, error


def test_a_transfer_tool_listed_as_a_tool_points_at_handoffs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    toml = AGENTS.replace('handoffs = ["billing"]', 'tools = ["transfer_to_billing"]')
    error = refused(capsys, tmp_path, "call", toml)
    assert "[agents.triage].tools: agent 'triage' lists the tool 'transfer_to_billing'" in error
    assert 'write handoffs = ["billing"] instead' in error


@pytest.mark.parametrize("command", ["call", "serve", "daily"])
def test_agents_beside_a_fallback_brain_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    # The chained brain taking over a failed realtime call would answer as no agent.
    error = refused(
        capsys, tmp_path, command, AGENTS, "--mode", "realtime", "--fallback", "chained"
    )
    agent = tmp_path / "agent.toml"
    assert f"{agent}: [agents]: cannot be combined with a fallback brain" in error, error


def test_agents_beside_direct_mode_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    error = refused(capsys, tmp_path, "serve", AGENTS, "--direct")
    assert "[agents]: cannot be combined with --direct" in error, error


@pytest.mark.parametrize("command", ["call", "serve", "daily"])
def test_agents_with_delegation_stay_refused_as_before(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    toml = f'{AGENTS}\n[delegate]\nbackend = "local"\n'
    error = refused(capsys, tmp_path, command, toml, "--mode", "chained")
    assert "delegate: cannot be combined with [agents]" in error, error


@pytest.mark.parametrize("command", ["call", "serve"])
def test_two_voices_on_realtime_are_refused_before_the_call(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    toml = AGENTS.replace(
        'handoffs = ["billing"]', 'handoffs = ["billing"]\nvoice = "alloy"'
    ).replace('handoffs = ["triage"]', 'handoffs = ["triage"]\nvoice = "verse"')
    error = refused(capsys, tmp_path, command, toml, "--mode", "realtime")
    assert "[agents].voice: agents speak in different voices" in error, error
