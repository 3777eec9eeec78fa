"""What an output wrote of the bot's audio, chunk by chunk, in bounded memory.

An output transport writes a 20 ms chunk at a time: an hour's call is 180,000
chunks, and a record of each kept for the whole call was 20 MB that nothing
needed. What is needed: the chunks of the utterance playing now (it can still
be cut, and a cut is checked against them), recent chunks (the latency
instruments look up the first chunk after a moment in the last turn), and
totals (how long the bot spoke, per utterance and in all). So the log keeps
the newest ``keep`` chunks plus the whole current utterance, and the totals
for the newest ``keep_utterances`` utterances and the call; older chunks can
no longer be cut and are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload


@dataclass(frozen=True)
class AudioWritten:
    """One chunk of bot audio reached the caller's ear (or the WAV, unpaced)."""

    at_ms: float
    duration_ms: float
    utterance: str | None


class WrittenAudio(Sequence[AudioWritten]):
    """The chunks an output wrote, oldest first (a sequence: index, iterate, bisect).

    Args:
        keep: chunks kept besides those of the current utterance (3,000: a minute).
        keep_utterances: utterances whose written total is remembered.
    """

    def __init__(self, keep: int = 3_000, keep_utterances: int = 64) -> None:
        if keep < 1 or keep_utterances < 1:
            raise ValueError("keep and keep_utterances must be at least 1")
        self._keep = keep
        self._keep_utterances = keep_utterances
        self._chunks: list[AudioWritten] = []
        self._current_from = 0  # index where the newest utterance's chunks begin
        self._per_utterance: OrderedDict[str, float] = OrderedDict()
        self.total_ms = 0.0
        self.dropped = 0

    def append(self, chunk: AudioWritten) -> None:
        """A chunk was written; chunks older than the bound go, the current utterance's stay."""
        last = self._chunks[-1] if self._chunks else None
        if chunk.utterance is None or last is None or last.utterance != chunk.utterance:
            # A new utterance begins here; audio of none is never protected.
            self._current_from = len(self._chunks) + (chunk.utterance is None)
        self._chunks.append(chunk)
        self.total_ms += chunk.duration_ms
        if chunk.utterance is not None:
            total = self._per_utterance.pop(chunk.utterance, 0.0) + chunk.duration_ms
            self._per_utterance[chunk.utterance] = total
            while len(self._per_utterance) > self._keep_utterances:
                self._per_utterance.popitem(last=False)
        if len(self._chunks) > 2 * self._keep:  # amortised: a slice every ``keep`` chunks
            cut = min(len(self._chunks) - self._keep, self._current_from)
            if cut > 0:
                del self._chunks[:cut]
                self._current_from -= cut
                self.dropped += cut

    def written_ms(self, utterance: str) -> float:
        """Milliseconds of ``utterance`` written (0 if unknown or forgotten)."""
        return self._per_utterance.get(utterance, 0.0)

    def __len__(self) -> int:
        return len(self._chunks)

    @overload
    def __getitem__(self, index: int) -> AudioWritten: ...
    @overload
    def __getitem__(self, index: slice) -> list[AudioWritten]: ...
    def __getitem__(self, index: int | slice) -> AudioWritten | list[AudioWritten]:
        return self._chunks[index]

    def __iter__(self) -> Iterator[AudioWritten]:
        return iter(self._chunks)
