"""GuardrailTap through pipecat's run_test: cadence, audio path, trips, bad policies, long text."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallInProgressFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesTransformFrame,
    LLMTextFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test

from voxpipe.frames import GuardrailStage, GuardrailTrippedFrame
from voxpipe.guardrails import (
    CheckFailure,
    DenyPolicy,
    FailMode,
    PiiPolicy,
    Verdict,
)
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.processors.guardrails.tap import GuardrailTap, ScanCadence
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.timeline import EventKind, Timeline

SAFE = "Sorry, I can't talk about that."


async def expired(_: float) -> None:
    """A timer whose deadline has already passed."""


async def never(_: float) -> None:
    await asyncio.Event().wait()


class RecordingPolicy:
    """A remote-style policy (async only) that records what it was asked about."""

    def __init__(self, verdict: object = None, name: str = "remote") -> None:
        self.seen: list[str] = []
        self._verdict = verdict if verdict is not None else Verdict.allow()
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def check(self, text: str) -> Verdict:
        self.seen.append(text)
        return self._verdict  # type: ignore[return-value]


class RecordingScanner(DenyPolicy):
    """A deny policy that records each scan's text length and start."""

    def __init__(self, words: Sequence[str] = ()) -> None:
        super().__init__(words=words, name="recorded", overlap_chars=20)
        self.scans: list[tuple[int, int]] = []

    def scan(self, text: str, start: int = 0) -> Verdict:
        self.scans.append((len(text), start))
        return super().scan(text, start)


def response(*deltas: str) -> list[Frame]:
    return [
        LLMFullResponseStartFrame(),
        *[LLMTextFrame(d) for d in deltas],
        LLMFullResponseEndFrame(),
    ]


def texts(frames: Sequence[Frame]) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def of(frames: Sequence[Frame], kind: type[Frame]) -> list[Frame]:
    return [f for f in frames if isinstance(f, kind)]


async def test_clean_text_flows_unchanged_and_checked_at_the_end() -> None:
    remote = RecordingPolicy()
    tap = GuardrailTap([DenyPolicy(words=["password"]), remote], timer=never)
    down, up = await run_test(tap, frames_to_send=response("Hello ", "there. ", "How are you?"))
    assert texts(down) == "Hello there. How are you?"
    assert not of(down, InterruptionFrame) and not up
    assert remote.seen == ["Hello there. How are you?"]  # the final check, once


async def test_debounced_checks_run_every_n_chars_and_once_at_the_end() -> None:
    scanner = RecordingScanner()
    tap = GuardrailTap([scanner], every_chars=100, scan_cadence=ScanCadence.DEBOUNCED)
    await run_test(tap, frames_to_send=response(*["abcdefghi "] * 35))
    # Checks at 100, 200 and 300 characters, each on new text plus the overlap,
    # then the final check over all 350.
    assert scanner.scans == [(100, 0), (200, 80), (300, 180), (350, 0)]
    assert tap.core.checks == 4


async def test_a_remote_policy_sees_the_final_text_even_when_checks_coalesce() -> None:
    remote = RecordingPolicy()
    tap = GuardrailTap([remote], every_chars=10, timer=never)
    await run_test(tap, frames_to_send=response(*["word "] * 40))
    assert remote.seen[-1] == "word " * 40
    assert len(remote.seen) <= 21  # every 10 chars at most, plus the final


