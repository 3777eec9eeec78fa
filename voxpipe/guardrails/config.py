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
the key, so ``voxpipe call --config agent.toml`` fails before a call starts. So
is a key the file does not know (a misspelt table is not silently ignored), a
path that is not a regular file (``/dev/zero``, a FIFO: refused before a byte
is read, so neither fills memory nor hangs), a file over
:data:`MAX_AGENT_FILE_BYTES`, and nesting deeper than the parser's stack.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxpipe.agents import AgentsConfig, parse_agents
from voxpipe.call.failover import FailoverConfig, parse_fallback_table
from voxpipe.delegation import DelegationSettings, parse_delegate_table
from voxpipe.errors import ConfigError
from voxpipe.guardrails.deny import DenyPolicy
from voxpipe.guardrails.pii import PiiPolicy
from voxpipe.guardrails.policy import FailMode, GuardrailPolicy
from voxpipe.slot_config import ChainedSlots, parse_chained_table
from voxpipe.telephony.hangup import TelephonyConfig, parse_telephony_table

_GUARDRAIL_KEYS = ("pii", "deny", "safe_line", "every_chars", "timeout_ms", "fail")
_TOP_LEVEL_KEYS = (
    "instructions",
    "guardrails",
    "telephony",
    "chained",
    "fallback",
    "start",
    "agents",
    "handoff",
    "delegate",
)

# An agent file is instructions and a few settings; a megabyte is far beyond any.
MAX_AGENT_FILE_BYTES = 1 << 20


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
    """What an agent file says: the instructions, the guardrails, phone calls' hang-up,
    and the chained slots' engines (:mod:`voxpipe.slot_config`)."""

    source: str
    instructions: str | None = None
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
    telephony: TelephonyConfig = field(default_factory=TelephonyConfig)
    chained: ChainedSlots = field(default_factory=ChainedSlots)
    # [fallback]: the chained brain takes a realtime call when the realtime one fails.
    fallback: FailoverConfig | None = None
    # start + [agents.<name>] + [handoff]: a multi-agent call (voxpipe.agents).
    agents: AgentsConfig | None = None
    # [delegate]: the voice agent hands hard turns to a backend model (voxpipe.delegation).
    delegate: DelegationSettings | None = None


def load_agent_file(path: str | Path) -> AgentConfig:
    """Read and validate an agent file."""
    path = Path(path)
    try:
        data = tomllib.loads(_read_agent_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_agent_config(data, source=str(path))


def _read_agent_text(path: Path) -> str:
    """The file's text; refused unless a regular file of at most ``MAX_AGENT_FILE_BYTES``."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"agent file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"agent file {path} cannot be read: {exc}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"agent file {path} is not a regular file")
        if info.st_size > MAX_AGENT_FILE_BYTES:
            raise ConfigError(
                f"agent file {path} is {info.st_size} bytes; the limit is {MAX_AGENT_FILE_BYTES}"
            )
        try:
            raw = file.read(MAX_AGENT_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"agent file {path} cannot be read: {exc}") from None
    if len(raw) > MAX_AGENT_FILE_BYTES:  # it grew while being read
        raise ConfigError(f"agent file {path} is over {MAX_AGENT_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"agent file {path} cannot be read: {exc}") from None


def parse_agent_config(data: Mapping[str, Any], source: str = "<agent config>") -> AgentConfig:
    """Validate an already-parsed agent file; ``source`` names it in errors."""
    _known_keys(data, _TOP_LEVEL_KEYS, f"{source}: unknown key ", "")
    instructions = data.get("instructions")
    if instructions is not None and (not isinstance(instructions, str) or not instructions):
        raise ConfigError(f"{source}: 'instructions' must be non-empty text")
    table = data.get("guardrails", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'guardrails' must be a table ([guardrails])")
    telephony = parse_telephony_table(data.get("telephony", {}), source)
    chained = parse_chained_table(data.get("chained", {}), source)
    fallback = parse_fallback_table(data.get("fallback"), source)
    guardrails = _guardrails(table, source)
    agents = parse_agents(data, source)
    delegate = parse_delegate_table(data.get("delegate"), source)
    return AgentConfig(
        source, instructions, guardrails, telephony, chained, fallback, agents, delegate
    )


def _known_keys(
    table: Mapping[str, Any], known: tuple[str, ...], prefix: str, table_name: str
) -> None:
    """Refuse a key not in ``known``, suggesting the closest one."""
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{prefix}{table_name}{key}", hint=hint)


def _guardrails(table: Mapping[str, Any], source: str) -> GuardrailConfig:
    _known_keys(table, _GUARDRAIL_KEYS, f"{source}: unknown key ", "[guardrails].")
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
