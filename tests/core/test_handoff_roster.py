"""The handoff decision both paths share, and the chained context the new agent starts from."""

from __future__ import annotations

import json

from voxpipe.agents import parse_agents
from voxpipe.handoff import (
    SUMMARY_HEADING,
    AgentRoster,
    HandoffDecided,
    TransferNotAllowed,
    bounded_messages,
    transfer_tool_schema,
)

AGENTS = parse_agents(
    {
        "start": "triage",
        "agents": {
            "triage": {"instructions": "Triage.", "handoffs": ["billing"]},
            "billing": {
                "instructions": "Billing.",
                "handoffs": ["triage"],
                "description": "the billing desk",
            },
        },
    },
    "agent.toml",
)


def roster() -> AgentRoster:
    assert AGENTS is not None
    return AgentRoster(AGENTS)


def test_a_transfer_moves_the_call_and_a_cycle_comes_back() -> None:
    r = roster()
    there = r.transfer("transfer_to_billing", '{"reason": "a refund"}', "c1")
    assert there == HandoffDecided(
        "triage", "billing", "a refund", "c1", "Billing.", ("transfer_to_triage",)
    )
    assert r.current == "billing"
    back = r.transfer("transfer_to_triage", {}, "c2")
    assert isinstance(back, HandoffDecided) and (back.previous, back.current) == (
        "billing",
        "triage",
    )
    assert [h.tool_call_id for h in r.handoffs] == ["c1", "c2"]
    assert json.loads(r.transfer_output(back)) == {"transferred_to": "triage", "reason": ""}


def test_a_transfer_the_agent_lacks_changes_nothing_and_says_what_exists() -> None:
    r = roster()
    refused = r.transfer("transfer_to_triage", "not json", "c1")  # triage cannot go to itself
    assert refused == TransferNotAllowed("triage", "transfer_to_triage", "c1")
    assert r.current == "triage" and r.handoffs == []
    assert json.loads(refused.output(["transfer_to_billing"])) == {
        "error": "transfer_to_triage does not exist",
        "transfers_available": ["transfer_to_billing"],
    }


def test_the_transfer_tool_says_whom_it_reaches() -> None:
    assert AGENTS is not None
    tool = transfer_tool_schema(AGENTS.agent("billing"))
    assert tool["name"] == "transfer_to_billing"
    assert tool["description"] == "Transfer the caller to the billing desk."
    assert tool["parameters"]["required"] == []


def test_the_new_agent_gets_its_instructions_a_summary_and_the_last_turns() -> None:
    messages = [
        {"role": "system", "content": "Triage."},
        {"role": "user", "content": "My name is Grace Hopper."},
        {"role": "assistant", "content": "Hello Grace."},
        {"role": "user", "content": "My invoice is wrong."},
        {"role": "assistant", "content": "Transferring you."},
    ]
    bounded = bounded_messages(messages, "Billing.", keep_turns=2)
    assert bounded[0]["role"] == "system"
    system = bounded[0]["content"]
    assert system.startswith("Billing.") and "Triage." not in system
    assert SUMMARY_HEADING in system and "Grace Hopper" in system
    assert bounded[1:] == messages[3:]
    # Nothing to fold: the instructions alone, then every turn.
    short = bounded_messages(messages[:3], "Billing.", keep_turns=2)
    assert short[0] == {"role": "system", "content": "Billing."} and short[1:] == messages[1:3]
