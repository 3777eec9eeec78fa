"""The ``error`` events of the Realtime protocol, as a typed exception.

Everything the core rejects raises :class:`ProtocolError`; the session turns
it into an ``error`` server event carrying the offending client ``event_id``
and keeps going. Codes and messages follow OpenAI's so clients that branch
on them behave the same against this server.
"""

from __future__ import annotations

import enum

from openai.types.realtime import RealtimeErrorEvent
from openai.types.realtime.realtime_error import RealtimeError


class ErrorType(enum.Enum):
    """The ``error.type`` values the server sends."""

    INVALID_REQUEST = "invalid_request_error"
    SERVER = "server_error"
    RATE_LIMIT = "rate_limit_error"


class ErrorCode(enum.Enum):
    """The ``error.code`` values the server sends."""

    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"
    INVALID_TYPE = "invalid_type"
    MISSING_PARAMETER = "missing_required_parameter"
    UNKNOWN_PARAMETER = "unknown_parameter"
    STRING_TOO_LONG = "string_above_max_length"
    COMMIT_EMPTY = "input_audio_buffer_commit_empty"
    ACTIVE_RESPONSE = "conversation_already_has_active_response"
    CANCEL_NOT_ACTIVE = "response_cancel_not_active"
    RETRIEVE_INVALID_ITEM = "item_retrieve_invalid_item_id"
    TRUNCATE_INVALID_ITEM = "item_truncate_invalid_item_id"
    DELETE_INVALID_ITEM = "item_delete_invalid_item_id"
    DUPLICATE_ITEM_ID = "item_duplicate_id"
    SESSION_EXPIRED = "session_expired"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    VOICE_LOCKED = "cannot_update_voice"
    CONTEXT_TOO_LONG = "context_length_exceeded"


class ProtocolError(Exception):
    """A client event the server refuses; becomes one ``error`` event."""

    def __init__(
        self,
        error_type: ErrorType,
        code: ErrorCode | str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.code = code.value if isinstance(code, ErrorCode) else code
        self.message = message
        self.param = param
        self.event_id = event_id

    def with_event_id(self, event_id: str | None) -> ProtocolError:
        """This error, naming the client event that caused it."""
        self.event_id = self.event_id or event_id
        return self

    def to_event(self, server_event_id: str) -> RealtimeErrorEvent:
        """The ``error`` server event for this error."""
        return RealtimeErrorEvent(
            type="error",
            event_id=server_event_id,
            error=RealtimeError(
                type=self.error_type.value,
                code=self.code,
                message=self.message,
                param=self.param,
                event_id=self.event_id,
            ),
        )


def invalid_request(code: ErrorCode, message: str, *, param: str | None = None) -> ProtocolError:
    """An ``invalid_request_error`` (the client sent something wrong)."""
    return ProtocolError(ErrorType.INVALID_REQUEST, code, message, param=param)


def invalid_value(param: str, message: str) -> ProtocolError:
    """``invalid_value`` on ``param``."""
    return invalid_request(ErrorCode.INVALID_VALUE, message, param=param)


def missing_parameter(param: str) -> ProtocolError:
    """A required field is absent."""
    return invalid_request(
        ErrorCode.MISSING_PARAMETER, f"Missing required parameter: '{param}'.", param=param
    )


def session_expired(max_seconds: float) -> ProtocolError:
    """The hard session cap was reached (OpenAI's wording)."""
    minutes = max_seconds / 60
    span = f"{minutes:g} minutes" if max_seconds >= 60 else f"{max_seconds:g} seconds"
    return invalid_request(
        ErrorCode.SESSION_EXPIRED, f"Your session hit the maximum duration of {span}."
    )
