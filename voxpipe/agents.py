"""Multi-agent calls: the ``[agents.<name>]`` tables of ``agent.toml`` and their checks.

Example::

    start = "triage"

    [agents.triage]
    instructions = "Greet the caller and find out what they need. Transfer billing questions."
    handoffs = ["billing"]

    [agents.billing]
    instructions = "You answer billing questions."
    tools = ["get_balance"]       # tools the application registers, by name
    handoffs = ["triage"]         # a cycle is allowed: billing can send the caller back

    [handoff]
    keep_turns = 2                # verbatim turns the next agent sees (the rest: a summary)
    warn_instructions_chars = 750 # longer instructions get a warning, not an error

Each name in ``handoffs`` becomes a ``transfer_to_<name>`` tool of that agent.
Everything is checked before a call starts, each problem a
:class:`AgentsConfigError` naming the file, the key and the :class:`AgentsProblem`:
a handoff to an agent that does not exist, a tool name used twice (a listed
tool called ``transfer_to_billing`` beside the handoff to billing), agents
without a ``start``, and on the realtime path agents with different voices
(the provider refuses a voice change once the session has spoken).
Instructions over ``warn_instructions_chars`` (practitioners cite ~750
characters as the length past which a voice agent follows them less well) give
an :class:`AgentsWarning` instead.

Sans-I/O: plain data in, frozen data out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voxpipe.errors import AgentsConfigError as AgentsConfigError  # re-exported
from voxpipe.errors import AgentsProblem as AgentsProblem  # re-exported

TRANSFER_PREFIX = "transfer_to_"
DEFAULT_WARN_INSTRUCTIONS_CHARS = 750
DEFAULT_KEEP_TURNS = 2
# OpenAI's function names: letters, digits, '_' and '-', at most 64 characters.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AGENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,51}$")  # transfer_to_ + name fits in 64
_AGENT_KEYS = ("instructions", "tools", "voice", "handoffs", "description")
_HANDOFF_KEYS = ("keep_turns", "warn_instructions_chars")


class BrainPath(enum.Enum):
    """Which path runs the agents (the voice check applies to realtime only)."""

    REALTIME = "realtime"
    CHAINED = "chained"


class WarningKind(enum.Enum):
    """What an agents warning is about."""

    LONG_INSTRUCTIONS = "long_instructions"


@dataclass(frozen=True)
class AgentsWarning:
    """Something that works but is likely to work badly (said before the call)."""

    kind: WarningKind
    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


@dataclass(frozen=True)
class AgentSpec:
    """One agent: what it is told, what it may call, whom it may hand the caller to."""

    name: str
    instructions: str
    tools: tuple[str, ...] = ()
    handoffs: tuple[str, ...] = ()
    voice: str | None = None
    description: str | None = None

    @property
    def transfer_tools(self) -> dict[str, str]:
        """``transfer_to_<name>`` -> ``<name>``, for each handoff of this agent."""
        return {transfer_tool(target): target for target in self.handoffs}

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Every tool this agent offers the model: its own, then its transfers."""
        return (*self.tools, *self.transfer_tools)


def transfer_tool(target: str) -> str:
    """The name of the tool that hands the caller to ``target``."""
    return f"{TRANSFER_PREFIX}{target}"


@dataclass(frozen=True)
class HandoffSettings:
    """How a handoff carries the call over (``[handoff]``)."""

    keep_turns: int = DEFAULT_KEEP_TURNS
    warn_instructions_chars: int = DEFAULT_WARN_INSTRUCTIONS_CHARS


