"""GuardrailInputFilter (input guardrails) and ``build_guardrails`` (agent-file wiring).

The input filter: input guardrails on the caller's transcript that can refuse a turn.

Placed after STT on the chained path. Each final ``TranscriptionFrame`` is
checked with the same policy protocol as the output tap (pattern policies
synchronously, remote ones bounded by the timeout with the fail mode). A
refused transcript is dropped, so the LLM never answers it and it never enters
the context; the bot says the refusal line instead. The check runs once per
turn on a short text, where the LLM would be waiting for the transcript anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, TranscriptionFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.frames import GuardrailStage, GuardrailTrippedFrame
from voxpipe.guardrails import (
    CheckDue,
    DenyPolicy,
    FailMode,
    GuardrailConfig,
    GuardrailDebouncer,
    GuardrailPolicy,
    IncrementalScanner,
    Judgement,
)
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.guardrails.tap import (
    GuardrailTap,
    SafeLineSpeaker,
    Timer,
    bounded_check,
    tripped_frame,
)

DEFAULT_REFUSAL_LINE = "Sorry, I can't help with that."


class GuardrailInputFilter(FrameProcessor):
    """Refuses a caller's turn whose transcript trips a policy.

    Args:
        policies: input policies (default: :meth:`DenyPolicy.prompt_injection`).
        refusal_line: what the bot says instead of answering (None: silence).
        timeout_s: a policy check slower than this counts as failed.
        fail: what a failed check counts as.
        metrics: counts refusals per policy when given.
        timer: the sleep that bounds a check (tests inject their own).

    Event handler: ``on_turn_refused(filter, frame)`` with the
    :class:`~voxpipe.frames.GuardrailTrippedFrame`, after the refusal was queued.
    """

    def __init__(
        self,
        policies: Sequence[GuardrailPolicy] | None = None,
        *,
        refusal_line: str | None = DEFAULT_REFUSAL_LINE,
        timeout_s: float = 1.0,
        fail: FailMode = FailMode.CLOSED,
        metrics: VoxpipeMetrics | None = None,
        timer: Timer = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policies = list(policies) if policies is not None else [DenyPolicy.prompt_injection()]
        self.core = GuardrailDebouncer(fail=fail)
        self._refusal = refusal_line
        self._timeout_s = timeout_s
        self._call_metrics = metrics
        self._timer = timer
        self._turns = 0
        self.refusals: list[GuardrailTrippedFrame] = []
        self._register_event_handler("on_turn_refused")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Hold each final transcript until it is checked; drop it if refused."""
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM and isinstance(frame, TranscriptionFrame):
            judgement = await self._judge(frame.text)
            if judgement is not None:
                await self._refuse(frame.text, judgement)
                return
        await self.push_frame(frame, direction)

    async def _judge(self, text: str) -> Judgement | None:
        self._turns += 1
        check = CheckDue(f"turn-{self._turns}", text, final=True)
        for policy in self.policies:
            if isinstance(policy, IncrementalScanner):
                judgement = self.core.scan(check, policy)
            else:
                result = await bounded_check(policy, text, self._timeout_s, self._timer)
                judgement = self.core.judge(check, policy.name, result)
            if judgement.failure is not None:
                logger.warning(
                    f"{self}: input policy {policy.name} {judgement.failure.value};"
                    f" failing {self.core.fail.value}"
                )
            if judgement.verdict.tripped:
                return judgement
        return None

    async def _refuse(self, text: str, judgement: Judgement) -> None:
        event = tripped_frame(GuardrailStage.INPUT, judgement, text)
        self.refusals.append(event)
        logger.info(f"{self}: refused a turn ({event.rule}): {event.span!r}")
        if self._call_metrics is not None:
            self._call_metrics.record_guardrail_trip(judgement.policy)
        await self.push_frame(event)
        if self._refusal:
            await self.push_frame(TTSSpeakFrame(self._refusal))
        await self._call_event_handler("on_turn_refused", event)


def build_guardrails(
    config: GuardrailConfig,
    *,
    speaker: SafeLineSpeaker | None = None,
    metrics: VoxpipeMetrics | None = None,
) -> tuple[GuardrailTap, GuardrailInputFilter]:
    """The output tap and the input filter an agent file asks for.

    The tap runs ``config.policies()`` (deny patterns, PII) with the file's
    cadence, timeout, fail mode and safe line. The input filter refuses
    prompt-injection phrases in the caller's transcript and says the safe
    line (or a default refusal).

    Chained graph: ``build_chained_pipeline(..., tap=tap,
    stt=Pipeline([stt, input_filter]))``. Realtime graph:
    ``build_realtime_pipeline(..., tap=tap)``, then
    ``tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))``; the input
    filter has no slot there (the caller's audio goes straight to the brain).
    """
    tap = GuardrailTap(
        config.policies(),
        every_chars=config.every_chars,
        timeout_s=config.timeout_ms / 1000,
        fail=config.fail,
        safe_line=config.safe_line,
        speaker=speaker,
        metrics=metrics,
    )
    input_filter = GuardrailInputFilter(
        [DenyPolicy.prompt_injection()],
        refusal_line=config.safe_line or DEFAULT_REFUSAL_LINE,
        timeout_s=config.timeout_ms / 1000,
        fail=config.fail,
        metrics=metrics,
    )
    return tap, input_filter
