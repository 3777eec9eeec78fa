"""Eval scenario files: a scripted caller and what each of its turns expects back.

The format is pipecat 1.14's scripted scenario format (``pipecat.evals.script``)
where the concepts match, so a suite moves between the two: a file holds
``scenarios:`` (each with ``name:`` and ``turns:``), file-level keys are the
defaults of its scenarios, a turn says ``user:`` (text, or text and
``pause_ms:`` pauses) or plays a recording (``audio:``), may wait for a bot
event (``send_after: {event: bot_started_speaking, delay_ms: 800}``), and
lists ``expect:`` entries (``event:``, ``within_ms:``, ``text_contains:``,
``text_excludes:``, ``calls:``/``name:``/``args:``, ``eval:``, ``absent:``).
pipecat's ``user:``/``judge:`` blocks are accepted and ignored: voxpipe always
speaks the caller with the local TTS and judges the bot's transcript.

voxpipe adds keys pipecat does not have (pipecat refuses them, so a file that
uses them is a voxpipe file): ``matches:`` (a regular expression),
``max_gap_ms:`` (the longest silence inside the reply), ``stop_within_ms:``
(how fast the bot's audio stops on a barge-in), ``policy:`` on
``guardrail_tripped``, the ``cost`` event with ``max_usd:``, and at file or
scenario level ``agent:`` (an agent.toml), ``brain:`` (what the embedded
scripted brain answers) and ``server_faults:`` (faults armed on the embedded
server).

A scenario with ``persona:`` is pipecat's simulation: instead of ``turns:``, a
caller described by ``persona:`` and ``goal:`` is played by an LLM
(``simulator: {service: local|openai, model: ...}``; the local llama.cpp
model by default, OpenAI's chat model when a key is set) and spoken by the
local TTS; it hangs up with an ``end_call`` tool, within ``max_turns``.
``success:`` is judged over the whole conversation by the ``--judge``;
``metrics:`` with ``measure: function_calls`` (``calls:``, every listed call
made and no other) and ``measure: turns`` (``min_value``/``max_value``) are
graded without one. Every mistake is a :class:`~voxpipe.errors.ScenarioError` naming the
file and the key, raised before any call runs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxpipe.errors import ScenarioError

MAX_SCENARIO_FILE_BYTES = 1 << 20


class ExpectKind(enum.Enum):
    """What an expectation grades (pipecat's event names, plus voxpipe's own)."""

    FUNCTION_CALL = "function_call"
    RESPONSE = "response"
    BOT_INTERRUPTED = "bot_interrupted"
    GUARDRAIL_TRIPPED = "guardrail_tripped"
    COST = "cost"
    BOT_STARTED_SPEAKING = "bot_started_speaking"
    BOT_STOPPED_SPEAKING = "bot_stopped_speaking"
    USER_STARTED_SPEAKING = "user_started_speaking"
    USER_STOPPED_SPEAKING = "user_stopped_speaking"
    USER_TRANSCRIPTION = "user_transcription"


# pipecat's names for the bot's reply text all mean the transcript here.
_EVENT_ALIASES = {"llm_response": "response", "tts_response": "response"}


class CueEvent(enum.Enum):
    """Bot events a turn's line can wait for (``send_after.event``)."""

    BOT_STARTED_SPEAKING = "bot_started_speaking"
    BOT_STOPPED_SPEAKING = "bot_stopped_speaking"


@dataclass(frozen=True)
class SendAfter:
    """Say the line ``delay_ms`` after ``event`` (None: after the previous line ended)."""

    event: CueEvent | None
    delay_ms: int


@dataclass(frozen=True)
class ExpectedCall:
    name: str
    args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Expectation:
    """One check of a turn; fields that do not apply to ``kind`` are None."""

    kind: ExpectKind
    where: str  # "turn 2 expect 1", for evidence and errors
    absent: bool = False
    within_ms: int | None = None
    text_contains: str | None = None
    text_excludes: str | None = None
    matches: re.Pattern[str] | None = None
    calls: tuple[ExpectedCall, ...] | None = None  # () means: no call at all
    criterion: str | None = None  # ``eval:``, for the judge
    max_gap_ms: int | None = None
    stop_within_ms: int | None = None
    policy: str | None = None
    max_usd: float | None = None


@dataclass(frozen=True)
class ScriptedTurn:
    """What the caller says in one turn, when, and what is expected back."""

    text: str  # what the line says (the judge and the evidence read it)
    parts: tuple[str | int, ...]  # spoken text and pauses (ms), in order
    audio: Path | None
    send_after: SendAfter | None
    expect: tuple[Expectation, ...]


