"""The caller's pause, measured on the caller's audio: local turn ends that hold under load.

pipecat's ``SpeechTimeoutUserTurnStopStrategy`` ends a turn when a wall-clock
timer, started as the VAD's stop reaches it, runs out before the VAD's next
start does. Both VAD events travel through the user aggregator's input queue
behind the audio already waiting there, and pipecat's Silero analyzer takes
each 20 ms frame through a worker thread: on a loaded 2-core machine that hop
cost 30-40 ms a frame (the model itself 1-3 ms), the aggregator fell seconds
behind the caller, and when the load eased it worked through the backlog at
CPU speed. A 3 s pause then went by in a fraction of a second of wall time,
the 0.6 s timer never ran out, and two of the caller's turns became one
(``tests/processors/test_realtime_interruption.py``, the local VAD barge-in;
a loop stall of the input transport compresses a pause the same way).

So here

- :class:`CallerSilenceVAD` is pipecat's Silero analyzer run on the event
  loop (no thread hop per frame, so it keeps up), and it counts how much of
  the caller's audio it has analysed since it last said the caller stopped
  (:attr:`CallerSilenceVAD.quiet_ms`), and how many starts it has said;
- :class:`CallerSilenceTimeout` is pipecat's strategy whose speech timeout
  runs out when that much of the caller's *audio* was quiet, not that much
  wall time: after the VAD's stop, once :attr:`~CallerSilenceVAD.quiet_ms`
  reaches the timeout and no start is still on its way. A caller whose audio
  stops arriving altogether (a muted client that sends nothing) is ended by
  pipecat's turn watchdog (``user_turn_stop_timeout``, 5 s) as before.

The STT timeout (how long a transcript may take) stays wall-clock: that is
the STT's latency, not the caller's pause.

pipecat's turn watchdog, though, must not end a turn whose words are still
being transcribed: it fires after ``user_turn_stop_timeout`` (5 s) with no VAD
event and no transcript, and local Whisper under load (load 13-17 on 2 cores)
took longer than that after the VAD's stop. The turn then ended with no
transcript; the first turn of a call counts as one that interrupted the bot,
so pipecat's empty-turn recovery asked the LLM to have the caller repeat
themselves, and the late transcript started a second turn that asked the LLM
again: two requests, two replies, for one question
(``tests/pipelines/test_chained_slow_transcript.py``). :func:`hold_turn_open`
feeds the watchdog while the STT still owes the turn its transcript.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADState
from pipecat.frames.frames import Frame, InputAudioRawFrame, VADUserStartedSpeakingFrame
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy


class CallerSilenceVAD(SileroVADAnalyzer):
    """Silero VAD analysed on the event loop, keeping the caller's silence in audio time.

    Args:
        pause_after_ms: tell the pause listeners (:meth:`add_pause_listener`) when
            the caller has been quiet this long in mid-speech, before the VAD's
            stop (``stop_secs``) is said; None: never.
    """

    def __init__(self, *, pause_after_ms: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Audio analysed since the VAD last went quiet after speech (None: speaking).
        self.quiet_ms: float | None = None
        self.starts = 0  # speech starts said so far (each is one VADUserStartedSpeakingFrame)
        self.resumes = 0  # pauses told to the listeners that the caller then talked through
        self._speaking = False
        self._pause_after_ms = pause_after_ms
        self._paused_ms = 0.0  # how long the current mid-speech pause (STOPPING) has lasted
        self._pause_told = False
        self._pause_listeners: list[Callable[[], object]] = []

    @property
    def pause_after_ms(self) -> float | None:
        return self._pause_after_ms

    def add_pause_listener(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` once per pause of ``pause_after_ms`` while the caller speaks.

        The pause may still become the VAD's stop, or the caller may talk on
        (then :attr:`resumes` goes up by one). The local STT starts transcribing
        there; a listener must return at once.
        """
        self._pause_listeners.append(listener)

    async def analyze_audio(self, buffer: bytes) -> VADState:
        # One window of Silero is ~1 ms of CPU; a worker-thread round trip per 20 ms
        # frame cost 30-40 ms under load and let the aggregator fall seconds behind.
        state = self._run_analyzer(buffer)
        self._count(state, len(buffer) / 2 / max(self.sample_rate, 1) * 1000)
        return state

    def _count(self, state: VADState, duration_ms: float) -> None:
        # Mirrors pipecat's VAD controller: a start when SPEAKING is reached, a stop at QUIET.
        if state is VADState.SPEAKING and not self._speaking:
            self._speaking, self.quiet_ms = True, None
            self.starts += 1
        elif state is VADState.QUIET and self._speaking:
            self._speaking, self.quiet_ms = False, 0.0  # the stop: the pause counts from here
        elif not self._speaking and self.quiet_ms is not None:
            self.quiet_ms += duration_ms  # QUIET, or STARTING that has not become a start
        self._follow_pause(state, duration_ms)

    def _follow_pause(self, state: VADState, duration_ms: float) -> None:
        if state is VADState.STOPPING and self._speaking:
            self._paused_ms += duration_ms
            after = self._pause_after_ms
            if after is not None and not self._pause_told and self._paused_ms >= after:
                self._pause_told = True
                for listener in self._pause_listeners:
                    listener()
            return
        if state is VADState.SPEAKING and self._pause_told:
            self.resumes += 1  # the caller talked through the pause the listeners were told of
        self._paused_ms, self._pause_told = 0.0, False