@dataclass(frozen=True)
class AgentsConfig:
    """The agents of a call, the first one, and the handoff settings."""

    source: str
    start: str
    agents: Mapping[str, AgentSpec]
    settings: HandoffSettings = field(default_factory=HandoffSettings)

    def agent(self, name: str) -> AgentSpec:
        return self.agents[name]

    @property
    def tool_names(self) -> frozenset[str]:
        """Every application tool some agent lists (the ones the application must provide)."""
        return frozenset(tool for spec in self.agents.values() for tool in spec.tools)

    def check(self, path: BrainPath, provided_tools: Iterable[str] | None = None) -> None:
        """The checks that depend on the path and on the tools the application gives.

        Realtime: one voice per call. ``provided_tools``: each agent's listed
        tool must be there, and none may be called ``transfer_to_...``.
        """
        if path is BrainPath.REALTIME:
            voices = {spec.name: spec.voice for spec in self.agents.values() if spec.voice}
            if len(set(voices.values())) > 1:
                raise AgentsConfigError(
                    AgentsProblem.TWO_VOICES,
                    self.source,
                    "[agents].voice",
                    f"agents speak in different voices ({_pairs(voices)}) but a realtime call "
                    "has one voice: the provider refuses a voice change after the first audio",
                    hint="give the agents one voice, or run them on the chained path",
                )
        if provided_tools is None:
            return
        provided = set(provided_tools)
        for spec in self.agents.values():
            for tool in spec.tools:
                if tool not in provided:
                    raise AgentsConfigError(
                        AgentsProblem.UNKNOWN_TOOL,
                        self.source,
                        f"[agents.{spec.name}].tools",
                        f"no tool named {tool!r} was given to the call",
                        hint=f"tools given: {', '.join(sorted(provided)) or 'none'}",
                    )
        for tool in provided:
            if tool.startswith(TRANSFER_PREFIX):
                raise AgentsConfigError(
                    AgentsProblem.TOOL_NAME_COLLISION,
                    self.source,
                    "tools",
                    f"the application's tool {tool!r} takes a name handoffs use",
                    hint=f"rename it: '{TRANSFER_PREFIX}<agent>' tools are made from handoffs",
                )

    def check_voices(self, known: Iterable[str], tts: str) -> None:
        """Chained path: every agent's ``voice`` must be one of ``known`` (``tts``'s voices)."""
        voices = sorted(set(known))
        for spec in self.agents.values():
            if spec.voice is not None and spec.voice not in voices:
                raise AgentsConfigError(
                    AgentsProblem.UNKNOWN_VOICE,
                    self.source,
                    f"[agents.{spec.name}].voice",
                    f"{spec.voice!r} is not a voice of the {tts}",
                    hint=f"voices: {', '.join(voices)}",
                )

    def realtime_voice(self) -> str | None:
        """The one voice the agents give a realtime call (``check`` refuses two), if any."""
        voices = {spec.voice for spec in self.agents.values() if spec.voice}
        return voices.pop() if len(voices) == 1 else None

    def voice_of(self, name: str, default: str | None) -> str | None:
        """The voice agent ``name`` speaks in on the chained path (its own, else ``default``)."""
        return self.agent(name).voice or default

    def warnings(self) -> list[AgentsWarning]:
        """Instructions longer than the warning length, per agent."""
        limit = self.settings.warn_instructions_chars
        return [
            AgentsWarning(
                WarningKind.LONG_INSTRUCTIONS,
                self.source,
                f"[agents.{spec.name}].instructions",
                f"{len(spec.instructions)} characters, over {limit}: short, focused "
                "instructions are followed better; move detail into tools or another agent",
            )
            for spec in self.agents.values()
            if len(spec.instructions) > limit
        ]


def parse_agents(data: Mapping[str, Any], source: str) -> AgentsConfig | None:
    """The agents of an agent file's top level (None: the file defines no agents).

    ``data`` is the whole parsed file: ``start``, ``[agents.*]`` and ``[handoff]``.
    """
    table, start = data.get("agents"), data.get("start")
    if table is None:
        for key in ("start", "handoff"):
            if data.get(key) is not None:
                raise _bad(AgentsProblem.BAD_VALUE, source, key, "given, but no [agents.*] tables")
        return None
    if not isinstance(table, Mapping) or not table:
        raise _bad(AgentsProblem.BAD_VALUE, source, "agents", "must hold [agents.<name>] tables")
    if start is None:
        raise AgentsConfigError(
            AgentsProblem.MISSING_START,
            source,
            "start",
            "agents are defined but none is named to take the call",
            hint=f'add start = "{next(iter(table))}" at the top of the file',
        )
    agents = {name: _agent(name, spec, source) for name, spec in table.items()}
    if not isinstance(start, str) or start not in agents:
        raise AgentsConfigError(
            AgentsProblem.UNKNOWN_START,
            source,
            "start",
            f"{start!r} is not one of the agents",
            hint=f"agents: {', '.join(agents)}",
        )
    for spec in agents.values():
        _check_handoffs(spec, agents, source)
    return AgentsConfig(source, start, agents, _settings(data.get("handoff", {}), source))


