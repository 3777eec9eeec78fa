"""The agent file (``agent.toml``): instructions and the ``[guardrails]`` table.

Example::

    instructions = "You are a helpful support agent for Acme."

    [guardrails]
    pii = true                      # card numbers, SSNs, phone numbers, e-mail
    deny = ['(?i)\\bwire transfer\\b']  # regular expressions, as written
    safe_line = "Sorry, I can't help with that."
    every_chars = 100               # check every N new transcript characters
    timeout_ms = 1000               # a slower policy counts as failed ...
    fail = "closed"                 # ... and fails "open" (allowed) or "closed" (tripped)

Every bad value is a :class:`~voxpipe.errors.ConfigError` naming the file and
the key, so ``voxpipe call --config agent.toml`` fails before a call starts.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxpipe.errors import ConfigError
from voxpipe.guardrails.deny import DenyPolicy
from voxpipe.guardrails.pii import PiiPolicy
from voxpipe.guardrails.policy import FailMode, GuardrailPolicy

_GUARDRAIL_KEYS = ("pii", "deny", "safe_line", "every_chars", "timeout_ms", "fail")


@dataclass(frozen=True)
class GuardrailConfig:
    """Output guardrail settings; the defaults are what an empty ``[guardrails]`` means.

    PII is off by default: agents routinely read back a caller's own e-mail or
    phone number to confirm it. A failed check fails closed by default: an
    unchecked sentence is not spoken.
    """

    pii: bool = False
    deny: tuple[str, ...] = ()
    safe_line: str | None = None
    every_chars: int = 100
    timeout_ms: int = 1000
    fail: FailMode = FailMode.CLOSED

    def policies(self) -> list[GuardrailPolicy]:
        """The built-in policies these settings switch on."""
        policies: list[GuardrailPolicy] = []
        if self.deny:
            policies.append(DenyPolicy(patterns=self.deny, ignore_case=False))
        if self.pii:
            policies.append(PiiPolicy())
        return policies


@dataclass(frozen=True)
class AgentConfig:
    """What an agent file says: the instructions and the guardrails."""

    source: str
    instructions: str | None = None
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)


def load_agent_file(path: str | Path) -> AgentConfig:
    """Read and validate an agent file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"agent file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"agent file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_agent_config(data, source=str(path))


def parse_agent_config(data: Mapping[str, Any], source: str = "<agent config>") -> AgentConfig:
    """Validate an already-parsed agent file; ``source`` names it in errors."""
    instructions = data.get("instructions")
    if instructions is not None and (not isinstance(instructions, str) or not instructions):
        raise ConfigError(f"{source}: 'instructions' must be non-empty text")
    table = data.get("guardrails", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'guardrails' must be a table ([guardrails])")
    return AgentConfig(source, instructions, _guardrails(table, source))


def _guardrails(table: Mapping[str, Any], source: str) -> GuardrailConfig:
    for key in table:
        if key not in _GUARDRAIL_KEYS:
            close = difflib.get_close_matches(key, _GUARDRAIL_KEYS, n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"known: {', '.join(_GUARDRAIL_KEYS)}"
            )
            raise ConfigError(f"{source}: unknown key [guardrails].{key}", hint=hint)
    defaults = GuardrailConfig()
    where = f"{source}: [guardrails]"
    config = GuardrailConfig(
        pii=_bool(table, "pii", defaults.pii, where),
        deny=_patterns(table.get("deny", []), where),
        safe_line=_text(table, "safe_line", where),
        every_chars=_positive_int(table, "every_chars", defaults.every_chars, where),
        timeout_ms=_positive_int(table, "timeout_ms", defaults.timeout_ms, where),
        fail=_fail_mode(table.get("fail", defaults.fail.value), where),
    )
    config.policies()  # compile now so a bad regex fails at load time
    return config


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _positive_int(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    # TOML booleans are Python ints; "every_chars = true" is still a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key} must be a whole number of at least 1, got {value!r}")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where}.{key} must be non-empty text, got {value!r}")
    return value


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}.deny must be a list of regular expressions, got {value!r}")
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}.deny[{i}] must be text, got {pattern!r}")
        try:
            DenyPolicy(patterns=[pattern])
        except ConfigError as exc:
            raise ConfigError(f"{where}.deny[{i}]: {exc}") from None
    return tuple(value)


def _fail_mode(value: Any, where: str) -> FailMode:
    try:
        return FailMode(value)
    except ValueError:
        choices = " or ".join(repr(m.value) for m in FailMode)
        raise ConfigError(f"{where}.fail must be {choices}, got {value!r}") from None
