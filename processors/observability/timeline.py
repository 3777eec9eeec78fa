"""Feeds the call timeline from the frames a pipeline really pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    Frame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.call.events import timeline_entry
from voxpipe.delegation import timeline_entry as delegation_entry
from voxpipe.frames import GuardrailTrippedFrame, RealtimeCallEventFrame, SlotFallbackFrame
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.slot_fallback import HandedOff, timeline_data
from voxpipe.timeline import EventKind, Timeline

_BROADCAST = (
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    # The LLM service broadcasts function-call progress both ways too.
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
)


class TimelineObserver(InlineObserver):
    """Records call events once each (at their first push), stamped by ``now_ms``.

    Bot speech is taken from the output transport's own frames, so
    ``first_bot_audio`` is when audio really left for the caller.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (
        *_BROADCAST,
        TranscriptionFrame,
        LLMTextFrame,
        LLMFullResponseEndFrame,
        GuardrailTrippedFrame,
        RealtimeCallEventFrame,
        SlotFallbackFrame,
        ErrorFrame,
    )

    def __init__(self, timeline: Timeline, now_ms: Callable[[], float]) -> None:
        super().__init__()  # first pushes are all it records
        self.timeline = timeline
        self._now = now_ms
        self._text: list[str] = []

    def observe(self, data: FramePushed, first: bool) -> None:
        frame, add, now = data.frame, self.timeline.add, self._now()
        # Speaking and interruption frames are broadcast both ways: count one direction.
        if isinstance(frame, _BROADCAST) and data.direction is not FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, UserStartedSpeakingFrame):
            add(now, EventKind.USER_STARTED_SPEAKING)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            add(now, EventKind.USER_STOPPED_SPEAKING)
        elif isinstance(frame, TranscriptionFrame):
            add(now, EventKind.USER_TRANSCRIPT, text=frame.text)
        elif isinstance(frame, BotStartedSpeakingFrame):
            add(now, EventKind.BOT_STARTED_SPEAKING)
            add(now, EventKind.FIRST_BOT_AUDIO)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            add(now, EventKind.BOT_STOPPED_SPEAKING)
        elif isinstance(frame, LLMTextFrame):
            self._text.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame) and "".join(self._text).strip():
            add(now, EventKind.ASSISTANT_TEXT, text="".join(self._text).strip())
            self._text = []
        elif isinstance(frame, InterruptionFrame):
            add(now, EventKind.INTERRUPTION)
        elif isinstance(frame, FunctionCallInProgressFrame):
            add(
                now,
                EventKind.TOOL_CALL_STARTED,
                name=frame.function_name,
                call_id=frame.tool_call_id,
                arguments=frame.arguments,
            )
        elif isinstance(frame, FunctionCallResultFrame):
            add(
                now,
                EventKind.TOOL_CALL_FINISHED,
                name=frame.function_name,
                call_id=frame.tool_call_id,
            )
        elif isinstance(frame, GuardrailTrippedFrame):
            add(
                now,
                EventKind.GUARDRAIL_TRIPPED,
                stage=frame.stage.value,
                policy=frame.policy,
                rule=frame.rule,
                span=frame.span,
                start=frame.start,
                end=frame.end,
                failure=frame.failure.value if frame.failure else None,
                response_id=frame.response_id,
            )
        elif isinstance(frame, RealtimeCallEventFrame):
            # The realtime service's own events: cancels, truncates, states, reconnects...
            # and the supervisor's (asked, filler, answered: processors/delegation.py).
            entry = timeline_entry(frame.event) or delegation_entry(frame.event)
            if entry is not None:
                add(now, entry[0], **entry[1])
        elif isinstance(frame, SlotFallbackFrame):
            # A chained slot handed a request on (slot, from, to, reason) or gave it up.
            kind = (
                EventKind.SLOT_HANDOFF
                if isinstance(frame.event, HandedOff)
                else EventKind.SLOT_FAILED
            )
            add(now, kind, **timeline_data(frame.event))
        elif isinstance(frame, ErrorFrame):
            # Fatal: the processor that raised it can no longer do its job.
            fatal = frame.processor is not None and not frame.processor.is_usable
            add(now, EventKind.ERROR, error=str(frame.error), fatal=bool(frame.fatal) or fatal)