class SimulatorKind(enum.Enum):
    """Which LLM plays a simulated caller (``simulator.service``)."""

    AUTO = "auto"  # OpenAI's chat model when a key is set, else the local model
    LOCAL = "local"
    OPENAI = "openai"


DEFAULT_MAX_TURNS = 20  # pipecat's default cap on a persona's turns


@dataclass(frozen=True)
class Simulation:
    """A caller played by an LLM: who they are, what they want, how the call is judged."""

    persona: str
    goal: str
    success: str | None = None  # judged over the whole conversation
    max_turns: int = DEFAULT_MAX_TURNS
    simulator: SimulatorKind = SimulatorKind.AUTO
    model: str | None = None
    calls: tuple[ExpectedCall, ...] | None = None  # ``measure: function_calls``
    turns_range: tuple[float | None, float | None] | None = None  # ``measure: turns``


@dataclass(frozen=True)
class Scenario:
    name: str
    source: Path
    turns: tuple[ScriptedTurn, ...]
    instructions: str | None = None  # from ``context:``'s system message
    agent: Path | None = None
    brain_script: tuple[Any, ...] | None = None
    brain_pace: float = 1.2
    server_faults: tuple[Mapping[str, Any], ...] = ()
    stop_on_failure: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    simulation: Simulation | None = None  # a caller played by an LLM (then no ``turns``)


_SCENARIO_KEYS = {
    "name",
    "turns",
    "user",
    "judge",
    "context",
    "stop_on_failure",
    "agent",
    "brain",
    "server_faults",
    "description",
}
_SIMULATED_KEYS = {"persona", "goal", "success", "metrics", "simulator", "max_turns"}
# pipecat's simulation backstops: accepted; voxpipe's own limits (the call's length,
# the answer timeout) already end a call that stalls.
_SIMULATED_ACCEPTED = {"max_duration_s", "max_silence_s", "runs"}
_TURN_KEYS = {"user", "audio", "send_after", "expect"}
_EXPECT_KEYS = {
    "event",
    "within_ms",
    "text_contains",
    "text_excludes",
    "matches",
    "calls",
    "name",
    "args",
    "eval",
    "absent",
    "check_from",
    "max_gap_ms",
    "stop_within_ms",
    "policy",
    "max_usd",
}


