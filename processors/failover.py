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
4. a :class:`~voxpipe.call.events.BrainSwitched` event goes to the timeline.

It decides nothing itself. Switching back is decided by the policy as well,
but this driver does not carry it out yet: a call stays on the chained brain
once there (``FailoverConfig.switch_back`` is forced off).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMMessagesUpdateFrame,
    LLMUpdateSettingsFrame,
    StartFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
)
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
    SwitchBrain,
    fallback_start,
)
from voxpipe.call.recovery import FailureClass
from voxpipe.call.response_guard import InterruptionSource
from voxpipe.call.state import CallState, StateChanged
from voxpipe.frames import RealtimeCallEventFrame
from voxpipe.processors.brain_switch import BrainSelector, BrainSwitch
from voxpipe.processors.realtime import RealtimeService

TICK_S = 0.1
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
    ) -> None:
        branches = {Brain.REALTIME: realtime_branch, Brain.CHAINED: chained_branch}
        super().__init__(branches, selector, name="FailoverBrain")
        self.realtime = realtime
        self.now_ms = now_ms
        # Switching back is not carried out here yet: the policy must not ask for it.
        self.policy = FailoverPolicy(dataclasses.replace(config, switch_back=False))
        self.switched: list[BrainSwitched] = []
        self._ticker: asyncio.Task[None] | None = None
        self._switching = False
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
        elif isinstance(frame, EndFrame | CancelFrame) and self._ticker is not None:
            await self.cancel_task(self._ticker)
            self._ticker = None

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._carry_out(self.policy.tick(self._now()))
            except Exception as exc:  # the timer must outlive a failed switch
                logger.exception(f"{self}: failover tick failed: {exc}")

    # -- what the realtime brain does ------------------------------------------------

    async def _on_call_event(self, _service: RealtimeService, event: CallEvent) -> None:
        now, policy = self._now(), self.policy
        match event:
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
        elif (
            brain is Brain.CHAINED
            and isinstance(frame, InterruptionFrame | UserStartedSpeakingFrame)
            and self.realtime.machine.state is CallState.BRAIN_SWITCHING
        ):
            # The caller spoke to the brain taking over: the cut answer is no longer owed.
            await self.realtime.interrupt(InterruptionSource.LOCAL_VAD, as_frame=True)

    # -- the switch ------------------------------------------------------------------

    async def _carry_out(self, commands: Sequence[FailoverCommand]) -> None:
        for command in commands:
            if isinstance(command, SwitchBrain) and command.to is Brain.CHAINED:
                await self._to_chained(command)

    async def _to_chained(self, switch: SwitchBrain) -> None:
        if self._switching or self.selector.active is Brain.CHAINED:
            return
        self._switching = True
        logger.warning(f"{self}: switching to the chained brain: {switch.reason.value}")
        self.selector.active = Brain.CHAINED
        await self.realtime.hand_over()
        call = self.realtime.call
        reask = call.reask_owed  # read after the hand-over: a barge-in during it drops it
        start = fallback_start(call.handover_seed, self.realtime.instructions, reask=reask)
        entry = self.branch(Brain.CHAINED)
        # No service named: whatever LLM the chained branch holds takes it (a slot's fallbacks too).
        first = start.reask_instructions if reask else start.instructions
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
        previous = self.policy.switches[-1]
        event = BrainSwitched(
            Brain.REALTIME,
            Brain.CHAINED,
            previous.reason,
            previous.detail,
            self.policy.time_on(Brain.REALTIME, switch.at_ms),
            len(start.messages),
            reask,
        )
        self.switched.append(event)
        await self.push_frame(RealtimeCallEventFrame(event=event, at_ms=self.now_ms()))
        await self._call_event_handler("on_brain_switched", event)
