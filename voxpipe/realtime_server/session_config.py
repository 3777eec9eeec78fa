"""The session configuration: defaults, partial merge, and typed accessors.

``session.update`` carries only the fields to change; nested objects merge
field by field and an explicit ``null`` switches a feature off (for example
``turn_detection: null`` for push-to-talk). The merged result is validated as
a whole with the ``openai`` model, so the session never holds a config the
protocol does not allow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import pydantic
from openai.types.realtime import RealtimeSessionCreateRequest

from voxpipe.audio import AudioFormat
from voxpipe.realtime_server.parsing import error_from_validation
from voxpipe.realtime_server.protocol_errors import (
    ErrorCode,
    ProtocolError,
    invalid_request,
    invalid_value,
)

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty, and friendly voice assistant. Keep answers short: "
    "one or two sentences."
)
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 400}


class Modality(enum.Enum):
    """What a response produces."""

    AUDIO = "audio"
    TEXT = "text"


@dataclass(frozen=True)
class TurnConfig:
    """Server VAD parameters with OpenAI's defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None


def default_session(model: str) -> dict[str, Any]:
    """What ``session.created`` reports before any update."""
    return {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "max_output_tokens": "inf",
        "tool_choice": "auto",
        "tools": [],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                    "idle_timeout_ms": None,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    }


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base``: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "type" not in value:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def reject_unknown_fields(model: pydantic.BaseModel, path: str) -> None:
    """GA rejects fields it does not define (beta names such as ``input_audio_format``)."""
    for name in model.model_extra or {}:
        raise invalid_request(
            ErrorCode.UNKNOWN_PARAMETER,
            f"Unknown parameter: '{path}.{name}'.",
            param=f"{path}.{name}",
        )
    for name in model.model_fields_set:
        value = getattr(model, name)
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, pydantic.BaseModel):
                reject_unknown_fields(child, f"{path}.{name}")


def _format_of(spec: dict[str, Any] | None, param: str) -> AudioFormat:
    kind = (spec or {}).get("type", "audio/pcm")
    try:
        return AudioFormat(kind)
    except ValueError:
        raise invalid_value(
            param,
            f"Invalid value: '{kind}'. Supported values are: "
            "'audio/pcm', 'audio/pcmu', 'audio/pcma'.",
        ) from None


# OpenAI's documented ranges: (path in the session, low, high); None is unbounded.
_RANGES: tuple[tuple[tuple[str, ...], float, float | None], ...] = (
    (("audio", "output", "speed"), 0.25, 1.5),
    (("truncation", "retention_ratio"), 0.0, 1.0),
    (("audio", "input", "turn_detection", "threshold"), 0.0, 1.0),
    (("audio", "input", "turn_detection", "prefix_padding_ms"), 0, None),
    (("audio", "input", "turn_detection", "silence_duration_ms"), 0, None),
    (("audio", "input", "turn_detection", "idle_timeout_ms"), 0, None),
)


def _check_ranges(merged: dict[str, Any]) -> None:
    """Refuse values the schema's types admit but OpenAI's documentation does not."""
    for path, low, high in _RANGES:
        value: Any = merged
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not (low <= value and (high is None or value <= high)):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise invalid_value(
                "session." + ".".join(path), f"{path[-1]} must be {bounds}, not {value}."
            )


def check_max_output_tokens(tokens: Any, param: str) -> None:
    """``max_output_tokens`` is 1 to 4096, or 'inf' (OpenAI's range)."""
    if isinstance(tokens, int) and not 1 <= tokens <= 4096:
        raise invalid_value(param, "max_output_tokens must be between 1 and 4096, or 'inf'.")