async def test_audio_passes_untouched_while_a_check_is_pending() -> None:
    released = asyncio.Event()
    audio = [TTSAudioRawFrame(bytes([i]) * 960, 24_000, 1) for i in range(30)]

    class ReleaseAfterAudio(FrameProcessor):
        """Lets the pending check finish only once every audio frame got past the tap."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                self.seen += 1
                if self.seen == len(audio):
                    released.set()
            await self.push_frame(frame, direction)

    class WaitsForAudio(RecordingPolicy):
        async def check(self, text: str) -> Verdict:
            await released.wait()
            return await super().check(text)

    policy = WaitsForAudio()
    tap = GuardrailTap([policy], every_chars=5, timer=never)
    frames: list[Frame] = [LLMFullResponseStartFrame(), LLMTextFrame("Here is some text. ")]
    frames += audio
    frames.append(LLMFullResponseEndFrame())
    down, _ = await asyncio.wait_for(
        run_test(Pipeline([tap, ReleaseAfterAudio()]), frames_to_send=frames), 10
    )
    passed = of(down, TTSAudioRawFrame)
    assert [f.id for f in passed] == [f.id for f in audio]  # the same frames, in order
    assert all(f.audio == bytes([i]) * 960 for i, f in enumerate(passed))
    assert policy.seen  # the check was pending the whole time, and finished


async def test_a_deny_word_trips_before_the_frame_that_finishes_it_moves_on() -> None:
    metrics = VoxpipeMetrics()
    timeline = Timeline()
    tap = GuardrailTap([DenyPolicy(words=["password"])], safe_line=SAFE, metrics=metrics)
    frames = response("Sure. ", "The ", "pass", "word ", "is ", "hunter2. ")
    down, up = await run_test(
        tap, frames_to_send=frames, observers=[TimelineObserver(timeline, lambda: 0.0)]
    )
    assert "password" not in texts(down)
    assert texts(down) == "Sure. The "  # "pass" was unfinished: the tap held it
    assert of(down, InterruptionFrame) and of(up, InterruptionFrame)
    assert [f.text for f in of(down, TTSSpeakFrame)] == [SAFE]
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame)
    assert (trip.policy, trip.rule, trip.span) == ("deny", "deny:password", "password")
    assert (trip.start, trip.end, trip.stage) == (10, 18, GuardrailStage.OUTPUT)
    labels = {"policy": "deny", "environment": "development", "project": "voxpipe"}
    assert metrics.registry.get_sample_value("voxpipe_guardrail_trips_total", labels) == 1
    (event,) = timeline.of(EventKind.GUARDRAIL_TRIPPED)
    assert event.data["rule"] == "deny:password" and event.data["span"] == "password"


async def test_a_word_that_only_starts_like_a_deny_word_is_not_a_trip() -> None:
    tap = GuardrailTap([DenyPolicy(words=["kill"])], safe_line=SAFE)
    down, _ = await run_test(tap, frames_to_send=response("Let's ", "kill", "ing ", "time."))
    assert texts(down) == "Let's killing time."
    assert not of(down, GuardrailTrippedFrame)


async def test_an_unfinished_word_never_leaves_the_tap_even_when_the_call_ends_on_it() -> None:
    # A fast brain's whole reply arrives at once and the call ends before its last
    # word is finished by a boundary: the TTS would speak what it holds at the end.
    tap = GuardrailTap([DenyPolicy(words=["pineapple"])], safe_line=SAFE)
    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame("The secret word is "),
        LLMTextFrame("pine"),
    ]
    frames.append(LLMTextFrame("apple"))
    down, _ = await run_test(tap, frames_to_send=frames)  # then an EndFrame, no response end
    assert texts(down) == "The secret word is "
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame) and trip.span == "pineapple"


async def test_a_safe_unfinished_word_follows_once_the_response_ends() -> None:
    tap = GuardrailTap([DenyPolicy(words=["password"])])
    down, _ = await run_test(tap, frames_to_send=response("Hello ", "wor", "ld"))
    assert texts(down) == "Hello world"
    order = [f for f in down if isinstance(f, LLMTextFrame | LLMFullResponseEndFrame)]
    assert [type(f) for f in order[-2:]] == [LLMTextFrame, LLMFullResponseEndFrame]
    assert order[-2].text == "world"  # type: ignore[attr-defined]


class HoldUntilInterrupted(FrameProcessor):
    """Forwards the first ``n`` frames, then holds the rest until an interruption comes back
    upstream, as a brain's later output arrives after the tap has already tripped."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self._left = n
        self._held: list[Frame] = []
        self._open = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.UPSTREAM and isinstance(frame, InterruptionFrame):
            self._open = True
            await self.push_frame(frame, direction)
            for held in self._held:
                await self.push_frame(held)
            self._held = []
        elif isinstance(frame, StartFrame | EndFrame):
            await self.push_frame(frame, direction)
        elif direction is FrameDirection.DOWNSTREAM and not self._open and self._left <= 0:
            self._held.append(frame)
        else:
            self._left -= 1
            await self.push_frame(frame, direction)


