"""The agent file: what a user writes in agent.toml and the errors they get."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import voxpipe.guardrails.config as config_module
from voxpipe.errors import ConfigError
from voxpipe.guardrails.config import GuardrailConfig, load_agent_file, parse_agent_config
from voxpipe.guardrails.deny import DenyPolicy
from voxpipe.guardrails.pii import PiiPolicy
from voxpipe.guardrails.policy import FailMode

FULL = """
instructions = "You are Acme's support agent."

[guardrails]
pii = true
deny = ['(?i)\\bwire transfer\\b', 'BTC-\\d+']
safe_line = "Sorry, I can't help with that."
every_chars = 80
timeout_ms = 750
fail = "open"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_agent_file_loads(tmp_path: Path) -> None:
    agent = load_agent_file(_write(tmp_path, FULL))
    assert agent.instructions == "You are Acme's support agent."
    assert agent.guardrails == GuardrailConfig(
        pii=True,
        deny=(r"(?i)\bwire transfer\b", r"BTC-\d+"),
        safe_line="Sorry, I can't help with that.",
        every_chars=80,
        timeout_ms=750,
        fail=FailMode.OPEN,
    )
    policies = agent.guardrails.policies()
    assert [type(p) for p in policies] == [DenyPolicy, PiiPolicy]
    deny = policies[0]
    assert isinstance(deny, DenyPolicy)
    assert deny.scan("Please send a Wire Transfer today").tripped


def test_docstring_example_is_a_valid_agent_file(tmp_path: Path) -> None:
    doc = config_module.__doc__ or ""
    example = doc.split("Example::", 1)[1].split("Every bad value", 1)[0]
    text = "\n".join(line[4:] for line in example.splitlines())
    agent = load_agent_file(_write(tmp_path, text))
    assert agent.guardrails.pii
    assert agent.guardrails.policies()[0].name == "deny"


def test_empty_file_gives_documented_defaults(tmp_path: Path) -> None:
    agent = load_agent_file(_write(tmp_path, ""))
    assert agent.instructions is None
    assert agent.guardrails == GuardrailConfig()
    assert agent.guardrails.every_chars == 100
    assert agent.guardrails.fail is FailMode.CLOSED
    assert agent.guardrails.policies() == []


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[guardrails]\nevery_chars = 0", "[guardrails].every_chars"),
        ("[guardrails]\nevery_chars = true", "[guardrails].every_chars"),
        ("[guardrails]\nevery_chars = '100'", "[guardrails].every_chars"),
        ("[guardrails]\ntimeout_ms = -5", "[guardrails].timeout_ms"),
        ("[guardrails]\npii = 'yes'", "[guardrails].pii"),
        ("[guardrails]\nfail = 'sideways'", "[guardrails].fail must be 'open' or 'closed'"),
        ("[guardrails]\ndeny = 'x'", "[guardrails].deny must be a list"),
        ("[guardrails]\ndeny = ['ok', '(broken']", "[guardrails].deny[1]"),
        ("[guardrails]\ndeny = [3]", "[guardrails].deny[0]"),
        ("[guardrails]\nsafe_line = ''", "[guardrails].safe_line"),
        ("[guardrails]\nevery_char = 50", "did you mean 'every_chars'?"),
        ("guardrails = 5", "'guardrails' must be a table"),
        ("instructions = 42", "'instructions'"),
        ("instructions = ", "not valid TOML"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = _write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_agent_file(tmp_path / "nope.toml")


def test_python_callers_can_validate_a_dict() -> None:
    agent = parse_agent_config({"guardrails": {"pii": True}}, source="builder")
    assert agent.source == "builder"
    assert agent.guardrails.pii


def test_a_misspelt_top_level_key_fails_with_a_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "[guardrail]\npii = true\n")
    with pytest.raises(ConfigError, match=r"unknown key guardrail \(") as caught:
        load_agent_file(path)
    assert caught.value.hint == "did you mean 'guardrails'?"


def test_a_device_is_refused_before_a_byte_is_read() -> None:
    # /dev/zero once filled 3 GB in 4.7 s.
    with pytest.raises(ConfigError, match="not a regular file"):
        load_agent_file("/dev/zero")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "agent.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_agent_file(fifo)  # once hung here for ever


def test_an_oversize_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, f'instructions = "{"x" * config_module.MAX_AGENT_FILE_BYTES}"\n')
    with pytest.raises(ConfigError, match="the limit is"):
        load_agent_file(path)


def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    depth = 100_000
    path = _write(tmp_path, "instructions = " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_agent_file(path)


def test_bytes_that_are_not_utf8_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'instructions = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="cannot be read"):
        load_agent_file(path)
