"""``[delegate]`` through ``voxpipe call`` and ``voxpipe serve``: the agent file's table
runs a delegating call, or stops the command before anything starts.

The call is the real command (``main(["call", ...])``): local Whisper and Piper
in the ``[chained]`` STT and TTS slots, a loopback stand-in for OpenAI's chat
(the paid remote provider) as the voice model and as the ``openai`` backend,
answering after 1.5 s, past the 700 ms threshold.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fake_openai_supervisor import API_KEY, Role, running_supervisor_chat

from voxpipe.cli import main

QUESTION = "What is the balance on my account?"
FILLERS = ("One moment.", "Let me check that.")
DELEGATE = """
[delegate]
backend = "openai"
threshold_ms = 700
fillers = ["One moment.", "Let me check that."]
instructions = "You are Acme's accounts expert."
"""
AGENT = f"""
instructions = "You are Acme's voice assistant. Hand account questions to the backend."
[chained]
stt = ["whisper"]
tts = ["piper"]
{DELEGATE}
"""


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.timeout(600)
async def test_voxpipe_call_runs_the_agent_files_delegation(
    make_speech: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENT)
    caller = make_speech(QUESTION, lead_ms=1500, tail_ms=600)
    out = tmp_path / "out"
    async with running_supervisor_chat(backend_delay_s=1.5) as chat:
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", chat.url)
        args = ["call", "--input", str(caller), "--out", str(out), "--mode", "chained"]
        # The command runs its own event loop; the stand-in serves from this one.
        code = await asyncio.to_thread(main, [*args, "--config", str(agent)])
    assert code == 0
    timeline = lines(out / "timeline.jsonl")
    delegation = [e for e in timeline if e["type"] == "delegation"]
    fillers = [e for e in timeline if e["type"] == "filler"]
    assert [(e["phase"], e["delegation"]) for e in delegation] == [
        ("asked", 1),
        ("answered", 1),
    ], delegation
    answered = delegation[1]
    assert answered["filled"] is True and answered["waited_ms"] >= 1500
    # One filler, the first wording, past the threshold and before the answer.
    (filler,) = fillers
    assert filler["wording"] == FILLERS[0]
    assert 700 <= filler["waited_ms"] < answered["waited_ms"]
    assert filler["t_ms"] < delegation[1]["t_ms"]
    # The voice model delegated once and relayed the backend's answer; the backend
    # was OpenAI's chat model (the stand-in), told the file's instructions.
    assert len(chat.of(Role.BACKEND)) == 1
    system = chat.of(Role.BACKEND)[0].messages[0]["content"]
    assert "Acme's accounts expert" in system
    assert [c.said for c in chat.relays()] == [chat.backend_answer]
    # The report: the turn's latency runs to the answer, the filler marked apart.
    report = json.loads((out / "report.json").read_text())
    (turn,) = [t for t in report["turns"] if t.get("answer_latency_ms") is not None]
    assert turn["filler_latency_ms"] is not None
    assert turn["filler_latency_ms"] < turn["answer_latency_ms"]
    transcript = json.loads((out / "transcript.json").read_text())
    assert any(chat.backend_answer in t["replied"] for t in transcript["turns"]), transcript


def refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, toml: str, *extra: str
) -> str:
    agent = tmp_path / "agent.toml"
    agent.write_text(toml)
    out = tmp_path / "out"
    if command == "call":
        args = ["call", "--input", str(tmp_path / "caller.wav"), "--out", str(out), *extra]
    else:
        args = [command, "--port", "0", *extra]
    assert main([*args, "--config", str(agent)]) == 2
    assert not out.exists()  # nothing started, nothing written
    return capsys.readouterr().err


@pytest.mark.parametrize("command", ["call", "serve"])
def test_delegation_beside_a_fallback_brain_is_refused_by_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    # The chained brain taking over a failed realtime call would answer without the backend.
    extra = ("--mode", "realtime", "--fallback", "chained")
    error = refused(capsys, tmp_path, command, DELEGATE, *extra)
    agent = tmp_path / "agent.toml"
    expected = f"voxpipe {command}: error: {agent}: delegate: cannot be combined with a fallback"
    assert expected in error


def test_delegation_beside_llm_slots_or_agents_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    slots = f'[chained]\nllm = ["llama"]\n{DELEGATE}'
    error = refused(capsys, tmp_path, "call", slots, "--mode", "chained")
    assert "delegate: cannot be combined with [chained] llm" in error
    agents = f'start = "a"\n[agents.a]\ninstructions = "Help."\n{DELEGATE}'
    error = refused(capsys, tmp_path, "call", agents, "--mode", "chained")
    assert "delegate: cannot be combined with [agents]" in error


def test_the_openai_backend_needs_a_key_before_the_call(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    error = refused(capsys, tmp_path, "serve", DELEGATE, "--mode", "chained")
    assert "delegate.backend: 'openai' needs an OpenAI API key" in error


def test_serve_gives_its_calls_the_files_delegation(tmp_path: Path) -> None:
    import argparse

    from voxpipe.cli.serve import _delegate
    from voxpipe.delegation import DelegateBackend

    agent = tmp_path / "agent.toml"
    agent.write_text(DELEGATE.replace('"openai"', '"local"'))
    args = argparse.Namespace(config=agent, mode="chained", fallback=None)
    settings = _delegate(args)
    assert settings is not None and settings.backend is DelegateBackend.LOCAL
    assert settings.fillers == FILLERS
    assert _delegate(argparse.Namespace(config=None, mode="realtime", fallback=None)) is None