async def test_after_a_trip_the_rest_of_the_response_is_dropped_and_the_next_one_flows() -> None:
    tap = GuardrailTap([PiiPolicy()], safe_line=SAFE)
    audio = TTSAudioRawFrame(b"\x00" * 960, 24_000, 1)
    frames = response("Mail me at bob@example.com ", "please. ")
    frames[-1:-1] = [TTSTextFrame("late", text_type="word"), audio]
    frames += response("Anything else?")
    hold = HoldUntilInterrupted(2)  # the start and the delta that trips
    down, _ = await run_test(Pipeline([hold, tap]), frames_to_send=frames)
    assert texts(down) == "Anything else?"
    assert not of(down, TTSAudioRawFrame) and not of(down, TTSTextFrame)
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame)
    assert trip.rule == "pii:email" and trip.span == "bob@example.com"


async def test_the_context_transform_keeps_only_what_preceded_the_span() -> None:
    tap = GuardrailTap([DenyPolicy(words=["password"])])
    down, _ = await run_test(tap, frames_to_send=response("Sure. ", "The ", "password ", "is "))
    (frame,) = of(down, LLMMessagesTransformFrame)
    assert isinstance(frame, LLMMessagesTransformFrame)
    heard = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure. The pass"}]
    assert frame.transform(heard)[-1] == {"role": "assistant", "content": "Sure. The"}


async def test_a_speaker_says_the_safe_line_instead_of_a_tts_frame() -> None:
    said: list[str] = []

    async def speaker(line: str) -> None:
        said.append(line)

    tap = GuardrailTap([DenyPolicy(words=["password"])], safe_line=SAFE, speaker=speaker)
    down, _ = await run_test(tap, frames_to_send=response("The password "))
    assert not of(down, TTSSpeakFrame)
    assert said == [SAFE]


class Raises(RecordingPolicy):
    async def check(self, text: str) -> Verdict:
        raise RuntimeError("moderation service exploded")


class Hangs(RecordingPolicy):
    async def check(self, text: str) -> Verdict:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Garbage(RecordingPolicy):
    async def check(self, text: str) -> Verdict:
        return "looks fine to me"  # type: ignore[return-value]


class SyncGarbage(RecordingPolicy):
    def check(self, text: str) -> Verdict:  # type: ignore[override]
        return None  # type: ignore[return-value]


class RaisingScanner(DenyPolicy):
    def scan(self, text: str, start: int = 0) -> Verdict:
        raise ValueError("regex engine on fire")


BAD = [
    (Raises(), CheckFailure.RAISED),
    (Hangs(), CheckFailure.TIMED_OUT),
    (Garbage(), CheckFailure.GARBAGE),
    (SyncGarbage(), CheckFailure.GARBAGE),
    (RaisingScanner(words=["x"], name="remote"), CheckFailure.RAISED),
]
BAD_IDS = ["raises", "hangs", "garbage", "sync-garbage", "scanner-raises"]


@pytest.mark.parametrize(("policy", "failure"), BAD, ids=BAD_IDS)
async def test_a_bad_policy_fails_open(policy: RecordingPolicy, failure: CheckFailure) -> None:
    tap = GuardrailTap([policy], fail=FailMode.OPEN, safe_line=SAFE, timer=expired)
    down, _ = await run_test(tap, frames_to_send=response("All fine here. ", "Bye."))
    assert texts(down) == "All fine here. Bye."
    assert not of(down, InterruptionFrame) and not of(down, TTSSpeakFrame)
    assert tap.core.failures[failure] >= 1


