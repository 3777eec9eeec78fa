"""The [chained] table of agent.toml: engines per slot in order, and the fallback settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxpipe.errors import ConfigError
from voxpipe.guardrails.config import load_agent_file, parse_agent_config
from voxpipe.slot_config import EngineKind, EngineSpec
from voxpipe.slot_fallback import Slot

AGENT = """
instructions = "Be brief."

[chained]
llm = [{engine = "openai", model = "gpt-4.1-mini"}, "llama"]
tts = [{engine = "piper", deadline_ms = 400}, "espeak"]
tts_deadline_ms = 1500
trip_after = 3
"""


def test_an_agent_file_lists_each_slots_engines_in_order(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(AGENT)
    chained = load_agent_file(path).chained
    assert chained.stt is None  # left out: the default engine, no fallback
    assert chained.llm is not None and chained.tts is not None
    assert chained.llm.engines == (
        EngineSpec(EngineKind.OPENAI, "openai", "gpt-4.1-mini"),
        EngineSpec(EngineKind.LLAMA, "llama", None),
    )
    assert chained.llm.engines[0].remote and not chained.llm.engines[1].remote
    assert chained.tts.names == ("piper", "espeak")
    # Defaults: 5 s for the LLM's text, no retry after a partial answer; the file's own values.
    assert chained.llm.policy.deadline_ms == 5000
    assert not chained.llm.policy.retry_after_partial
    assert chained.tts.policy.deadline_ms == 1500
    tts = chained.tts.fallback()
    assert (tts.deadline_ms("piper"), tts.deadline_ms("espeak")) == (400, 1500)
    assert chained.llm.policy.trip_after == chained.tts.policy.trip_after == 3


def test_retry_after_partial_is_the_llms_alone() -> None:
    chained = parse_agent_config(
        {"chained": {"llm": ["llama"], "tts": ["piper"], "retry_after_partial": True}}
    ).chained
    assert chained.llm is not None and chained.llm.policy.retry_after_partial
    assert chained.tts is not None and not chained.tts.policy.retry_after_partial


def test_two_entries_of_one_engine_are_told_apart_by_name() -> None:
    chained = parse_agent_config(
        {
            "chained": {
                "stt": [
                    {"engine": "whisper", "model": "/models/base", "name": "whisper-base"},
                    "whisper",
                ]
            }
        }
    ).chained
    assert chained.stt is not None
    assert chained.stt.names == ("whisper-base", "whisper")
    assert chained.stt.engines[0].model == "/models/base"
    assert chained.stt.slot is Slot.STT


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"llm": "llama"}, "[chained].llm must be a non-empty list"),
        ({"llm": []}, "[chained].llm must be a non-empty list"),
        ({"llm": ["piper"]}, "[chained].llm[0]: 'piper' is not a llm engine (llama, openai)"),
        ({"stt": ["openai"]}, "[chained].stt[0]: 'openai' is not a stt engine (whisper)"),
        ({"tts": [{"engine": "piper", "voice": "x"}]}, "[chained].tts[0]: unknown key 'voice'"),
        ({"tts": [{"engine": "piper", "model": ""}]}, "[chained].tts[0].model must be non-empty"),
        ({"tts": ["piper", "piper"]}, "[chained].tts names an engine twice"),
        ({"tts": [3]}, "[chained].tts[0] must be an engine name or a table"),
        ({"llm": ["llama"], "llm_deadline_ms": 0}, "[chained].llm_deadline_ms must be a whole"),
        ({"tts": [{"engine": "piper", "deadline_ms": 0}]}, "[chained].tts[0].deadline_ms must"),
        ({"trip_after": True}, "[chained].trip_after must be a whole number of at least 1"),
        ({"retry_after_partial": "no"}, "[chained].retry_after_partial must be true or false"),
        ({"fallback": ["llama"]}, "unknown key [chained].fallback"),
    ],
)
def test_a_bad_chained_table_names_the_file_and_the_key(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config({"chained": table}, source="agent.toml")
    assert str(caught.value).startswith("agent.toml: ")
    assert message in str(caught.value)


def test_chained_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="'chained' must be a table"):
        parse_agent_config({"chained": ["llama"]})
