"""GuardrailTap: output guardrails after the brain that stop unsafe speech before it is heard.

Audio passes straight through. The assistant's text (the chained LLM's
``LLMTextFrame``s before TTS, or the realtime service's transcript deltas,
which run ahead of playback) is checked two ways:

- pattern policies (deny lists, PII) through the word gate,
  synchronously on every finished word, before the frame moves on;
- every policy (remote ones such as moderation included) through the
  debounce core: in the background every ``every_chars`` new characters and
  once at the end of the response, bounded by a timeout with the fail mode.

On a trip the tap withholds the frame, broadcasts an interruption (the
realtime service cancels and truncates, the TTS drops its text, the output
transport drops queued audio), drops the rest of the response's text and
audio until the next response starts, cuts the unsafe text out of the
conversation context, speaks the safe line, and reports a
:class:`~voxpipe.frames.GuardrailTrippedFrame` (timeline) and a metric.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    AudioRawFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesTransformFrame,
    LLMTextFrame,
    TextFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxpipe.frames import GuardrailStage, GuardrailTrippedFrame
from voxpipe.guardrails import (
    TIMED_OUT,
    CheckDue,
    FailMode,
    GuardrailDebouncer,
    GuardrailPolicy,
    IncrementalScanner,
    Judgement,
)
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.guardrails.gate import SafePrefix, WordGate, last_non_word

Timer = Callable[[float], Awaitable[None]]
"""Sleeps for the given seconds; injected in tests (default ``asyncio.sleep``)."""


async def bounded_check(
    policy: GuardrailPolicy, text: str, timeout_s: float, timer: Timer = asyncio.sleep
) -> object:
    """What ``policy.check(text)`` gave within ``timeout_s``: a verdict, an exception,
    :data:`~voxpipe.guardrails.TIMED_OUT` or whatever else it returned (for ``judge``)."""
    try:
        pending = policy.check(text)
    except Exception as exc:
        return exc
    if not inspect.isawaitable(pending):
        return pending  # a synchronous answer: judged as it is
    check = asyncio.ensure_future(pending)
    deadline = asyncio.ensure_future(timer(timeout_s))
    try:
        await asyncio.wait({check, deadline}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        deadline.cancel()
    if not check.done():
        check.cancel()
        return TIMED_OUT
    if check.cancelled():
        return asyncio.CancelledError()
    error = check.exception()
    return error if error is not None else check.result()


SafeLineSpeaker = Callable[[str], Awaitable[None]]
"""Says a line in the brain's own voice (the realtime graph's is ``RealtimeSafeLine``)."""


def tripped_frame(
    stage: GuardrailStage, judgement: Judgement, text: str, response_id: str | None = None
) -> GuardrailTrippedFrame:
    """The timeline frame for a tripped ``judgement`` on ``text`` (no span: all of it)."""
    verdict = judgement.verdict
    start = verdict.start if verdict.start is not None else 0
    end = verdict.end if verdict.end is not None else len(text)
    return GuardrailTrippedFrame(
        stage=stage,
        policy=judgement.policy,
        rule=verdict.rule or judgement.policy,
        span=text[start:end],
        start=verdict.start,
        end=verdict.end,
        failure=judgement.failure,
        response_id=response_id,
    )


class ScanCadence(enum.Enum):
    """When pattern policies run."""

    WORD = "word"  # on every finished word, before the text moves on (the default)
    DEBOUNCED = "debounced"  # only with the debounced checks, like remote policies


class GuardrailTap(FrameProcessor):
    """Checks the assistant's words as they stream and stops the response on a trip.

    Args:
        policies: the output policies; those that are also
            :class:`~voxpipe.guardrails.IncrementalScanner` run synchronously.
        every_chars: run the debounced check every N new characters.
        timeout_s: a policy check slower than this counts as failed.
        fail: what a failed check (raised, timed out, garbage) counts as.
        safe_line: said instead of the stopped response (None: silence). By
            default a ``TTSSpeakFrame`` goes downstream (the chained TTS says
            it); a speech-to-speech brain needs a speaker, see
            :meth:`set_safe_line_speaker`.
        speaker: says the safe line instead of a ``TTSSpeakFrame``.
        scan_cadence: pattern policies on every word (default) or debounced.
        metrics: counts trips per policy when given.
        timer: the sleep that bounds a check (tests inject their own).

    Event handler: ``on_guardrail_tripped(tap, frame)`` with the
    :class:`~voxpipe.frames.GuardrailTrippedFrame`, after the tap has acted.
    """

    def __init__(
        self,
        policies: Sequence[GuardrailPolicy],
        *,
        every_chars: int = 100,
        timeout_s: float = 1.0,
        fail: FailMode = FailMode.CLOSED,
        safe_line: str | None = None,
        speaker: SafeLineSpeaker | None = None,
        scan_cadence: ScanCadence = ScanCadence.WORD,
        metrics: VoxpipeMetrics | None = None,
        timer: Timer = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.core = GuardrailDebouncer(every_chars, fail)
        scanners = [p for p in policies if isinstance(p, IncrementalScanner)]
        self._remote = [p for p in policies if not isinstance(p, IncrementalScanner)]
        self._word_scanners = scanners if scan_cadence is ScanCadence.WORD else []
        self._debounced_scanners = [] if scan_cadence is ScanCadence.WORD else scanners
        self._final_scanners = scanners
        self.gate = WordGate(self.core, self._word_scanners)
        self._timeout_s = timeout_s
        self._safe_line = safe_line
        self._speaker = speaker
        self._call_metrics = metrics
        self._timer = timer
        self._responses = 0
        self._rid: str | None = None  # the response text is coming for
        self._latest: str | None = None  # the newest response seen
        self._muted = False  # a trip stopped the latest response: drop its text and audio
        self._stopped: set[str] = set()
        self._parts: list[str] = []  # the current response's text, joined only on a trip
        # The unfinished last word, held until a later delta or the response's end
        # finishes it and the gate has scanned it (see _release).
        self._held = ""
        self._held_from: LLMTextFrame | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.trips: list[GuardrailTrippedFrame] = []
        self._register_event_handler("on_guardrail_tripped")

    @property
    def policies(self) -> list[GuardrailPolicy]:
        """Every output policy the tap runs."""
        return [*self._final_scanners, *self._remote]

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass audio through, check text, stop a response that trips."""
        await super().process_frame(frame, direction)
        if direction is not FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, AudioRawFrame):
            if not self._muted:
                await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame):
            await self._on_text(frame)
        elif isinstance(frame, TextFrame):
            # E.g. the realtime service's TTSTextFrame twin of each transcript delta.
            if not self._muted:
                await self.push_frame(frame, direction)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._begin()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            # A barge-in (or another processor) ended the response: a late
            # verdict on it is reported, but neither interrupts nor speaks.
            self._abandon()
            self._latest = None
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMFullResponseEndFrame):
            await self._on_end()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            # The call ends mid-response: the TTS would speak whatever text it
            # holds, so the unfinished word is scanned (as at a response's end) first.
            if self._rid is not None:
                await self._on_end()
            # A graceful end lets running checks (each bounded) report first.
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        """Cancel checks still running."""
        for task in list(self._tasks):
            await self.cancel_task(task)
        await super().cleanup()

    def _abandon(self) -> None:
        self._held, self._held_from = "", None
        if self._rid is not None:  # a response that never got its end frame
            self.core.discard(self._rid)
            self.gate.end(self._rid)
            self._rid = None

    def _begin(self) -> str:
        self._abandon()
        self._responses += 1
        self._rid = self._latest = f"response-{self._responses}"
        self._muted = False
        self._parts = []
        return self._rid

    async def _on_text(self, frame: LLMTextFrame) -> None:
        if self._muted:
            return
        rid = self._rid or self._begin()
        if not isinstance(frame.text, str):  # not text: nothing to check, nothing to say
            self.core.on_delta(rid, frame.text)  # counted as ignored, and dropped
            return
        self._parts.append(frame.text)
        delta = frame.text
        trip = self.gate.feed(rid, delta)
        if trip is not None:
            self._held, self._held_from = "", None
            await self._trip(rid, trip, "".join(self._parts))
            return  # the frame that finished the unsafe words never moves on
        await self._release(frame)
        check = self.core.on_delta(rid, delta)
        if check is not None:
            await self._check(check, self._debounced_scanners)

    async def _release(self, frame: LLMTextFrame) -> None:
        """Pass on the text up to the last finished word; hold the unfinished rest.

        The gate scans only finished words, and a TTS speaks whatever text it
        holds when a response or the call ends, so an unfinished word (``"pine"``
        of ``"pineapple"``) waits here until it is finished and scanned.
        """
        if not self._word_scanners:
            await self.push_frame(frame)
            return
        text = self._held + frame.text
        cut = last_non_word(text) + 1  # 0: no finished word yet
        self._held, self._held_from = text[cut:], frame
        if cut:
            frame.text = text[:cut]
            await self.push_frame(frame)

    async def _flush_held(self) -> None:
        held, source = self._held, self._held_from
        self._held, self._held_from = "", None
        if not held or source is None:
            return
        frame = LLMTextFrame(held)
        frame.skip_tts = source.skip_tts
        frame.includes_inter_frame_spaces = source.includes_inter_frame_spaces
        frame.append_to_context = source.append_to_context
        await self.push_frame(frame)

    async def _on_end(self) -> None:
        rid, self._rid = self._rid, None
        if rid is None or self._muted:
            self._held, self._held_from = "", None
            return
        self.gate.end(rid)
        check = self.core.on_response_done(rid)
        if check is not None:
            await self._check(check, self._final_scanners)
        if self._muted or rid in self._stopped:
            self._held, self._held_from = "", None
        else:
            await self._flush_held()  # scanned whole by the final check: safe to speak

    async def _check(self, check: CheckDue, scanners: Sequence[IncrementalScanner]) -> None:
        for scanner in scanners:
            judgement = self.core.scan(check, scanner)
            self._log_failure(judgement)
            if judgement.verdict.tripped:
                await self._trip(check.response_id, judgement, check.text)
                return
        for policy in self._remote:
            if self.core.start(check, policy.name):
                task = self.create_task(self._run(policy, check), f"guardrail-{policy.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, policy: GuardrailPolicy, check: CheckDue | None) -> None:
        while check is not None:
            result = await bounded_check(policy, check.text, self._timeout_s, self._timer)
            judgement = self.core.judge(check, policy.name, result)
            self._log_failure(judgement)
            if judgement.verdict.tripped:
                await self._trip(check.response_id, judgement, check.text)
                return
            check = judgement.follow_up

    def _log_failure(self, judgement: Judgement) -> None:
        if judgement.failure is not None:
            logger.warning(
                f"{self}: guardrail policy {judgement.policy} {judgement.failure.value};"
                f" failing {self.core.fail.value}"
            )

    async def _trip(self, rid: str, judgement: Judgement, text: str) -> None:
        if rid in self._stopped:
            return
        self._stopped.add(rid)
        self.core.discard(rid)
        self.gate.end(rid)
        event = tripped_frame(GuardrailStage.OUTPUT, judgement, text, rid)
        start = event.start if event.start is not None else 0
        self.trips.append(event)
        logger.info(f"{self}: guardrail {event.rule} tripped on {event.span!r}")
        if self._call_metrics is not None:
            self._call_metrics.record_guardrail_trip(judgement.policy)
        current = rid == self._latest
        if current:
            self._muted = True
            await self.broadcast_interruption()
        await self.push_frame(event)
        await self.push_frame(LLMMessagesTransformFrame(SafePrefix(text, start), run_llm=False))
        if current and self._safe_line:
            await self._speak_safe_line(self._safe_line)
        await self._call_event_handler("on_guardrail_tripped", event)

    def set_safe_line_speaker(self, speaker: SafeLineSpeaker | None) -> None:
        """Say the safe line through ``speaker`` (e.g. the realtime brain, built after the tap)."""
        self._speaker = speaker

    async def _speak_safe_line(self, line: str) -> None:
        if self._speaker is not None:
            await self._speaker(line)
        else:
            await self.push_frame(TTSSpeakFrame(line))
