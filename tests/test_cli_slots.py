"""``voxpipe call --config agent.toml``: the [chained] table reaches the call, or stops it early."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpipe.cli import main
from voxpipe.cli.call import _agent


def test_a_bad_chained_table_stops_voxpipe_call_before_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text('[chained]\nllm = ["piper", "llama"]\n')
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "caller.wav"), "--out", str(out), "--mode", "chained"]
    code = main(["call", *args, "--config", str(agent)])
    assert code == 2
    error = capsys.readouterr().err
    assert f"voxpipe call: error: {agent}: [chained].llm[0]: 'piper' is not a llm engine" in error
    assert not out.exists()  # nothing started, nothing written


def test_the_chained_table_is_what_the_call_is_given(tmp_path: Path) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text('instructions = "Be brief."\n[chained]\ntts = ["piper", "espeak"]\n')
    instructions, _tap, slots = _agent(agent)
    assert instructions == "Be brief."
    assert slots.stt is None and slots.llm is None
    assert slots.tts is not None and slots.tts.names == ("piper", "espeak")


def test_serve_and_daily_read_the_same_table(tmp_path: Path) -> None:
    from voxpipe.cli.serve import _slots

    agent = tmp_path / "agent.toml"
    agent.write_text('[chained]\nllm = ["openai", "llama"]\nllm_deadline_ms = 1500\n')
    slots = _slots(agent)
    assert slots.llm is not None and slots.llm.names == ("openai", "llama")
    assert slots.llm.policy.deadline_ms == 1500
