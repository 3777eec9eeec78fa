"""What the graders read of one call: its artifacts, as plain data.

A call leaves ``timeline.jsonl`` and ``call.wav`` (``voxpipe call``'s
artifacts) and, from the eval runner, ``eval_call.json``: when each of the
caller's lines played, the bot's audio as the caller heard it (contiguous
stretches of written audio), and the context each response was generated from
(the embedded server's brain sees it; None against any other server).
:func:`load_record` rebuilds a :class:`CallRecord` from those files alone, so a
call graded twice gets the same verdict.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxpipe.evals.persona import CallerTurn
from voxpipe.timeline import EventKind, TimelineEvent

RECORD_FILE = "eval_call.json"


@dataclass(frozen=True)
class Span:
    start_ms: float
    end_ms: float

    @property
    def ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class BrainContext:
    """The messages a response was generated from, and when (on the call's clock)."""

    t_ms: float
    messages: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class HeardText:
    """A cut reply's audio up to the cut, as the local STT heard it (a real voice's words
    run together, so they are counted from their transcript)."""

    turn: int  # the caller's line that cut the reply (0-based)
    span: Span  # the bot audio transcribed: from the previous line's end to the cut
    text: str


@dataclass(frozen=True)
class CallRecord:
    """One eval call, on the call's clock (ms from the transport's origin)."""

    lines: tuple[Span, ...]  # when turn i's line played; fewer than the turns if the call died
    bot_audio: tuple[Span, ...]  # contiguous bot audio written to the caller, in order
    events: tuple[TimelineEvent, ...]
    contexts: tuple[BrainContext, ...] | None = None  # per response, in order
    bot_words: tuple[Span, ...] | None = None  # word by word, where the voice allows counting
    ended_ms: float = 0.0
    bot_text: tuple[tuple[float, str], ...] | None = None  # (t_ms, delta); None: not recorded
    caller_turns: tuple[CallerTurn, ...] | None = None  # a simulated caller's, turn by turn
    heard_text: tuple[HeardText, ...] | None = None  # None: the words are not transcribed

    def text_between(self, start_ms: float, end_ms: float) -> str:
        """What the bot said (its transcript) between two moments."""
        if self.bot_text is not None:
            return "".join(t for at, t in self.bot_text if start_ms <= at < end_ms).strip()
        texts = self.of(EventKind.ASSISTANT_TEXT, start_ms, end_ms)
        return " ".join(str(e.data.get("text", "")) for e in texts).strip()

    def of(self, kind: EventKind, start_ms: float, end_ms: float) -> list[TimelineEvent]:
        return [e for e in self.events if e.kind is kind and start_ms <= e.t_ms < end_ms]

    def turn_window(self, turn: int) -> Span:
        """From the start of turn ``turn``'s line to the start of the next (or the end)."""
        start = self.lines[turn].start_ms
        end = self.lines[turn + 1].start_ms if turn + 1 < len(self.lines) else self.ended_ms
        return Span(start, max(start, end))

    def reply_window(self, turn: int) -> Span:
        """From the end of the caller's line to the end of the next line (or the call).

        The reply to a line comes after it; a reply cut by the next line (a
        barge-in) ends while that line plays, so its text lands before its end.
        """
        start = self.lines[turn].end_ms
        end = self.lines[turn + 1].end_ms if turn + 1 < len(self.lines) else self.ended_ms
        return Span(start, max(start, end))


def merge_spans(chunks: Sequence[tuple[float, float]], *, join_ms: float = 100.0) -> list[Span]:
    """Chunks (start, duration) of written audio as contiguous stretches.

    Chunks closer than ``join_ms`` are one stretch: a paced output writes 20 ms
    chunks up to tens of ms late under load, which no caller hears as a pause.
    """
    spans: list[Span] = []
    for start, duration in sorted(chunks):
        if spans and start - spans[-1].end_ms <= join_ms:
            last = spans[-1]
            spans[-1] = Span(last.start_ms, max(last.end_ms, start + duration))
        else:
            spans.append(Span(start, start + duration))
    return spans


def word_spans(pcm16: bytes, rate: int, *, threshold: int = 300, gap_ms: int = 15) -> list[Span]:
    """Words in a track of the scripted brain's synthetic voice, by its 40 ms gaps.

    The synthetic voice hums one tone per word with 40 ms of digital silence
    after it, so the words the caller heard are counted exactly from the
    recording. A real voice's words run together: this is not for one.
    """
    samples = np.abs(np.frombuffer(pcm16, dtype="<i2").astype(np.int32))
    window = max(1, rate * 5 // 1000)  # 5 ms
    count = len(samples) // window
    if count == 0:
        return []
    active = samples[: count * window].reshape(count, window).max(axis=1) > threshold
    spans: list[Span] = []
    start: int | None = None
    quiet = 0
    for i, on in enumerate(active):
        if on:
            if start is None:
                start = i
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 5 >= gap_ms:
                spans.append(Span(start * 5.0, (i - quiet + 1) * 5.0))
                start, quiet = None, 0
    if start is not None:
        spans.append(Span(start * 5.0, (count - quiet) * 5.0))
    return spans


def heard_words(pcm16: bytes, rate: int, chunks: Sequence[tuple[float, float]]) -> list[Span]:
    """The words of the bot's track, chunk by chunk as they were played, on the call's clock.

    A paced output writes each 20 ms chunk when it plays; under load one can
    play 20-40 ms late, which leaves a hole in ``call.wav`` that would split a
    word in two. The chunks are laid end to end before the words are counted,
    and each word is placed back at the time its first chunk played.
    """
    width = 2
    pieces, starts = [], []  # starts: (offset in the stream ms, call time ms) per chunk
    offset, previous_end = 0.0, None
    for at_ms, duration_ms in sorted(chunks):
        if previous_end is not None and at_ms - previous_end > 100:  # a new stretch: keep apart
            pieces.append(bytes(int(rate * 0.05) * width))
            offset += 50.0
        previous_end = at_ms + duration_ms
        begin = int(at_ms * rate / 1000) * width
        size = round(duration_ms * rate / 1000) * width
        pieces.append(pcm16[begin : begin + size].ljust(size, b"\0"))
        starts.append((offset, at_ms))
        offset += duration_ms
    keys = [s[0] for s in starts]

    def on_call_clock(stream_ms: float) -> float:
        index = max(0, bisect.bisect_right(keys, stream_ms) - 1)
        chunk_offset, at_ms = starts[index]
        return at_ms + stream_ms - chunk_offset

    words = word_spans(b"".join(pieces), rate)
    return [Span(on_call_clock(w.start_ms), on_call_clock(w.end_ms)) for w in words]


def heard_audio(
    pcm16: bytes, rate: int, chunks: Sequence[tuple[float, float]], span: Span
) -> bytes:
    """The bot audio the caller heard within ``span``: its chunks end to end, as played.

    A chunk played late leaves a hole in ``call.wav`` that is not in what was
    heard; laid end to end, as in :func:`heard_words`.
    """
    width, pieces = 2, []
    for at_ms, duration_ms in sorted(chunks):
        if span.start_ms <= at_ms < span.end_ms:
            begin = int(at_ms * rate / 1000) * width
            size = round(duration_ms * rate / 1000) * width
            pieces.append(pcm16[begin : begin + size].ljust(size, b"\0"))
    return b"".join(pieces)


def cut_replies(lines: Sequence[Span], bot_audio: Sequence[Span]) -> list[tuple[int, Span]]:
    """(turn, heard span) of each reply a caller's line cut into, as the barge-in grader
    finds it: from the end of the line before to the end of the stretch it cut."""
    cuts = []
    for turn in range(1, len(lines)):
        line = lines[turn]
        cut = next((s for s in bot_audio if s.start_ms <= line.start_ms < s.end_ms + 100), None)
        if cut is not None:
            cuts.append((turn, Span(lines[turn - 1].end_ms, cut.end_ms)))
    return cuts


def bot_track(path: Path) -> tuple[bytes, int]:
    """The bot's channel of ``call.wav`` (PCM16) and its rate."""
    return _bot_track(path)


def record_json(record: CallRecord, chunks: Sequence[tuple[float, float]] = ()) -> str:
    """What :func:`load_record` reads back (besides the timeline and the recording)."""
    return json.dumps(
        {
            "lines": [[s.start_ms, s.end_ms] for s in record.lines],
            "bot_audio": [[round(s.start_ms, 1), round(s.end_ms, 1)] for s in record.bot_audio],
            "contexts": None
            if record.contexts is None
            else [{"t_ms": c.t_ms, "messages": list(c.messages)} for c in record.contexts],
            "count_words": record.bot_words is not None,
            # Each chunk of bot audio (start, ms) as it played: the words are counted from them.
            "bot_chunks": [[round(a, 2), round(d, 2)] for a, d in chunks],
            "ended_ms": record.ended_ms,
            "bot_text": None
            if record.bot_text is None
            else [[round(at, 1), text] for at, text in record.bot_text],
            "caller_turns": None
            if record.caller_turns is None
            else [t.as_dict() for t in record.caller_turns],
            "heard_text": None
            if record.heard_text is None
            else [
                {"turn": h.turn, "span": [h.span.start_ms, h.span.end_ms], "text": h.text}
                for h in record.heard_text
            ],
        },
        indent=1,
        default=str,
    )


def load_record(call_dir: Path) -> CallRecord:
    """A call's record from its directory (``eval_call.json``, ``timeline.jsonl``, ``call.wav``)."""
    data = json.loads((call_dir / RECORD_FILE).read_text())
    events = tuple(_event(json.loads(line)) for line in _lines(call_dir / "timeline.jsonl"))
    words = None
    if data.get("count_words"):
        pcm, rate = _bot_track(call_dir / "call.wav")
        words = tuple(heard_words(pcm, rate, [(a, d) for a, d in data["bot_chunks"]]))
    contexts = data.get("contexts")
    return CallRecord(
        lines=tuple(Span(a, b) for a, b in data["lines"]),
        bot_audio=tuple(Span(a, b) for a, b in data["bot_audio"]),
        events=events,
        contexts=None
        if contexts is None
        else tuple(BrainContext(c["t_ms"], tuple(c["messages"])) for c in contexts),
        bot_words=words,
        ended_ms=float(data["ended_ms"]),
        bot_text=None
        if data.get("bot_text") is None
        else tuple((float(at), str(text)) for at, text in data["bot_text"]),
        caller_turns=None
        if data.get("caller_turns") is None
        else tuple(CallerTurn.from_dict(t) for t in data["caller_turns"]),
        heard_text=None
        if data.get("heard_text") is None
        else tuple(
            HeardText(int(h["turn"]), Span(*h["span"]), str(h["text"])) for h in data["heard_text"]
        ),
    )


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _event(data: dict[str, Any]) -> TimelineEvent:
    t_ms, kind = float(data.pop("t_ms")), EventKind(data.pop("type"))
    return TimelineEvent(t_ms, kind, data)


def _bot_track(path: Path) -> tuple[bytes, int]:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(audio[:, -1]).astype("<i2").tobytes(), int(rate)
