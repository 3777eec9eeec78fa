"""The brain switch of a live call: a driver over :class:`~voxpipe.call.failover.FailoverPolicy`.

:class:`FailoverBrain` sits in the graph's BRAIN slot with two branches, the
realtime one (user aggregator, :class:`~voxpipe.processors.realtime.RealtimeService`)
and the chained one (STT, a user aggregator with local VAD turn-taking, LLM,
TTS). It feeds the policy what the realtime brain does (its call events, and
the reply audio it lets out, each with the time) and ticks it; when the policy
says switch it carries the switch out, in this order:

1. the selector flips, so the caller's next audio already reaches the chained
   VAD and STT (a barge-in during the switch is heard by the brain taking over);
2. the realtime service lets go (:meth:`RealtimeService.hand_over`): the reply
   under way is cancelled, the output stops, the session closes;
3. the chained brain gets the instructions as they stand (changed during the
   call or not) with the summary, and the context of what the caller heard;
   the answer the switch cut is asked for once, unless the caller spoke since;
4. a :class:`~voxpipe.call.events.BrainSwitched` event goes to the timeline;
5. the caller's audio that no realtime session committed (the turn under way
   when the brain failed, and what was held while no session was up) goes to
   the chained brain ahead of the live audio (:meth:`FailoverBrain._hand_caller_audio`).

On the chained brain it tells the policy when the call is between turns
(:class:`~voxpipe.call.turn_boundary.ChainedTurnBoundary`, fed the chained
brain's frames and the output's reports), runs the probes the policy asks
for (a bare session open with the call's URL and secret, nothing sent:
:meth:`RealtimeService.probe`), and when the policy says switch back:

1. the selector flips back, so the caller's next audio is held by the
   realtime call and replayed to the new session;
2. the realtime service opens a session seeded from the call's record, to
   which the turns the caller heard on the chained brain are added
   (:meth:`RealtimeService.take_back`);
3. once that session is ready, a ``BrainSwitched`` to realtime goes to the
   timeline. A session that fails or is not ready in time leaves the call
   on the chained brain (it never let go of its context), and the policy
   counts the failure as a flap: its cooldown doubles. What the caller said
   meanwhile (held for the session that never came) goes to the chained
   brain, as it does when a returned session fails before it committed the
   caller's turn (a switch away like the first).

It decides nothing itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesUpdateFrame,
    LLMUpdateSettingsFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.settings import LLMSettings

from voxpipe.call.events import (
    BrainGaveUp,
    BrainSwitched,
    CallEvent,
    ProviderErrorSeen,
    RateLimitsUpdated,
)
from voxpipe.call.failover import (
    Brain,
    FailoverCommand,
    FailoverConfig,
    FailoverPolicy,
    PrepareFallback,
    ProbeRealtime,
    SwitchBrain,
    fallback_start,
)
from voxpipe.call.probe import ProbeFinished
from voxpipe.call.recovery import FailureClass
from voxpipe.call.response_guard import InterruptionSource
from voxpipe.call.rollover import Role, SessionSeed, Turn
from voxpipe.call.state import CallState, StateChanged
from voxpipe.call.turn_boundary import BoundaryConfig, ChainedStage, ChainedTurnBoundary
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.processors.brain_switch import BrainSelector, BrainSwitch
from voxpipe.processors.failover_audio import (
    RecentCallerAudio,
    caller_frames,
    frame_ms,
    unfinished_turn,
)
from voxpipe.processors.realtime import RealtimeService

TICK_S = 0.1
PROBE_TIMEOUT_MS = 5_000  # a probe that sees no session.created in this long failed
RETURN_TIMEOUT_MS = 10_000  # the switch back's session must be ready within this
# How long a switch waits for caller audio already inside the realtime branch to reach
# the realtime call's relay (a few frames; seconds only on a stalled machine).
CATCH_UP_S = 1.0
# The re-asked answer's first piece of speech: this many words, synthesised while the LLM
# writes the rest (a whole first sentence waited for its last word, then took Piper
# 0.9-3.4 s at load 6-25).
REASK_FIRST_WORDS = 3
WARM_UP_WORDS = "One moment."  # what the chained voice says once, to nobody, as the call starts
# A response is under way in these states: its audio is owed.
_OWES_AUDIO = frozenset({CallState.THINKING, CallState.SPEAKING})


class FailoverBrain(BrainSwitch):
    """The BRAIN slot of a call with a fallback (see the module docstring).

    Args:
        realtime: the realtime service, last of ``realtime_branch`` but for voice.
        realtime_branch, chained_branch: each brain's processors, in graph order.
        selector: shared with the switch holding the assistant aggregators.
        config: what triggers a switch.
        now_ms: the call's clock (the output transport's).
    """

    def __init__(
        self,
        *,
        realtime: RealtimeService,
        realtime_branch: Sequence[FrameProcessor],
        chained_branch: Sequence[FrameProcessor],
        selector: BrainSelector,
        config: FailoverConfig,
        now_ms: Callable[[], float],
        chained_context: LLMContext | None = None,
        boundary: BoundaryConfig | None = None,
    ) -> None:
        branches = {Brain.REALTIME: realtime_branch, Brain.CHAINED: chained_branch}
        self._chained = list(chained_branch)
        super().__init__(branches, selector, name="FailoverBrain")
        self.realtime = realtime
        self.now_ms = now_ms
        # Without the chained context there is nothing to seed a switch back from.
        back = config.switch_back and chained_context is not None
        self.policy = FailoverPolicy(dataclasses.replace(config, switch_back=back))
        self.chained_context = chained_context
        self.boundary_config = boundary or BoundaryConfig()
        self.boundary = ChainedTurnBoundary(self.boundary_config)
        self.switched: list[BrainSwitched] = []
        self.probes: list[ProbeFinished] = []
        self.failed_returns: list[str] = []  # switches back whose session never became ready
        self._ticker: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._warmer: asyncio.Task[None] | None = None
        self._warmed = False
        self._switching = False
        self._returning: SwitchBrain | None = None  # a switch back waiting for its session
        self._seeded_messages = 0  # the chained context's messages that came from the seed
        # Caller audio: frames routed to the realtime branch, their format, and (while the
        # relay's audio is handed to the chained brain) the live frames held behind it.
        self._frames_to_realtime = 0
        self._caller_format = (16_000, 640)  # sample rate, bytes per frame
        self._holding: list[tuple[Frame, FrameDirection]] | None = None
        self.handed_audio_ms: list[int] = []  # caller audio handed over at each switch
        # The chained brain's latest caller audio, and what of it each switch back handed on.
        self._recent = RecentCallerAudio(self.boundary_config.settle_ms)
        self.opening_ms: list[int] = []
        realtime.add_event_handler("on_call_event", self._on_call_event)
        self._register_event_handler("on_brain_switched")

    def _now(self) -> int:
        return int(self.now_ms())

    # -- life cycle ------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Route the frame; the policy's timer runs from start to end."""
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._ticker is None:
            self._ticker = self.create_task(self._tick_loop(), name="failover-tick")
            if self.policy.config.head_start and not self._warmed:  # no preload before
                self._warmer = self.create_task(self._warm_chained(), name="failover-warm")
        elif isinstance(frame, EndFrame | CancelFrame):
            for task in (self._ticker, self._prober, self._warmer):
                if task is not None and not task.done():
                    await self.cancel_task(task)
            self._ticker = self._prober = self._warmer = None
        elif direction is FrameDirection.UPSTREAM and self.selector.active is Brain.CHAINED:
            stage = _OUTPUT_STAGES.get(type(frame))
            if stage is not None:  # the output's report on the chained brain's reply
                self.boundary.saw(stage, self._now())

    async def route(self, frame: Frame, direction: FrameDirection) -> None:
        """Caller audio: counted on its way to realtime, held while older audio is handed over."""
        if isinstance(frame, InputAudioRawFrame):
            if self._holding is not None:
                self._holding.append((frame, direction))
                return
            if self.selector.active is Brain.REALTIME:
                self._frames_to_realtime += 1
                self._caller_format = (frame.sample_rate, len(frame.audio))
            elif self.policy.config.switch_back:
                self._recent.add(frame)
        await super().route(frame, direction)

    async def preload(self) -> None:
        """Warm the chained brain before the call starts (``CallSession`` awaits this).

        A fault in the call's first seconds would otherwise find it still
        warming (a cold warm-up holds the model for seconds under load).
        """
        if self.policy.config.head_start:
            self._warmed = True
            await self._warm_chained()

    async def _warm_chained(self) -> None:
        """Warm the chained brain's LLM and voice, before any switch needs them.

        A fallback brain answers first when another failed: cold, its first
        reply waited 29 s (llama.cpp reading its weights: first token 14.6 s;
        then the voice's first synthesis) in ``benchmarks/failover.py``. The
        LLM's cache is left holding the re-ask's prompt up to the words heard.
        """
        # The prompt a re-ask starts with (the words heard come after it): left in the cache.
        reask = fallback_start(SessionSeed("", (), {}), self.realtime.instructions, reask=True)
        for processor in self._chained:
            try:
                if hasattr(processor, "warm_up"):  # the local LLM
                    await processor.warm_up(reask.reask_instructions)
                elif hasattr(processor, "presynthesize"):  # the local voice: one word, dropped
                    await processor.presynthesize(WARM_UP_WORDS)
            except Exception as exc:  # a cold brain is slower, not broken
                logger.warning(f"{self}: warming {processor} failed: {exc}")

    async def _prepare(self, command: PrepareFallback) -> None:
        """A hang is suspected: get the answer the switch would re-ask under way (or drop it)."""
        llm: Any = next((p for p in self._chained if hasattr(p, "speculate_reply")), None)
        if llm is None or self.selector.active is not Brain.REALTIME:
            return
        if not command.ready:
            await llm.drop_speculation()
            self._shorten_first_piece(None)
            return
        preview = self.realtime.call.handover_preview(self._now(), at_ms=command.due_ms)
        if preview is None or not preview[1]:
            return  # no cheap preview, or nothing owed: the switch speaks when the caller does
        start = fallback_start(preview[0], self.realtime.instructions, reask=True)
        tools = self.chained_context.tools if self.chained_context is not None else None
        messages = [dict(m) for m in start.messages]
        self._shorten_first_piece(REASK_FIRST_WORDS)  # before its first piece is cut ahead
        llm.speculate_reply(messages, start.reask_instructions, tools)

    def _shorten_first_piece(self, words: int | None) -> None:
        """The chained voice's next first piece: ``words`` words (the re-ask), or as usual."""
        for processor in self._chained:
            if hasattr(processor, "first_piece_words"):  # the local voice
                processor.first_piece_words(words)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._carry_out(self._tick(self._now()))
            except Exception as exc:  # the timer must outlive a failed switch
                logger.exception(f"{self}: failover tick failed: {exc}")

    def _tick(self, now: int) -> list[FailoverCommand]:
        if self.policy.brain is Brain.CHAINED and self._returning is None:
            return self.policy.listening(self.boundary.at_boundary(now), now)
        return self.policy.tick(now)

    # -- what the realtime brain does ------------------------------------------------

    async def _on_call_event(self, _service: RealtimeService, event: CallEvent) -> None:
        now, policy = self._now(), self.policy
        match event:
            case StateChanged(previous=CallState.BRAIN_SWITCHING, current=CallState.LISTENING):
                commands = policy.listening(True, now)
                await self._returned()
            case StateChanged() if policy.brain is Brain.CHAINED:
                return  # the chained brain's turns say when the call listens
            case StateChanged(current=current) if current in _OWES_AUDIO:
                commands = (
                    policy.response_started(now)
                    if current is CallState.THINKING
                    else policy.audio_played(now)
                )
            case StateChanged(current=current):
                commands = policy.response_ended(now)
                commands += policy.listening(current is CallState.LISTENING, now)
            case ProviderErrorSeen(code=code):
                commands = policy.provider_error(code, now)
            case RateLimitsUpdated(limits=limits):
                commands = policy.rate_limits([(x.remaining, x.reset_seconds) for x in limits], now)
            case BrainGaveUp(error=error, failure_class=failure_class):
                commands = policy.gave_up(failure_class is FailureClass.FATAL, str(error), now)
            case _:
                return
        await self._carry_out(commands)

    async def on_branch_output(self, brain: Brain, frame: Frame, direction: FrameDirection) -> None:
        """Realtime reply audio keeps its deadline; a barge-in mid-switch drops the re-ask."""
        if brain is Brain.REALTIME and isinstance(frame, TTSAudioRawFrame):
            await self._carry_out(self.policy.audio_played(self._now()))
            return
        if brain is Brain.CHAINED:
            stage = next((s for t, s in _CHAINED_STAGES if isinstance(frame, t)), None)
            if stage is not None:
                self.boundary.saw(stage, self._now())
        if (
            brain is Brain.CHAINED
            and isinstance(frame, InterruptionFrame | UserStartedSpeakingFrame)
            and self.realtime.machine.state is CallState.BRAIN_SWITCHING
        ):
            # The caller spoke to the brain taking over: the cut answer is no longer owed.
            await self.realtime.interrupt(InterruptionSource.LOCAL_VAD, as_frame=True)

    # -- the switch ------------------------------------------------------------------

    async def _carry_out(self, commands: Sequence[FailoverCommand]) -> None:
        for command in commands:
            if isinstance(command, ProbeRealtime):
                self._start_probe()
            elif isinstance(command, PrepareFallback):
                await self._prepare(command)
            elif command.to is Brain.CHAINED:
                await self._to_chained(command)
            else:
                await self._to_realtime(command)

    async def _to_chained(self, switch: SwitchBrain) -> None:
        if self._returning is not None:
            await self._return_failed(switch)
            return
        if self._switching or self.selector.active is Brain.CHAINED:
            return
        self._switching = True
        try:
            await self._hand_to_chained(switch)
        finally:
            self._switching = False
            if self._holding is not None:  # even a failed hand-over lets the caller be heard
                await self._hand_caller_audio()

    async def _hand_to_chained(self, switch: SwitchBrain) -> None:
        logger.warning(f"{self}: switching to the chained brain: {switch.reason.value}")
        self.selector.active = Brain.CHAINED
        self._holding = []  # live caller audio waits behind what the realtime call holds
        await self.realtime.hand_over()
        call = self.realtime.call
        reask = call.reask_owed  # read after the hand-over: a barge-in during it drops it
        start = fallback_start(call.handover_seed, self.realtime.instructions, reask=reask)
        entry = self.branch(Brain.CHAINED)
        # No service named: whatever LLM the chained branch holds takes it (a slot's fallbacks too).
        first = start.reask_instructions if reask else start.instructions
        self._shorten_first_piece(REASK_FIRST_WORDS if reask else None)
        await entry.queue_frame(LLMUpdateSettingsFrame(delta=LLMSettings(system_instruction=first)))
        messages: Any = [dict(m) for m in start.messages]
        seed = LLMMessagesUpdateFrame(messages=messages, run_llm=reask)
        # The interruption that stopped the realtime output must not drop the seed on its way.
        seed.interruptible = False
        await entry.queue_frame(seed)
        if reask:  # in order: the LLM takes it once the re-asked reply is generated
            plain = LLMSettings(system_instruction=start.instructions)
            await entry.queue_frame(LLMUpdateSettingsFrame(delta=plain))
        await self.realtime.handed_over()
        self._seeded_messages = len(start.messages)
        self.boundary = ChainedTurnBoundary(self.boundary_config, now_ms=self._now())
        event = BrainSwitched(
            Brain.REALTIME,
            Brain.CHAINED,
            switch.reason,
            switch.detail,
            self._stint_ms(switch),
            len(start.messages),
            reask,
        )
        await self._announce(event)

    # -- and back --------------------------------------------------------------------

    def _start_probe(self) -> None:
        if self._prober is not None and not self._prober.done():
            return
        self._prober = self.create_task(self._probe(), name="failover-probe")

    async def _probe(self) -> None:
        result = await self.realtime.probe(PROBE_TIMEOUT_MS)
        self.probes.append(result)
        logger.info(f"{self}: realtime probe {result.outcome.value} ({result.detail})")
        now = self._now()
        # Where the call is now, then the verdict: a healthy last probe may switch at once.
        await self._carry_out(self._tick(now))
        await self._carry_out(self.policy.probe_finished(result.healthy, now))

    async def _to_realtime(self, switch: SwitchBrain) -> None:
        if self._returning is not None or self.selector.active is Brain.REALTIME:
            return
        self._returning = switch
        logger.warning(f"{self}: switching back to the realtime brain: {switch.detail}")
        self._holding = []  # live caller audio waits behind their opening words
        self.selector.active = Brain.REALTIME  # the realtime call holds the caller's audio
        try:
            await self.realtime.take_back(self._heard_on_chained(), timeout_ms=RETURN_TIMEOUT_MS)
        finally:
            if self.selector.active is Brain.REALTIME:
                await self._hand_opening_words()
            else:  # the return failed at once: the chained brain kept the call and its audio
                self._recent.clear()

    async def _hand_opening_words(self) -> None:
        """The realtime brain hears the caller's words the chained VAD had not reported.

        The switch back came at a turn boundary as the chained brain's frames
        told it; those lag the caller's audio on a loaded machine, so the caller
        may have begun to speak in the boundary's last quiet. That audio went to
        the chained brain only: if any of it is speech, it goes to the realtime
        brain now, ahead of the live frames held since the flip.
        """
        try:
            opening = await self._recent.opening()
            self.opening_ms.append(sum(frame_ms(f) for f in opening))
            if opening:
                logger.info(f"{self}: {self.opening_ms[-1]} ms of the caller's opening words")
            for audio in opening:
                await self._to_realtime_branch(audio, FrameDirection.DOWNSTREAM)
        finally:
            held, self._holding = self._holding or [], None
            for frame, direction in held:  # in order, each ahead of any newer frame
                await self._to_realtime_branch(frame, direction)

    async def _to_realtime_branch(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InputAudioRawFrame):
            self._frames_to_realtime += 1
            self._caller_format = (frame.sample_rate, len(frame.audio))
        await self.branch(Brain.REALTIME).queue_frame(frame, direction)

    def _heard_on_chained(self) -> list[Turn]:
        """The turns the chained brain's context gained since its seed (what was heard)."""
        if self.chained_context is None:
            return []
        return turns_of(self.chained_context.get_messages()[self._seeded_messages :])

    async def _returned(self) -> None:
        switch, self._returning = self._returning, None
        if switch is None:
            return
        seeded = self.realtime.call.seeded_on_return
        event = BrainSwitched(
            Brain.CHAINED,
            Brain.REALTIME,
            switch.reason,
            switch.detail,
            self._stint_ms(switch),
            seeded,
        )
        await self._announce(event)

    async def _return_failed(self, switch: SwitchBrain) -> None:
        """The session the probes promised did not come: the chained brain keeps the call."""
        self._returning = None
        self.selector.active = Brain.CHAINED
        self._holding = []
        self.failed_returns.append(switch.detail)
        if self.chained_context is not None:  # the realtime call's record holds those turns now
            self._seeded_messages = len(self.chained_context.get_messages())
        self.boundary = ChainedTurnBoundary(self.boundary_config, now_ms=self._now())
        logger.warning(f"{self}: switching back failed ({switch.detail}); staying on chained")
        await self._hand_caller_audio()  # what the caller said while the session did not come

    async def _hand_caller_audio(self) -> None:
        """The chained brain hears the caller's audio no realtime session committed, then live.

        Live caller audio is held (:meth:`route`) from the selector's flip
        until here. The frames already on their way through the realtime
        branch reach its relay first (within ``CATCH_UP_S``); then the relay's
        uncommitted and held audio goes into the chained branch, in the
        caller's format and frame size (the VAD reads one window per frame),
        from 3 s before its first speech (:func:`unfinished_turn`: not
        the quiet since the last committed turn), and the held live frames
        after it: the caller's turn reaches the chained VAD and STT whole and
        in order. The VAD and turn-taking count the caller's audio, not the
        wall clock, so a burst is heard as speech.
        """
        try:
            async with asyncio.timeout(CATCH_UP_S):
                while self.realtime.caller_frames_taken < self._frames_to_realtime:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        except TimeoutError:
            behind = self._frames_to_realtime - self.realtime.caller_frames_taken
            logger.warning(f"{self}: {behind} caller frames still in the realtime branch")
        entry = self.branch(Brain.CHAINED)
        try:
            chunks = self.realtime.call.relay.take_uncommitted()
            fmt = self.realtime.call.config.input_format
            frames = await unfinished_turn(await caller_frames(chunks, fmt, *self._caller_format))
            self.handed_audio_ms.append(sum(frame_ms(f) for f in frames))
            for audio in frames:
                await entry.queue_frame(audio)
        finally:
            held, self._holding = self._holding or [], None
            for frame, direction in held:  # no await suspends: no live frame gets ahead
                await entry.queue_frame(frame, direction)

    # -- helpers ---------------------------------------------------------------------

    def _stint_ms(self, switch: SwitchBrain) -> int:
        """How long the call was on the brain ``switch`` leaves."""
        earlier = [
            s.at_ms for s in self.policy.switches if s.at_ms <= switch.at_ms and s is not switch
        ]
        if not earlier:
            return self.policy.time_on(Brain.REALTIME, switch.at_ms)
        return switch.at_ms - earlier[-1]

    async def _announce(self, event: BrainSwitched) -> None:
        self.switched.append(event)
        await self.push_frame(RealtimeCallEventFrame(event=event, at_ms=self.now_ms()))
        await self._call_event_handler("on_brain_switched", event)