class SessionConfig:
    """The live session configuration of one Realtime session."""

    def __init__(self, model: str) -> None:
        self._data = default_session(model)
        self._turn = self._read_turn()

    def update(self, session: pydantic.BaseModel, *, voice_locked: bool) -> None:
        """Merge a ``session.update`` payload, or raise without changing anything."""
        reject_unknown_fields(session, "session")
        changes = session.model_dump(exclude_unset=True, mode="json")
        if changes.get("type") != "realtime":
            raise invalid_value(
                "session.type",
                "Only 'realtime' sessions are served here; "
                "transcription sessions are not supported.",
            )
        new_voice = changes.get("audio", {}).get("output", {}).get("voice")
        if voice_locked and new_voice is not None and new_voice != self.voice:
            raise invalid_request(
                ErrorCode.VOICE_LOCKED,
                "Cannot update a conversation's voice if assistant audio is present.",
                param="session.audio.output.voice",
            )
        merged = deep_merge(self._data, changes)
        self._validate(merged)
        self._data = merged
        self._turn = self._read_turn()

    @staticmethod
    def _validate(merged: dict[str, Any]) -> None:
        try:
            RealtimeSessionCreateRequest.model_validate(merged)
        except pydantic.ValidationError as exc:
            raise error_from_validation(exc, "session") from None
        modalities = merged.get("output_modalities") or ["audio"]
        if len(set(modalities)) != 1:
            raise invalid_value(
                "session.output_modalities",
                "It is not possible to request both 'text' and 'audio'.",
            )
        audio = merged.get("audio") or {}
        _format_of((audio.get("input") or {}).get("format"), "session.audio.input.format.type")
        _format_of((audio.get("output") or {}).get("format"), "session.audio.output.format.type")
        check_max_output_tokens(merged.get("max_output_tokens"), "session.max_output_tokens")
        _check_ranges(merged)

    def model(self) -> RealtimeSessionCreateRequest:
        """The whole configuration as the ``openai`` session model."""
        return RealtimeSessionCreateRequest.model_validate(self._data)

    @property
    def _input(self) -> dict[str, Any]:
        return dict((self._data.get("audio") or {}).get("input") or {})

    @property
    def _output(self) -> dict[str, Any]:
        return dict((self._data.get("audio") or {}).get("output") or {})

    @property
    def input_format(self) -> AudioFormat:
        """Encoding of ``input_audio_buffer.append`` audio."""
        return _format_of(self._input.get("format"), "session.audio.input.format.type")

    @property
    def output_format(self) -> AudioFormat:
        """Encoding of ``response.output_audio.delta`` audio."""
        return _format_of(self._output.get("format"), "session.audio.output.format.type")

    @property
    def voice(self) -> str:
        """The configured voice name (or custom voice id)."""
        voice = self._output.get("voice") or "alloy"
        return str(voice["id"]) if isinstance(voice, dict) else str(voice)

    @property
    def instructions(self) -> str:
        """The system instructions."""
        return str(self._data.get("instructions") or "")

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The configured function tools, as Realtime tool objects."""
        return [t for t in self._data.get("tools") or [] if t.get("type", "function") == "function"]

    @property
    def modality(self) -> Modality:
        """Audio (with transcript) or text."""
        return Modality((self._data.get("output_modalities") or ["audio"])[0])

    @property
    def max_output_tokens(self) -> int | None:
        """The per-response output cap; ``None`` for ``inf``."""
        value = self._data.get("max_output_tokens")
        return value if isinstance(value, int) else None

    @property
    def truncation(self) -> Any:
        """``truncation`` as sent: ``None``, ``"auto"``, ``"disabled"`` or a retention ratio."""
        return self._data.get("truncation")

    @property
    def transcription_enabled(self) -> bool:
        """Whether input audio transcription events are wanted."""
        return self._input.get("transcription") is not None

    @property
    def turn(self) -> TurnConfig | None:
        """Turn detection parameters, or ``None`` when the client commits by hand."""
        return self._turn  # read on every VAD frame: built once per update

    def _read_turn(self) -> TurnConfig | None:
        spec = self._input.get("turn_detection")
        if not spec:
            return None
        defaults = TurnConfig()
        silence = spec.get("silence_duration_ms")
        if spec.get("type") == "semantic_vad":
            silence = SEMANTIC_SILENCE_MS.get(spec.get("eagerness") or "auto", 800)
        return TurnConfig(
            threshold=float(_or(spec.get("threshold"), defaults.threshold)),
            prefix_padding_ms=int(_or(spec.get("prefix_padding_ms"), defaults.prefix_padding_ms)),
            silence_duration_ms=int(_or(silence, defaults.silence_duration_ms)),
            create_response=bool(_or(spec.get("create_response"), True)),
            interrupt_response=bool(_or(spec.get("interrupt_response"), True)),
            idle_timeout_ms=spec.get("idle_timeout_ms"),
        )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


__all__ = ["Modality", "ProtocolError", "SessionConfig", "TurnConfig", "default_session"]
