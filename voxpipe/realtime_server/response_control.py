"""The model's side of a session: response create/cancel, brain output, usage.

A mixin of :class:`voxpipe.realtime_server.session.RealtimeSession`. Only one
response runs at a time; its events come from :class:`ResponseRun`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from openai.types.realtime import (
    RateLimitsUpdatedEvent,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
    RealtimeResponseCreateParams,
    RealtimeResponseUsage,
    ResponseCancelEvent,
    ResponseCreateEvent,
)
from openai.types.realtime.realtime_response_status import Error

from voxpipe.realtime_server.context_window import ContextWindow, TruncationPolicy
from voxpipe.realtime_server.conversation import (
    Conversation,
    ItemRecord,
    call_text,
    item_text,
    validate_item,
)
from voxpipe.realtime_server.effects import (
    AudioProduced,
    BrainOutput,
    BrainRequest,
    BrainStartRequested,
    BrainStopRequested,
    Output,
    TextProduced,
)
from voxpipe.realtime_server.ids import IdFactory, IdKind
from voxpipe.realtime_server.protocol_errors import (
    ErrorCode,
    ProtocolError,
    invalid_request,
    invalid_value,
)
from voxpipe.realtime_server.rate_limits import DEFAULT_MAX_OUTPUT_TOKENS, RateLimiter, Reservation
from voxpipe.realtime_server.responses import ResponseRun, ResponseStatus, StatusReason
from voxpipe.realtime_server.session_config import (
    Modality,
    SessionConfig,
    check_max_output_tokens,
)
from voxpipe.realtime_server.usage import (
    ContextPiece,
    ContextTokens,
    build_usage,
    input_audio_tokens,
    output_audio_tokens,
    text_tokens,
)


class ResponseControl:
    """Response lifecycle (mixin)."""

    ids: IdFactory
    config: SessionConfig
    conversation: Conversation
    limiter: RateLimiter
    assistant_audio_sent: bool
    idle_since_ms: int | None

    def __init__(self) -> None:
        self.active: ResponseRun | None = None
        self.responses_created = 0
        self._context: list[ItemRecord] = []
        self._context_tokens = ContextTokens(())
        self._last_context: ContextTokens | None = None
        self._reservation: Reservation | None = None
        self._instructions = ""
        self._tools: list[dict[str, Any]] = []
        self.context_window = ContextWindow()

    def event_id(self) -> str:
        raise NotImplementedError

    # -- creating ------------------------------------------------------------

    def _on_response_create(self, event: ResponseCreateEvent, now_ms: int) -> list[Output]:
        return self.create_response(event.response or RealtimeResponseCreateParams(), now_ms)

    def auto_response(self, now_ms: int) -> list[Output]:
        """A response triggered by turn detection (skipped while one is running)."""
        if self.active:
            return []
        try:
            return self.create_response(RealtimeResponseCreateParams(), now_ms)
        except ProtocolError as error:  # a conversation too long with truncation disabled
            return [error.to_event(self.event_id())]

    def create_response(self, params: RealtimeResponseCreateParams, now_ms: int) -> list[Output]:
        """Start a response, or refuse if one is already active or its parameters are bad."""
        if params.output_modalities is not None and len(set(params.output_modalities)) != 1:
            raise invalid_value(
                "response.output_modalities",
                "It is not possible to request both 'text' and 'audio'.",
            )
        check_max_output_tokens(params.max_output_tokens, "response.max_output_tokens")
        if self.active is not None:
            raise invalid_request(
                ErrorCode.ACTIVE_RESPONSE,
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._instructions = (
            self.config.instructions if params.instructions is None else params.instructions
        )
        self._tools = (
            self.config.tools
            if params.tools is None
            else [
                t.model_dump(exclude_none=True)
                for t in params.tools
                if getattr(t, "type", "function") == "function"
            ]
        )
        self._context = self._context_for(params)
        run = self.active = self._new_run(params)
        self.responses_created += 1
        self._context_tokens = self._tokens_of(self._context)
        wanted = self._context_tokens.tokens + (run.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS)
        self._reservation = self.limiter.reserve(wanted, now_ms)
        outputs: list[Output] = [run.created(), self._rate_limits_event(now_ms)]
        if self._reservation is None:
            error = Error(
                type="rate_limit_error",
                code=ErrorCode.RATE_LIMIT_EXCEEDED.value,
                message="Rate limit reached for requests or tokens per minute; "
                "try again after the reset time in rate_limits.updated.",
            )
            return outputs + self._finish(ResponseStatus.FAILED, now_ms, error=error)
        return [*outputs, BrainStartRequested(run.id)]

    def _new_run(self, params: RealtimeResponseCreateParams) -> ResponseRun:
        modality = (
            Modality(params.output_modalities[0])
            if params.output_modalities
            else self.config.modality
        )
        limit = (
            params.max_output_tokens
            if params.max_output_tokens is not None
            else self.config.max_output_tokens
        )
        return ResponseRun(
            response_id=self.ids.new(IdKind.RESPONSE),
            ids=self.ids,
            conversation=None if params.conversation == "none" else self.conversation,
            modality=modality,
            output_format=self.config.output_format,
            voice=self.config.voice,
            max_output_tokens=limit if isinstance(limit, int) else None,
            metadata=dict(params.metadata) if params.metadata else None,
        )

    def _context_for(self, params: RealtimeResponseCreateParams) -> list[ItemRecord]:
        if params.input is None:
            fixed = self._tokens_of([])
            policy = TruncationPolicy.from_session(self.config.truncation, fixed.tokens)
            return self.context_window.fit(self.conversation.records(), _piece_tokens, policy)
        records = []
        for index, raw in enumerate(params.input):
            if raw.id and raw.id in self.conversation:  # an item_reference, resolved
                records.append(self.conversation.get(raw.id))
                continue
            item = validate_item(raw, f"response.input.{index}").model_copy(deep=True)
            item.id = item.id or self.ids.new(IdKind.ITEM)
            records.append(ItemRecord(item=item))
        return records

    def _rate_limits_event(self, now_ms: int) -> RateLimitsUpdatedEvent:
        return RateLimitsUpdatedEvent(
            type="rate_limits.updated",
            event_id=self.event_id(),
            rate_limits=self.limiter.snapshot(now_ms),
        )

    def _tokens_of(self, records: list[ItemRecord]) -> ContextTokens:
        pieces = [
            ContextPiece("instructions", text_tokens(self._instructions), 0),
            ContextPiece("tools", text_tokens(json.dumps(self._tools)) if self._tools else 0, 0),
        ]
        pieces += [_piece(record) for record in records]
        return ContextTokens(tuple(pieces))

    # -- the brain -------------------------------------------------------------

    def brain_request(self, response_id: str) -> BrainRequest:
        """What the brain needs for the active response (call when starting it)."""
        return self._brain_request(response_id, self._instructions, self._tools)

    def _brain_request(
        self, response_id: str, instructions: str, tools_given: list[dict[str, Any]]
    ) -> BrainRequest:
        messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}]
        messages += [m for r in self._context if (m := _chat_message(r)) is not None]
        tools = tuple(
            {
                "type": "function",
                "function": {k: t[k] for k in ("name", "description", "parameters") if k in t},
            }
            for t in tools_given
        )
        run = self.active
        return BrainRequest(
            response_id=response_id,
            messages=tuple(messages),
            tools=tools,
            modality=run.modality if run else self.config.modality,
            max_output_tokens=run.max_output_tokens if run else None,
            voice=self.config.voice,
            turn_index=self.responses_created - 1,
        )

    def speculative_request(self, transcript: str) -> BrainRequest:
        """The request a response would get if the user's turn ended now, saying ``transcript``.

        For a brain that starts on the reply during the server VAD's silence
        wait; the real request is compared with it when the response starts.
        """
        # What server VAD's automatic response will use: the session's settings.
        request = self._brain_request("speculative", self.config.instructions, self.config.tools)
        return dataclasses.replace(
            request,
            messages=(*request.messages, {"role": "user", "content": transcript}),
            modality=self.config.modality,
            max_output_tokens=None,
            turn_index=self.responses_created,
        )

    def brain_output(self, response_id: str, output: BrainOutput, now_ms: int) -> list[Output]:
        # Text a brain made is client-visible: what UTF-8 cannot carry (a lone
        # surrogate) becomes U+FFFD here, before any event holds it.
        """Turn one piece of brain output into events (ignored once the response ended)."""
        run = self.active
        if run is None or run.id != response_id:
            return []
        if isinstance(output, TextProduced):
            outputs: list[Output] = list(run.on_text(utf8_text(output.text)))
        elif isinstance(output, AudioProduced):
            outputs = list(run.on_audio(output.pcm16))
            self.assistant_audio_sent = self.assistant_audio_sent or bool(outputs)
        else:
            outputs = list(run.on_function_call(output.name, output.arguments, output.call_id))
        if run.over_budget:
            outputs += self._finish(
                ResponseStatus.INCOMPLETE, now_ms, reason=StatusReason.MAX_OUTPUT_TOKENS
            )
            outputs.append(BrainStopRequested(response_id))
        return outputs

    def brain_finished(
        self, response_id: str, now_ms: int, error: str | None = None
    ) -> list[Output]:
        """The brain is done with ``response_id``: ``response.done`` (completed or failed)."""
        if self.active is None or self.active.id != response_id:
            return []
        if error is None:
            return self._finish(ResponseStatus.COMPLETED, now_ms)
        failure = Error(type="server_error", code="brain_failed", message=error)
        return self._finish(ResponseStatus.FAILED, now_ms, error=failure)

    # -- ending ----------------------------------------------------------------

    def _on_response_cancel(self, event: ResponseCancelEvent, now_ms: int) -> list[Output]:
        run = self.active
        if run is None or (event.response_id and event.response_id != run.id):
            raise invalid_request(
                ErrorCode.CANCEL_NOT_ACTIVE, "Cancellation failed: no active response found."
            )
        return self.cancel_active(StatusReason.CLIENT_CANCELLED, now_ms)

    def cancel_active(self, reason: StatusReason, now_ms: int) -> list[Output]:
        """End the active response as cancelled and stop its brain."""
        run = self.active
        if run is None:
            return []
        return [
            *self._finish(ResponseStatus.CANCELLED, now_ms, reason=reason),
            BrainStopRequested(run.id),
        ]

    def interrupt_for_speech(self, now_ms: int) -> list[Output]:
        """Barge-in: cancel a response that writes to the conversation."""
        if self.active is None or self.active._conversation is None:
            return []
        return self.cancel_active(StatusReason.TURN_DETECTED, now_ms)

    def stop_active_response(self) -> list[Output]:
        """Stop the brain without a ``response.done`` (the socket is closing)."""
        run, self.active = self.active, None
        return [BrainStopRequested(run.id)] if run else []

    def _finish(
        self,
        status: ResponseStatus,
        now_ms: int,
        *,
        reason: StatusReason | None = None,
        error: Error | None = None,
    ) -> list[Output]:
        run = self.active
        assert run is not None
        self.active = None

        def usage() -> RealtimeResponseUsage:
            return build_usage(
                self._context_tokens,
                self._last_context,
                output_text_tokens=text_tokens(run.output_text),
                output_audio_ms=run.output_audio_ms,
            )

        events = run.finish(status, usage, reason=reason, error=error)
        if self._reservation is not None:
            self.limiter.settle(self._reservation, usage().total_tokens or 0, now_ms)
            self._reservation = None
        self._last_context = self._tokens_of(
            self.context_window.visible(self.conversation.records())
        )
        self.conversation.enforce_limits()
        self.idle_since_ms = now_ms + run.output_audio_ms
        return list(events)


def _piece(record: ItemRecord) -> ContextPiece:
    """What one item costs the model: its audio if it has some, else its text."""
    item = record.item
    audio = 0
    if record.has_audio and isinstance(item, RealtimeConversationItemUserMessage):
        audio = input_audio_tokens(record.audio_ms)
    elif record.has_audio:
        audio = output_audio_tokens(record.audio_ms)
    text = 0 if audio else text_tokens(item_text(record) + call_text(item))
    return ContextPiece(f"{record.id}@{record.version}", text, audio)


def _piece_tokens(record: ItemRecord) -> int:
    return _piece(record).tokens


def _chat_message(record: ItemRecord) -> dict[str, Any] | None:
    item = record.item
    if isinstance(item, RealtimeConversationItemFunctionCall):
        call = {
            "id": item.call_id or item.id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if isinstance(item, RealtimeConversationItemFunctionCallOutput):
        return {"role": "tool", "tool_call_id": item.call_id, "content": item.output}
    roles = {
        RealtimeConversationItemSystemMessage: "system",
        RealtimeConversationItemUserMessage: "user",
        RealtimeConversationItemAssistantMessage: "assistant",
    }
    role = roles.get(type(item))
    return {"role": role, "content": item_text(record)} if role else None


def utf8_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text
