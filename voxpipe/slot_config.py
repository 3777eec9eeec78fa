"""The ``[chained]`` table of ``agent.toml``: the engines of each chained slot, in order.

Example::

    [chained]
    stt = ["whisper"]                                  # one engine: no fallback
    llm = [{engine = "openai", model = "gpt-4.1-mini"}, "llama"]
    tts = ["piper", "espeak"]
    retry_after_partial = false  # an LLM that already streamed text is not replaced
    stt_deadline_ms = 5000       # the whole transcript of a segment
    llm_deadline_ms = 5000       # the first text, then each next piece of it
    tts_deadline_ms = 2000       # a sentence's first audio
    trip_after = 2               # failures in a row that bench an engine ...
    cooldown_ms = 30000          # ... for this long

An engine is its name, or a table with ``engine``, an optional ``model`` (a
local path for whisper, llama and piper; a model name for openai) and an
optional ``name`` that labels it in the timeline and metrics (two entries of
one engine need one), and an optional ``deadline_ms`` of its own (a remote
provider may deserve a different wait than a local model). A slot left out
keeps its default engine.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voxpipe.errors import ConfigError
from voxpipe.slot_fallback import FallbackPolicy, Slot, SlotFallback


class EngineKind(enum.Enum):
    """An engine that can fill a chained slot."""

    WHISPER = "whisper"  # faster-whisper, tiny.en by default (local)
    LLAMA = "llama"  # llama.cpp, Qwen2.5-0.5B by default (local)
    OPENAI = "openai"  # OpenAI's chat completions (OPENAI_API_KEY, OPENAI_BASE_URL)
    PIPER = "piper"  # Piper, en_US-joe-medium by default (local)
    ESPEAK = "espeak"  # eSpeak NG (local)


SLOT_ENGINES: dict[Slot, tuple[EngineKind, ...]] = {
    Slot.STT: (EngineKind.WHISPER,),
    Slot.LLM: (EngineKind.LLAMA, EngineKind.OPENAI),
    Slot.TTS: (EngineKind.PIPER, EngineKind.ESPEAK),
}

DEFAULT_DEADLINES_MS = {Slot.STT: 5_000, Slot.LLM: 5_000, Slot.TTS: 2_000}

_KEYS = (
    "stt",
    "llm",
    "tts",
    "retry_after_partial",
    "stt_deadline_ms",
    "llm_deadline_ms",
    "tts_deadline_ms",
    "trip_after",
    "cooldown_ms",
)
_ENGINE_KEYS = ("engine", "model", "name", "deadline_ms")


@dataclass(frozen=True)
class EngineSpec:
    """One engine of a slot: its kind, its model (path or name), its label."""

    kind: EngineKind
    name: str
    model: str | None = None
    deadline_ms: int | None = None  # None: the slot's deadline

    @property
    def remote(self) -> bool:
        return self.kind is EngineKind.OPENAI


@dataclass(frozen=True)
class SlotSpec:
    """A slot's engines in order and how it hands requests on."""

    slot: Slot
    engines: tuple[EngineSpec, ...]
    policy: FallbackPolicy

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.engines)

    def fallback(self) -> SlotFallback:
        """The slot's fallback core for one call."""
        deadlines = {e.name: e.deadline_ms for e in self.engines if e.deadline_ms is not None}
        return SlotFallback(self.slot, self.names, self.policy, deadlines)


@dataclass(frozen=True)
class ChainedSlots:
    """The configured slots; ``None`` keeps a slot's default engine."""

    stt: SlotSpec | None = None
    llm: SlotSpec | None = None
    tts: SlotSpec | None = None


def parse_chained_table(table: Any, source: str) -> ChainedSlots:
    """Validate ``[chained]``; every bad value is a ConfigError naming the file and key."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'chained' must be a table ([chained])")
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"{source}: unknown key [chained].{key}", hint=f"known: {_KEYS}")
    where = f"{source}: [chained]"
    shared = {
        "retry_after_partial": _bool(table, "retry_after_partial", False, where),
        "trip_after": _whole(table, "trip_after", 2, where, least=1),
        "cooldown_ms": _whole(table, "cooldown_ms", 30_000, where, least=0),
    }
    slots = {
        slot: _slot(table, slot, shared, where)
        for slot in Slot
        if table.get(slot.value) is not None
    }
    return ChainedSlots(slots.get(Slot.STT), slots.get(Slot.LLM), slots.get(Slot.TTS))


def _slot(table: Mapping[str, Any], slot: Slot, shared: dict[str, Any], where: str) -> SlotSpec:
    entries = table[slot.value]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}.{slot.value} must be a non-empty list of engines")
    engines = [
        _engine(entry, slot, f"{where}.{slot.value}[{i}]") for i, entry in enumerate(entries)
    ]
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{where}.{slot.value} names an engine twice: {names}",
            hint="give each entry of the same engine its own name = '...'",
        )
    deadline = _whole(
        table, f"{slot.value}_deadline_ms", DEFAULT_DEADLINES_MS[slot], where, least=1
    )
    retry = shared["retry_after_partial"] if slot is Slot.LLM else False
    policy = FallbackPolicy(
        deadline_ms=deadline,
        retry_after_partial=retry,
        trip_after=shared["trip_after"],
        cooldown_ms=shared["cooldown_ms"],
    )
    return SlotSpec(slot, tuple(engines), policy)


def _engine(entry: Any, slot: Slot, where: str) -> EngineSpec:
    fields: Mapping[str, Any] = {"engine": entry} if isinstance(entry, str) else entry
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where} must be an engine name or a table, got {entry!r}")
    for key in fields:
        if key not in _ENGINE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}", hint=f"known: {_ENGINE_KEYS}")
    allowed = SLOT_ENGINES[slot]
    try:
        kind = EngineKind(fields.get("engine"))
    except ValueError:
        kind = None
    if kind not in allowed:
        choices = ", ".join(k.value for k in allowed)
        raise ConfigError(
            f"{where}: {fields.get('engine')!r} is not a {slot.value} engine ({choices})"
        )
    assert kind is not None
    model, name = fields.get("model"), fields.get("name", kind.value)
    for key, value in (("model", model), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where}.{key} must be non-empty text, got {value!r}")
    deadline = _whole(fields, "deadline_ms", 0, where, least=1) if "deadline_ms" in fields else None
    return EngineSpec(kind, name, model, deadline)


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _whole(table: Mapping[str, Any], key: str, default: int, where: str, *, least: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(
            f"{where}.{key} must be a whole number of at least {least}, got {value!r}"
        )
    return value
