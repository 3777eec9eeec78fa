"""User audio across a session switch: hold it, replay it, lose no user turn.

``input_audio_buffer.append`` has no acknowledgement, and a session that
dies takes its uncommitted input buffer with it. So this relay keeps every
chunk sent since the last ``input_audio_buffer.committed`` (the user turn in
progress) and, while no session is up (reconnect, rollover), holds new
chunks. When the next session is ready it replays both, in order: the user's
half-finished sentence reaches the new session whole.

Memory is bounded: past ``max_ms`` the oldest audio goes first and is counted
as dropped, so a measurement can prove that nothing was.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence

from voxpipe.audio import AudioFormat, bytes_to_ms, ms_to_bytes


@dataclasses.dataclass(frozen=True)
class SendUserAudio:
    """Command: ``input_audio_buffer.append`` this chunk (``seq`` counts chunks)."""

    seq: int
    audio: bytes = dataclasses.field(repr=False)
    replayed: bool = False


@dataclasses.dataclass(frozen=True)
class RelayStats:
    """How much user audio was held, replayed and (never, we hope) dropped."""

    sent_ms: int
    held_ms: int
    replayed_ms: int
    dropped_ms: int


class UserAudioRelay:
    """Decides which user audio chunks go to the provider, and when."""

    def __init__(self, fmt: AudioFormat = AudioFormat.PCM16_24K, *, max_ms: int = 30_000) -> None:
        self._fmt = fmt
        self._max_bytes = ms_to_bytes(max_ms, fmt)
        self._uncommitted: deque[tuple[int, bytes]] = deque()  # sent, turn not committed
        self._held: deque[tuple[int, bytes]] = deque()  # not sent: no session
        self._bytes = 0
        self._seq = -1
        self._connected = False
        self._sent = self._held_total = self._replayed = self._dropped = 0

    @property
    def connected(self) -> bool:
        """Whether a session is up to take audio."""
        return self._connected

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest chunk (-1 before any)."""
        return self._seq

    def stats(self) -> RelayStats:
        """Totals in milliseconds, for the timeline and the rollover benchmark."""
        ms = self._ms
        return RelayStats(
            ms(self._sent), ms(self._held_total), ms(self._replayed), ms(self._dropped)
        )

    def on_audio(self, audio: bytes) -> list[SendUserAudio]:
        """A chunk of user audio arrived from the input transport."""
        self._seq += 1
        chunk = (self._seq, audio)
        self._bytes += len(audio)
        if not self._connected:
            self._held.append(chunk)
            self._held_total += len(audio)
            self._trim()
            return []
        self._uncommitted.append(chunk)
        self._sent += len(audio)
        self._trim()
        return [SendUserAudio(self._seq, audio)]

    def on_committed(self) -> None:
        """``input_audio_buffer.committed``: the server owns the turn so far."""
        self._bytes -= sum(len(a) for _, a in self._uncommitted)
        self._uncommitted.clear()

    def on_disconnected(self) -> None:
        """The session is gone (socket closed, rollover started): hold audio from now."""
        self._connected = False

    def forget(self) -> None:
        """Drop what no session has taken yet: another brain answered it meanwhile."""
        self._bytes = 0
        self._uncommitted.clear()
        self._held.clear()

    def take_uncommitted(self) -> list[bytes]:
        """Hand over every chunk no session committed, in order, and forget it here.

        Another brain takes the caller now (a switch away, or a switch back
        that failed): what was sent but not committed and what was held is
        the caller's unfinished turn, which that brain must hear. Only audio
        that no session will ever take counts as dropped, so none is.
        """
        pending = [audio for _, audio in (*self._uncommitted, *self._held)]
        self.forget()
        return pending

    def on_connected(self) -> list[SendUserAudio]:
        """A new session is ready: replay the unfinished turn, then the held audio."""
        self._connected = True
        pending = [*self._uncommitted, *self._held]
        self._held.clear()
        self._uncommitted = deque(pending)
        replay_bytes = sum(len(a) for _, a in pending)
        self._replayed += replay_bytes
        self._sent += replay_bytes
        return [SendUserAudio(seq, audio, replayed=True) for seq, audio in pending]

    def _trim(self) -> None:
        # Oldest first: the start of a long unfinished turn matters least.
        while self._bytes > self._max_bytes:
            queue = self._uncommitted or self._held
            if not queue:
                return
            _, audio = queue.popleft()
            self._bytes -= len(audio)
            if not self._connected:
                # While connected the live session already has it; only audio
                # no session will ever receive counts as dropped.
                self._dropped += len(audio)

    def _ms(self, n_bytes: int) -> int:
        return bytes_to_ms(n_bytes, self._fmt)


# Audio kept ahead of the first voiced window when a turn is handed over: the VAD and STT
# that take it need quiet before the onset (the STT keeps ~1 s before the VAD's start, and
# the VAD's volume smoothing settles on it). With 500 ms the chained brain once heard only
# "of Italy. Please." of "What is the capital of Italy, please?" at load 19.
HAND_PRE_ROLL_MS = 3_000


def unfinished_turn_start_ms(
    voiced: Sequence[bool], window_ms: float, *, pre_roll_ms: float = HAND_PRE_ROLL_MS
) -> float | None:
    """Where the caller's unfinished turn starts in audio handed to another brain.

    ``voiced`` says, window by window (``window_ms`` each), whether a VAD
    heard speech in the audio no session committed. Everything before the
    first voiced window (less ``pre_roll_ms``) is the quiet after the last
    committed turn: seconds of it on a stall (the relay keeps what the caller
    sent while the reply played and the brain hung). Handed over whole, the
    brain taking the call grinds through it before anything queued behind it:
    pipecat orders system frames (audio) ahead of data frames, so the re-ask
    waited 1-7 s at load 6-13 for the chained VAD to read 5-15 s of silence.
    Returns the offset in ms to hand over from, or None when nothing was
    voiced (no unfinished turn: nothing to hand over).
    """
    first = next((i for i, v in enumerate(voiced) if v), None)
    if first is None:
        return None
    return max(0.0, first * window_ms - pre_roll_ms)
