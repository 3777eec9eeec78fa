"""When a call on the chained brain is between turns: the only time it may switch back.

The realtime brain says where a call is through its state machine
(LISTENING is a turn boundary). The chained brain has no such machine: its
turn is spread over the local VAD, STT, LLM, TTS and the output. This
tracker is fed what comes out of the chained brain and the output's reports,
each with ``now_ms``, and says whether the caller is being listened to with
no answer on its way. Sans-I/O: it never reads a clock.

Busy, from first to last:

- the caller speaks (VAD start to stop);
- an answer is owed: the caller's turn ended and no reply began yet (at most
  ``owed_ms``: an utterance the STT heard nothing in makes no reply);
- the LLM generates, the TTS synthesises, audio left the brain and has not
  finished playing, or the bot is heard speaking.

A boundary is ``settle_ms`` of not busy: the gaps between those stages (the
text on its way to the TTS, audio on its way to the output) are short, and a
switch back in one of them would drop the reply the caller is waiting for.
"""

from __future__ import annotations

import dataclasses
import enum


class ChainedStage(enum.Enum):
    """What the chained brain or the output reported."""

    USER_STARTED = "user_started"  # local VAD: the caller speaks (a barge-in too)
    USER_STOPPED = "user_stopped"  # the caller's turn ended: an answer is owed
    REPLY_STARTED = "reply_started"  # the LLM began a reply
    REPLY_ENDED = "reply_ended"  # the LLM finished it
    VOICE_STARTED = "voice_started"  # the TTS began synthesising
    VOICE_STOPPED = "voice_stopped"  # the TTS finished
    AUDIO_OUT = "audio_out"  # reply audio left the brain for the output
    BOT_STARTED = "bot_started"  # the output plays the reply
    BOT_STOPPED = "bot_stopped"  # the output went quiet
    INTERRUPTED = "interrupted"  # the output was cleared


@dataclasses.dataclass(frozen=True)
class BoundaryConfig:
    """How long quiet must last, and how long an owed answer keeps the call busy."""

    settle_ms: int = 1_500
    owed_ms: int = 30_000


class ChainedTurnBoundary:
    """Whether the chained brain is between turns (see the module docstring)."""

    def __init__(self, config: BoundaryConfig | None = None, *, now_ms: int = 0) -> None:
        self.config = config or BoundaryConfig()
        self._user_speaking = False
        self._owed_since: int | None = None
        self._generating = False
        self._voicing = False
        self._audio_owed = False
        self._bot_speaking = False
        self._changed_ms = now_ms

    def saw(self, stage: ChainedStage, now_ms: int) -> None:
        """Record what the brain or the output reported."""
        S = ChainedStage
        match stage:
            case S.USER_STARTED:
                self._user_speaking, self._owed_since = True, None
            case S.USER_STOPPED:
                self._user_speaking, self._owed_since = False, now_ms
            case S.REPLY_STARTED:
                self._generating, self._owed_since = True, None
            case S.REPLY_ENDED:
                self._generating = False
            case S.VOICE_STARTED:
                self._voicing = True
            case S.VOICE_STOPPED:
                self._voicing = False
            case S.AUDIO_OUT:
                self._audio_owed = True
            case S.BOT_STARTED:
                self._bot_speaking = True
            case S.BOT_STOPPED:
                self._bot_speaking = self._audio_owed = False
            case S.INTERRUPTED:  # queued audio and the reply under way are dropped
                self._audio_owed = self._generating = self._voicing = False
        self._changed_ms = now_ms

    def busy(self, now_ms: int) -> bool:
        """Whether a turn is under way (the caller's, or the answer to it)."""
        owed = self._owed_since is not None and now_ms - self._owed_since < self.config.owed_ms
        return (
            self._user_speaking
            or owed
            or self._generating
            or self._voicing
            or self._audio_owed
            or self._bot_speaking
        )

    def at_boundary(self, now_ms: int) -> bool:
        """Not busy, and not for at least ``settle_ms``."""
        return not self.busy(now_ms) and now_ms - self._changed_ms >= self.config.settle_ms