@pytest.mark.parametrize(("policy", "failure"), BAD, ids=BAD_IDS)
async def test_a_bad_policy_fails_closed(policy: RecordingPolicy, failure: CheckFailure) -> None:
    tap = GuardrailTap([policy], fail=FailMode.CLOSED, safe_line=SAFE, timer=expired)
    down, up = await run_test(tap, frames_to_send=response("All fine here. ", "Bye."))
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame)
    assert trip.failure is failure and trip.rule == f"remote:{failure.value}"
    assert of(up, InterruptionFrame)
    assert [f.text for f in of(down, TTSSpeakFrame)] == [SAFE]


async def test_a_remote_trip_interrupts_and_speaks_the_safe_line() -> None:
    flagged = RecordingPolicy(Verdict.trip("moderation:violence", 0, 9), name="moderation")
    tap = GuardrailTap([flagged], safe_line=SAFE, timer=never)
    down, up = await run_test(tap, frames_to_send=response("Something ", "awful."))
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame)
    assert (trip.policy, trip.span, trip.failure) == ("moderation", "Something", None)
    assert of(up, InterruptionFrame) and [f.text for f in of(down, TTSSpeakFrame)] == [SAFE]


async def test_empty_responses_and_non_text_content_check_nothing() -> None:
    remote = RecordingPolicy()
    tap = GuardrailTap([DenyPolicy(words=["x"]), remote], timer=never)
    call = FunctionCallInProgressFrame("get_weather", "call-1", {"city": "Paris"})
    frames: list[Frame] = [*response(), *response(""), LLMFullResponseStartFrame(), call]
    frames += [LLMTextFrame(b"\x00\x01"), LLMFullResponseEndFrame()]  # type: ignore[arg-type]
    down, _ = await run_test(tap, frames_to_send=frames)
    assert of(down, FunctionCallInProgressFrame) == [call]
    assert texts(down) == ""
    assert remote.seen == [] and tap.core.checks == 0
    assert tap.core.ignored_deltas == 1
    assert tap.core.open_responses == 0


async def test_a_very_long_response_is_scanned_in_linear_work() -> None:
    words = [f"word{i % 97} " for i in range(20_000)]
    length = sum(map(len, words))
    deny = DenyPolicy(words=["forbidden phrase"])
    tap = GuardrailTap([deny, PiiPolicy()], every_chars=100, timer=never)
    down, _ = await run_test(tap, frames_to_send=response(*words, "a forbidden phrase."))
    (trip,) = of(down, GuardrailTrippedFrame)
    assert isinstance(trip, GuardrailTrippedFrame) and trip.start == length + 2
    # Each word is scanned once per policy, with at most the policy's overlap re-read.
    assert tap.gate.scans <= 2 * (len(words) + 1)
    assert tap.gate.chars_scanned <= 2 * length + tap.gate.scans * 254


async def test_end_frame_waits_for_running_checks() -> None:
    remote = RecordingPolicy(Verdict.trip("remote:flagged"))
    tap = GuardrailTap([remote], timer=never)
    down, _ = await run_test(tap, frames_to_send=response("Short."))
    assert of(down, GuardrailTrippedFrame)
    assert isinstance(down[-1], GuardrailTrippedFrame | LLMMessagesTransformFrame | EndFrame)


async def test_a_response_that_never_ends_is_not_kept() -> None:
    tap = GuardrailTap([DenyPolicy(words=["x"]), RecordingPolicy()], every_chars=5, timer=never)
    frames: list[Frame] = [
        LLMFullResponseStartFrame(),
        LLMTextFrame("Cut off mid "),
        *response("Hi."),
    ]
    down, _ = await run_test(tap, frames_to_send=frames)
    assert texts(down) == "Cut off mid Hi."
    assert tap.core.open_responses == 0