class CallerSilenceTimeout(SpeechTimeoutUserTurnStopStrategy):
    """pipecat's speech-timeout stop strategy, its pause counted on the caller's audio.

    Args:
        vad: the analyzer of the same user aggregator (its VAD events reach this strategy).
        user_speech_timeout: how long the caller's pause must be, in seconds of audio.
    """

    def __init__(
        self, vad: CallerSilenceVAD, *, user_speech_timeout: float = 0.6, **kwargs: Any
    ) -> None:
        super().__init__(user_speech_timeout=user_speech_timeout, **kwargs)
        self._vad = vad
        self._starts_seen = 0
        self._audio = asyncio.Event()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._starts_seen += 1
        elif isinstance(frame, InputAudioRawFrame):
            self._audio.set()  # the VAD has analysed it already (the aggregator runs it first)
        return await super().process_frame(frame)

    def _paused_long_enough(self, timeout_s: float) -> bool:
        quiet = self._vad.quiet_ms
        # A start the VAD said that has not reached us yet means the caller spoke again.
        caught_up = self._vad.starts <= self._starts_seen
        return caught_up and quiet is not None and quiet >= timeout_s * 1000

    async def _user_speech_timeout_handler(self, timeout: float) -> None:  # noqa: ASYNC109 - pipecat's signature
        if not self._vad_stopped:
            # A transcript with no VAD stop: inactivity since it, on the wall clock (pipecat's).
            await super()._user_speech_timeout_handler(timeout)
            return
        try:
            while not self._paused_long_enough(timeout):
                self._audio.clear()
                await self._audio.wait()
        except asyncio.CancelledError:
            return
        finally:
            self._user_speech_timeout_task = None
        self._user_speech_wait_done = True
        await self._maybe_trigger_user_turn_stopped()


def hold_turn_open(user_aggregator: LLMUserAggregator) -> Callable[[], None]:
    """A call that tells the aggregator's turn watchdog the caller's turn is still live.

    pipecat 1.14 resets the watchdog only on VAD events and transcripts and has
    no public way to say "a transcript is on its way"; its timer waits on this
    event (``UserTurnController._user_turn_stop_timeout_event``), so setting
    it is what a VAD event or a transcript does to the watchdog, nothing more.
    """
    event: asyncio.Event = user_aggregator._user_turn_controller._user_turn_stop_timeout_event
    return event.set
