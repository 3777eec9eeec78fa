"""[agents.<name>] + start in agent.toml: parsed, and each bad file refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxpipe.agents import (
    AgentsConfigError,
    AgentsProblem,
    BrainPath,
    WarningKind,
    parse_agents,
)
from voxpipe.errors import ConfigError
from voxpipe.guardrails.config import load_agent_file

TRIAGE_BILLING = """
start = "triage"

[agents.triage]
instructions = "Greet the caller and find out what they need. Transfer billing questions."
handoffs = ["billing"]

[agents.billing]
instructions = "You answer billing questions."
tools = ["get_balance"]
handoffs = ["triage"]

[handoff]
keep_turns = 3
"""


def test_an_agent_file_gives_each_handoff_a_transfer_tool(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(TRIAGE_BILLING)
    agents = load_agent_file(path).agents
    assert agents is not None
    assert agents.start == "triage"
    assert agents.agent("triage").tool_names == ("transfer_to_billing",)
    assert agents.agent("billing").tool_names == ("get_balance", "transfer_to_triage")
    assert agents.agent("billing").transfer_tools == {"transfer_to_triage": "triage"}
    assert agents.settings.keep_turns == 3
    assert agents.settings.warn_instructions_chars == 750  # the default
    assert agents.warnings() == []
    agents.check(BrainPath.REALTIME, provided_tools=["get_balance"])  # passes


def test_a_file_without_agents_has_none() -> None:
    assert parse_agents({"instructions": "Be brief."}, "a.toml") is None


def _agents(**tables: dict[str, Any]) -> dict[str, Any]:
    return {name: {"instructions": "Help.", **table} for name, table in tables.items()}


# (what is wrong, the parsed file, the problem, the key the error names)
BAD_FILES: list[tuple[str, dict[str, Any], AgentsProblem, str]] = [
    (
        "no start",
        {"agents": _agents(triage={})},
        AgentsProblem.MISSING_START,
        "start",
    ),
    (
        "start names no agent",
        {"start": "sales", "agents": _agents(triage={})},
        AgentsProblem.UNKNOWN_START,
        "start",
    ),
    (
        "handoff to an agent that does not exist",
        {"start": "triage", "agents": _agents(triage={"handoffs": ["billing"]})},
        AgentsProblem.UNKNOWN_TARGET,
        "[agents.triage].handoffs",
    ),
    (
        "a tool named like the handoff's",
        {
            "start": "triage",
            "agents": _agents(
                triage={"handoffs": ["billing"], "tools": ["transfer_to_billing"]}, billing={}
            ),
        },
        AgentsProblem.TOOL_NAME_COLLISION,
        "[agents.triage].tools",
    ),
    (
        "a tool listed twice",
        {"start": "a", "agents": _agents(a={"tools": ["lookup", "lookup"]})},
        AgentsProblem.TOOL_NAME_COLLISION,
        "[agents.a].tools",
    ),
    (
        "a misspelt key",
        {"start": "a", "agents": _agents(a={"handof": ["b"]})},
        AgentsProblem.UNKNOWN_KEY,
        "[agents.a].handof",
    ),
    (
        "no instructions",
        {"start": "a", "agents": {"a": {"handoffs": []}}},
        AgentsProblem.BAD_VALUE,
        "[agents.a].instructions",
    ),
    (
        "a name that cannot name a tool",
        {"start": "Billing Desk", "agents": _agents(**{"Billing Desk": {}})},
        AgentsProblem.BAD_VALUE,
        "[agents.Billing Desk]",
    ),
    (
        "handoffs not a list",
        {"start": "a", "agents": _agents(a={"handoffs": "b"}, b={})},
        AgentsProblem.BAD_VALUE,
        "[agents.a].handoffs",
    ),
    (
        "start without agents",
        {"start": "triage"},
        AgentsProblem.BAD_VALUE,
        "start",
    ),
    (
        "keep_turns of zero",
        {"start": "a", "agents": _agents(a={}), "handoff": {"keep_turns": 0}},
        AgentsProblem.BAD_VALUE,
        "[handoff].keep_turns",
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "problem", "key"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_agents_table_is_a_named_error(
    case: str, data: dict[str, Any], problem: AgentsProblem, key: str
) -> None:
    with pytest.raises(AgentsConfigError) as caught:
        parse_agents(data, "agent.toml")
    assert caught.value.problem is problem
    assert (caught.value.source, caught.value.key) == ("agent.toml", key)
    assert str(caught.value).startswith(f"agent.toml: {key}: ")
    assert isinstance(caught.value, ConfigError)  # the one error tree


def test_a_cycle_with_no_way_out_is_allowed() -> None:
    agents = parse_agents(
        {"start": "a", "agents": _agents(a={"handoffs": ["b"]}, b={"handoffs": ["a"]})}, "f"
    )
    assert agents is not None and agents.agent("b").handoffs == ("a",)


def test_two_voices_are_refused_on_realtime_only() -> None:
    agents = parse_agents(
        {"start": "a", "agents": _agents(a={"voice": "alloy"}, b={"voice": "verse"})}, "f"
    )
    assert agents is not None
    agents.check(BrainPath.CHAINED)  # a chained call may change voices
    with pytest.raises(AgentsConfigError) as caught:
        agents.check(BrainPath.REALTIME)
    assert caught.value.problem is AgentsProblem.TWO_VOICES
    assert "a='alloy'" in str(caught.value) and "b='verse'" in str(caught.value)
    same = parse_agents(
        {"start": "a", "agents": _agents(a={"voice": "alloy"}, b={"voice": "alloy"})}, "f"
    )
    assert same is not None
    same.check(BrainPath.REALTIME)  # one voice, named twice: fine


def test_chained_voices_must_be_the_tts_own_and_default_to_the_call_voice() -> None:
    agents = parse_agents(
        {"start": "a", "agents": _agents(a={"voice": "piper"}, b={}, c={"voice": "espeak"})}, "f"
    )
    assert agents is not None
    agents.check_voices(["auto", "piper", "espeak"], "local TTS")  # passes
    assert [agents.voice_of(n, "auto") for n in "abc"] == ["piper", "auto", "espeak"]
    assert agents.voice_of("b", None) is None  # no default: b keeps the voice it is handed
    with pytest.raises(AgentsConfigError) as caught:
        agents.check_voices(["auto", "piper"], "local TTS")
    assert caught.value.problem is AgentsProblem.UNKNOWN_VOICE
    assert caught.value.key == "[agents.c].voice"
    assert "'espeak' is not a voice of the local TTS" in str(caught.value)


def test_tools_the_application_did_not_give_are_refused() -> None:
    agents = parse_agents({"start": "a", "agents": _agents(a={"tools": ["get_balance"]})}, "f")
    assert agents is not None
    with pytest.raises(AgentsConfigError) as caught:
        agents.check(BrainPath.CHAINED, provided_tools=["get_weather"])
    assert caught.value.problem is AgentsProblem.UNKNOWN_TOOL
    assert caught.value.key == "[agents.a].tools"
    with pytest.raises(AgentsConfigError) as collided:
        agents.check(BrainPath.CHAINED, provided_tools=["get_balance", "transfer_to_a"])
    assert collided.value.problem is AgentsProblem.TOOL_NAME_COLLISION


def test_long_instructions_warn_at_the_configured_length() -> None:
    data = {
        "start": "a",
        "agents": {"a": {"instructions": "x" * 751}, "b": {"instructions": "y" * 750}},
    }
    agents = parse_agents(data, "f")
    assert agents is not None
    (warning,) = agents.warnings()
    assert warning.kind is WarningKind.LONG_INSTRUCTIONS
    assert warning.key == "[agents.a].instructions" and "751 characters" in str(warning)
    stricter = parse_agents({**data, "handoff": {"warn_instructions_chars": 100}}, "f")
    assert stricter is not None
    assert [w.key for w in stricter.warnings()] == [
        "[agents.a].instructions",
        "[agents.b].instructions",
    ]