def _agent(name: Any, table: Any, source: str) -> AgentSpec:
    where = f"[agents.{name}]"
    if not isinstance(name, str) or not _AGENT_NAME.match(name):
        raise _bad(
            AgentsProblem.BAD_VALUE,
            source,
            where,
            "an agent's name is lowercase letters, digits and '_' (it names a tool)",
        )
    if not isinstance(table, Mapping):
        raise _bad(AgentsProblem.BAD_VALUE, source, where, "must be a table")
    for key in table:
        if key not in _AGENT_KEYS:
            raise AgentsConfigError(
                AgentsProblem.UNKNOWN_KEY,
                source,
                f"{where}.{key}",
                "unknown key",
                hint=f"known: {', '.join(_AGENT_KEYS)}",
            )
    instructions = table.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        raise _bad(
            AgentsProblem.BAD_VALUE, source, f"{where}.instructions", "non-empty text needed"
        )
    tools = _names(table.get("tools", []), source, f"{where}.tools")
    handoffs = _names(table.get("handoffs", []), source, f"{where}.handoffs")
    voice = _optional_text(table, "voice", source, where)
    description = _optional_text(table, "description", source, where)
    spec = AgentSpec(name, instructions, tools, handoffs, voice, description)
    seen: set[str] = set()
    for tool in spec.tool_names:
        if tool in seen:
            raise AgentsConfigError(
                AgentsProblem.TOOL_NAME_COLLISION,
                source,
                f"{where}.tools",
                f"the tool name {tool!r} is used twice (a handoff makes {tool!r} too)",
                hint="each tool name once per agent; 'transfer_to_<agent>' is a handoff's",
            )
        seen.add(tool)
    return spec


def _check_handoffs(spec: AgentSpec, agents: Mapping[str, AgentSpec], source: str) -> None:
    for target in spec.handoffs:
        if target not in agents:
            raise AgentsConfigError(
                AgentsProblem.UNKNOWN_TARGET,
                source,
                f"[agents.{spec.name}].handoffs",
                f"hands off to {target!r}, which is not one of the agents",
                hint=f"agents: {', '.join(agents)}",
            )
        if target == spec.name:
            raise _bad(
                AgentsProblem.BAD_VALUE,
                source,
                f"[agents.{spec.name}].handoffs",
                "an agent cannot hand the caller to itself",
            )


def _settings(table: Any, source: str) -> HandoffSettings:
    if not isinstance(table, Mapping):
        raise _bad(AgentsProblem.BAD_VALUE, source, "handoff", "must be a table ([handoff])")
    for key in table:
        if key not in _HANDOFF_KEYS:
            raise AgentsConfigError(
                AgentsProblem.UNKNOWN_KEY,
                source,
                f"[handoff].{key}",
                "unknown key",
                hint=f"known: {', '.join(_HANDOFF_KEYS)}",
            )
    defaults = HandoffSettings()
    keep = table.get("keep_turns", defaults.keep_turns)
    warn = table.get("warn_instructions_chars", defaults.warn_instructions_chars)
    for key, value, least in (("keep_turns", keep, 1), ("warn_instructions_chars", warn, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise _bad(
                AgentsProblem.BAD_VALUE,
                source,
                f"[handoff].{key}",
                f"must be a whole number of at least {least}, got {value!r}",
            )
    return HandoffSettings(keep_turns=keep, warn_instructions_chars=warn)


def _names(value: Any, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(AgentsProblem.BAD_VALUE, source, key, f"must be a list of names, got {value!r}")
    for name in value:
        if not _TOOL_NAME.match(name):
            raise _bad(AgentsProblem.BAD_VALUE, source, key, f"{name!r} is not a valid name")
    return tuple(value)


def _optional_text(table: Mapping[str, Any], key: str, source: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _bad(AgentsProblem.BAD_VALUE, source, f"{where}.{key}", "must be non-empty text")
    return value


def _bad(problem: AgentsProblem, source: str, key: str, message: str) -> AgentsConfigError:
    return AgentsConfigError(problem, source, key, message)


def _pairs(voices: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={voice!r}" for name, voice in voices.items())


__all__ = [
    "AgentSpec",
    "AgentsConfig",
    "AgentsConfigError",
    "AgentsProblem",
    "AgentsWarning",
    "BrainPath",
    "HandoffSettings",
    "WarningKind",
    "parse_agents",
    "transfer_tool",
]
