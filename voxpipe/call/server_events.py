"""The provider's events as the realtime call reads them: which it skips, which it
passes on as they are, and the small readings and writings its handlers share.
"""

from __future__ import annotations

from openai.types.realtime import ConversationItemTruncateEvent, ResponseDoneEvent

from voxpipe.call.commands import Command, Publish, SendEvent
from voxpipe.call.events import ItemTruncated
from voxpipe.call.response_guard import GuardErrorCode
from voxpipe.playback import TruncationPlanned

RATE_LIMIT_CODE = "rate_limit_exceeded"
# Error codes the response guard settles itself (a cancel or create that raced).
GUARD_CODES = {code.value: code for code in GuardErrorCode}
# Server events the call has no use for (pipecat neither): ignored without a word.
UNUSED = frozenset(
    {
        "conversation.created",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.truncated",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        # voxpipe configures no MCP servers: their events have nothing to act on.
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)
# Events pipecat turns into frames as they are (transcripts, metrics, tool bookkeeping).
FORWARD_AS_IS = frozenset(
    {
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.delta",
    }
)


def truncate_commands(truncation: TruncationPlanned | None) -> list[Command]:
    """The truncate to send and the event that says so (none without a truncation)."""
    if truncation is None:
        return []
    event = ConversationItemTruncateEvent(
        type="conversation.item.truncate",
        item_id=truncation.item_id,
        content_index=truncation.content_index,
        audio_end_ms=truncation.audio_end_ms,
    )
    truncated = ItemTruncated(
        truncation.item_id, truncation.audio_end_ms, truncation.played_ms, truncation.received_ms
    )
    return [SendEvent(event), Publish(truncated)]


def failure_code(event: ResponseDoneEvent) -> str | None:
    """The error code a failed response ended with, if any."""
    details = event.response.status_details
    error = details.error if details is not None else None
    return error.code if error is not None else None


__all__ = [
    "FORWARD_AS_IS",
    "GUARD_CODES",
    "RATE_LIMIT_CODE",
    "UNUSED",
    "failure_code",
    "truncate_commands",
]