def load_scenarios(path: Path) -> list[Scenario]:
    """The scenarios of one file (or of every ``*.yaml``/``*.yml`` in a directory)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise ScenarioError(str(path), "files", "the directory holds no .yaml scenario file")
        return [s for f in files for s in load_scenarios(f)]
    data = _read_yaml(path)
    return parse_file(data, path)


def _read_yaml(path: Path) -> Mapping[str, Any]:
    import yaml  # type: ignore[import-untyped]

    where = str(path)
    if not path.is_file():
        raise ScenarioError(where, "file", "not found" if not path.exists() else "not a file")
    if path.stat().st_size > MAX_SCENARIO_FILE_BYTES:
        raise ScenarioError(where, "file", f"over {MAX_SCENARIO_FILE_BYTES} bytes")

    class _Loader(yaml.SafeLoader):  # type: ignore[misc]
        """pipecat's ``!include <path>``: another YAML file, relative to this one."""

    def _include(loader: Any, node: Any) -> Any:
        return _read_yaml_value(path.parent / loader.construct_scalar(node), where)

    _Loader.add_constructor("!include", _include)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScenarioError(where, "file", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(where, "file", "a scenario file is a mapping with 'scenarios:'")
    return data


def _read_yaml_value(path: Path, including: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScenarioError(including, "!include", f"cannot read {path}: {exc}") from None


def parse_file(data: Mapping[str, Any], path: Path) -> list[Scenario]:
    """The scenarios of a parsed file; its top-level keys are their defaults."""
    where = str(path)
    raw = data.get("scenarios")
    defaults = {k: v for k, v in data.items() if k != "scenarios"}
    if raw is None:
        if "turns" not in data and not _SIMULATED_KEYS & set(data):
            raise ScenarioError(where, "scenarios", "missing (a list of scenarios with 'turns:')")
        raw = [{}]  # pipecat's older shape: the file is its one scenario
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(where, "scenarios", "must be a non-empty list")
    file_name = str(data.get("name") or path.stem)
    scenarios = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ScenarioError(where, f"scenarios[{index}]", "must be a mapping")
        merged = {**defaults, **entry}
        if "name" not in entry and len(raw) > 1:
            raise ScenarioError(where, f"scenarios[{index}].name", "missing")
        name = f"{file_name}/{entry['name']}" if "name" in entry else file_name
        scenarios.append(_parse_scenario(merged, path, name, f"scenarios[{index}]"))
    return scenarios


def _parse_scenario(data: Mapping[str, Any], path: Path, name: str, key: str) -> Scenario:
    where = str(path)
    simulation = None
    if "persona" in data:
        if "turns" in data:
            raise ScenarioError(
                where, f"{key}.turns", "a scenario is scripted (turns:) or simulated (persona:)"
            )
        _unknown(data, _SCENARIO_KEYS | _SIMULATED_KEYS | _SIMULATED_ACCEPTED, where, key)
        simulation = _simulation(data, where, key)
        turns: Any = []
    else:
        stray = sorted(_SIMULATED_KEYS & set(data))
        if stray:
            raise ScenarioError(where, f"{key}.{stray[0]}", "only a simulation (persona:) has it")
        _unknown(data, _SCENARIO_KEYS, where, key)
        turns = data.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ScenarioError(where, f"{key}.turns", "must be a non-empty list of turns")
    brain = _mapping(data.get("brain", {}), where, f"{key}.brain")
    _unknown(brain, {"script", "pace"}, where, f"{key}.brain")
    script = brain.get("script")
    if script is not None:
        _check_script(script, where, f"{key}.brain.script")
    faults = data.get("server_faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
        raise ScenarioError(where, f"{key}.server_faults", "must be a list of mappings")
    return Scenario(
        name=name,
        source=path,
        turns=tuple(_parse_turn(t, path, f"{key}.turns[{i}]", i) for i, t in enumerate(turns)),
        instructions=_instructions(data.get("context"), where, f"{key}.context"),
        agent=_relative_path(data.get("agent"), path, f"{key}.agent"),
        brain_script=tuple(script) if script is not None else None,
        brain_pace=_number(brain.get("pace", 1.2), where, f"{key}.brain.pace", positive=True),
        server_faults=tuple(faults),
        stop_on_failure=bool(data.get("stop_on_failure", False)),
        simulation=simulation,
    )


def _simulation(data: Mapping[str, Any], where: str, key: str) -> Simulation:
    """A ``persona:`` scenario (pipecat's simulation format, the keys voxpipe runs)."""
    persona = _text(data.get("persona"), where, f"{key}.persona")
    goal = _text(data.get("goal"), where, f"{key}.goal")
    if not persona or not persona.strip():
        raise ScenarioError(where, f"{key}.persona", "must say who the caller is")
    if not goal or not goal.strip():
        raise ScenarioError(where, f"{key}.goal", "must say what the caller wants")
    max_turns = _int(data.get("max_turns", DEFAULT_MAX_TURNS), where, f"{key}.max_turns")
    if max_turns < 1:
        raise ScenarioError(where, f"{key}.max_turns", "must be at least 1")
    kind, model = SimulatorKind.AUTO, None
    if "simulator" in data:
        block = _mapping(data["simulator"], where, f"{key}.simulator")
        _unknown(block, {"service", "model"}, where, f"{key}.simulator")
        service = block.get("service", "auto")
        try:
            kind = SimulatorKind(service)
        except ValueError:
            known = ", ".join(k.value for k in SimulatorKind)
            raise ScenarioError(
                where, f"{key}.simulator.service", f"{service!r} is not one of: {known}"
            ) from None
        model = _text(block.get("model"), where, f"{key}.simulator.model")
    calls, turns_range = None, None
    metrics = data.get("metrics", [])
    if not isinstance(metrics, list):
        raise ScenarioError(where, f"{key}.metrics", "must be a list")
    for i, raw in enumerate(metrics):
        mkey = f"{key}.metrics[{i}]"
        metric = _mapping(raw, where, mkey)
        measure = metric.get("measure")
        if measure == "function_calls":
            _unknown(metric, {"name", "measure", "calls"}, where, mkey)
            calls = _metric_calls(metric.get("calls"), where, f"{mkey}.calls")
        elif measure == "turns":
            _unknown(metric, {"name", "measure", "min_value", "max_value"}, where, mkey)
            low, high = metric.get("min_value"), metric.get("max_value")
            if low is None and high is None:
                raise ScenarioError(where, mkey, "needs a min_value or a max_value")
            turns_range = (
                None if low is None else _number(low, where, f"{mkey}.min_value"),
                None if high is None else _number(high, where, f"{mkey}.max_value"),
            )
        else:
            raise ScenarioError(
                where,
                f"{mkey}.measure" if measure is not None else f"{mkey}.criterion",
                "voxpipe eval grades the measures function_calls and turns; "
                "a judged criterion goes in 'success:'",
            )
    return Simulation(
        persona=persona.strip(),
        goal=goal.strip(),
        success=_text(data.get("success"), where, f"{key}.success"),
        max_turns=max_turns,
        simulator=kind,
        model=model,
        calls=calls,
        turns_range=turns_range,
    )


def _metric_calls(raw: Any, where: str, key: str) -> tuple[ExpectedCall, ...]:
    """pipecat's ``calls:`` of a function_calls metric: names, or ``{name, args}``."""
    if not isinstance(raw, list):
        raise ScenarioError(where, key, "must be a list ([] means: no call)")
    calls = []
    for i, call in enumerate(raw):
        if isinstance(call, str) and call:
            calls.append(ExpectedCall(call))
            continue
        block = _mapping(call, where, f"{key}[{i}]")
        _unknown(block, {"name", "args"}, where, f"{key}[{i}]")
        if not isinstance(block.get("name"), str):
            raise ScenarioError(where, f"{key}[{i}].name", "must be a function name")
        args = block.get("args")
        if args is not None and not isinstance(args, dict):
            raise ScenarioError(where, f"{key}[{i}].args", "must be a mapping")
        calls.append(ExpectedCall(block["name"], args))
    return tuple(calls)


def _parse_turn(data: Any, path: Path, key: str, index: int) -> ScriptedTurn:
    where = str(path)
    turn = _mapping(data, where, key)
    for unsupported in ("dtmf", "image"):
        if unsupported in turn:
            raise ScenarioError(where, f"{key}.{unsupported}", "not supported by voxpipe eval")
    _unknown(turn, _TURN_KEYS, where, key)
    parts = _user_parts(turn.get("user"), where, f"{key}.user")
    audio = _relative_path(turn.get("audio"), path, f"{key}.audio")
    if audio is not None and not audio.is_file():
        raise ScenarioError(where, f"{key}.audio", f"{audio} is not a file")
    if not parts and audio is None:
        raise ScenarioError(where, f"{key}.user", "a turn says something: 'user:' or 'audio:'")
    expect = turn.get("expect", [])
    if not isinstance(expect, list):
        raise ScenarioError(where, f"{key}.expect", "must be a list")
    label = f"turn {index + 1}"
    return ScriptedTurn(
        text=" ".join(p for p in parts if isinstance(p, str)),
        parts=tuple(parts),
        audio=audio,
        send_after=_send_after(turn["send_after"], where, key) if "send_after" in turn else None,
        expect=tuple(
            _parse_expectation(e, where, f"{key}.expect[{j}]", f"{label} expect {j + 1}")
            for j, e in enumerate(expect)
        ),
    )


def _user_parts(user: Any, where: str, key: str) -> list[str | int]:
    if user is None:
        return []
    if isinstance(user, str):
        return [user] if user.strip() else []
    if not isinstance(user, list):
        raise ScenarioError(where, key, "must be text or a list of text and {pause_ms: N}")
    parts: list[str | int] = []
    for i, part in enumerate(user):
        if isinstance(part, str) and part.strip():
            parts.append(part)
        elif isinstance(part, dict) and set(part) == {"pause_ms"}:
            parts.append(_int(part["pause_ms"], where, f"{key}[{i}].pause_ms"))
        else:
            raise ScenarioError(where, f"{key}[{i}]", "must be text or {pause_ms: N}")
    return parts


def _send_after(data: Any, where: str, key: str) -> SendAfter:
    block = _mapping(data, where, f"{key}.send_after")
    _unknown(block, {"event", "delay_ms"}, where, f"{key}.send_after")
    delay = _int(block.get("delay_ms", 0), where, f"{key}.send_after.delay_ms")
    event = block.get("event")
    if event is None:
        if delay == 0:
            raise ScenarioError(where, f"{key}.send_after", "needs an 'event:' or a 'delay_ms:'")
        return SendAfter(None, delay)
    try:
        return SendAfter(CueEvent(event), delay)
    except ValueError:
        known = ", ".join(e.value for e in CueEvent)
        raise ScenarioError(
            where, f"{key}.send_after.event", f"{event!r} is not one of: {known}"
        ) from None


def _parse_expectation(data: Any, where: str, key: str, label: str) -> Expectation:
    entry = _mapping(data, where, key)
    _unknown(entry, _EXPECT_KEYS, where, key)
    event = str(entry.get("event"))
    try:
        kind = ExpectKind(_EVENT_ALIASES.get(event, event))
    except ValueError:
        known = ", ".join(k.value for k in ExpectKind)
        raise ScenarioError(
            where, f"{key}.event", f"{event!r} is not graded here; one of: {known}"
        ) from None
    absent = entry.get("absent", False)
    if not isinstance(absent, bool):
        raise ScenarioError(where, f"{key}.absent", "must be true or false")
    if absent and {"text_contains", "calls", "eval", "matches"} & set(entry):
        raise ScenarioError(where, f"{key}.absent", "matches the event alone; drop the checks")
    pattern = entry.get("matches")
    try:
        matches = re.compile(pattern, re.IGNORECASE) if pattern is not None else None
    except (re.error, TypeError) as exc:
        raise ScenarioError(where, f"{key}.matches", f"not a regular expression: {exc}") from None
    optional_int = {
        name: _int(entry[name], where, f"{key}.{name}") if name in entry else None
        for name in ("within_ms", "max_gap_ms", "stop_within_ms")
    }
    return Expectation(
        kind=kind,
        where=label,
        absent=absent,
        text_contains=_text(entry.get("text_contains"), where, f"{key}.text_contains"),
        text_excludes=_text(entry.get("text_excludes"), where, f"{key}.text_excludes"),
        matches=matches,
        calls=_calls(entry, kind, where, key),
        criterion=_text(entry.get("eval"), where, f"{key}.eval"),
        policy=_text(entry.get("policy"), where, f"{key}.policy"),
        max_usd=(
            _number(entry["max_usd"], where, f"{key}.max_usd") if "max_usd" in entry else None
        ),
        **optional_int,
    )


def _calls(entry: Mapping[str, Any], kind: ExpectKind, where: str, key: str) -> Any:
    if "calls" not in entry and "name" not in entry:
        return None
    if kind is not ExpectKind.FUNCTION_CALL:
        raise ScenarioError(where, f"{key}.calls", "only a function_call expectation has calls")
    shorthand = [{"name": entry.get("name"), "args": entry.get("args")}]
    raw = entry.get("calls", shorthand)
    if not isinstance(raw, list):
        raise ScenarioError(where, f"{key}.calls", "must be a list ([] means: no call)")
    calls = []
    for i, call in enumerate(raw):
        call_key = f"{key}.calls[{i}]"
        block = _mapping(call, where, call_key)
        _unknown(block, {"name", "args"}, where, call_key)
        if not isinstance(block.get("name"), str):
            raise ScenarioError(where, f"{call_key}.name", "must be a function name")
        args = block.get("args")
        if args is not None and not isinstance(args, dict):
            raise ScenarioError(where, f"{call_key}.args", "must be a mapping")
        calls.append(ExpectedCall(block["name"], args))
    return tuple(calls)


def _instructions(context: Any, where: str, key: str) -> str | None:
    if context is None:
        return None
    if not isinstance(context, list):
        raise ScenarioError(where, key, "must be a list of messages")
    for i, message in enumerate(context):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ScenarioError(where, f"{key}[{i}]", "must be {role: ..., content: text}")
    system = [m["content"] for m in context if m.get("role") == "system"]
    return "\n".join(system) or None


def _check_script(script: Any, where: str, key: str) -> None:
    from voxpipe.errors import ConfigError
    from voxpipe.transports.realtime_server.brains import parse_script

    if not isinstance(script, list):
        raise ScenarioError(where, key, "must be a list of replies and function calls")
    try:
        parse_script(script)
    except ConfigError as exc:
        raise ScenarioError(where, key, exc.message) from None


def _relative_path(value: Any, path: Path, key: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ScenarioError(str(path), key, "must be a path")
    return (path.parent / value).resolve()


def _unknown(data: Mapping[str, Any], known: set[str], where: str, key: str) -> None:
    import difflib

    for name in data:
        if name not in known:
            close = difflib.get_close_matches(str(name), sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise ScenarioError(where, f"{key}.{name}", "unknown key", hint=hint)


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(where, key, "must be a mapping")
    return value


def _text(value: Any, where: str, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ScenarioError(where, key, "must be text")
    return value


def _int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(where, key, f"must be a whole number of ms >= 0, not {value!r}")
    return value


def _number(value: Any, where: str, key: str, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (positive and value == 0):
        raise ScenarioError(where, key, f"must be a {'positive ' if positive else ''}number")
    return float(value)