def turns_of(messages: Sequence[Any]) -> list[Turn]:
    """Chat messages as the call's turns: the caller's and the bot's words, nothing else."""
    turns = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant") or message.get("tool_calls"):
            continue
        if isinstance(content, list):  # content parts: their text
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if isinstance(content, str) and content.strip():
            turns.append(Turn(Role(role), content.strip()))
    return turns


# What leaves the chained branch, as the turn boundary sees it.
_CHAINED_STAGES: tuple[tuple[type[Frame], ChainedStage], ...] = (
    (UserStartedSpeakingFrame, ChainedStage.USER_STARTED),
    (UserStoppedSpeakingFrame, ChainedStage.USER_STOPPED),
    (LLMFullResponseStartFrame, ChainedStage.REPLY_STARTED),
    (LLMFullResponseEndFrame, ChainedStage.REPLY_ENDED),
    (TTSStartedFrame, ChainedStage.VOICE_STARTED),
    (TTSStoppedFrame, ChainedStage.VOICE_STOPPED),
    (TTSAudioRawFrame, ChainedStage.AUDIO_OUT),
    (InterruptionFrame, ChainedStage.INTERRUPTED),
)
# The output's reports, coming upstream.
_OUTPUT_STAGES: dict[type[Frame], ChainedStage] = {
    BotStartedSpeakingFrame: ChainedStage.BOT_STARTED,
    BotStoppedSpeakingFrame: ChainedStage.BOT_STOPPED,
}
