"""The per-slot fallback core: who takes a request, when it moves on, when it gives up."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from voxpipe.errors import ConfigError, IllegalTransitionError, SlotFailedError
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.slot_fallback import (
    FallbackPolicy,
    GaveUp,
    HandedOff,
    HandoffReason,
    Slot,
    SlotFallback,
    timeline_data,
)

ERROR, DEADLINE = HandoffReason.ERROR, HandoffReason.DEADLINE


def fallback(
    slot: Slot = Slot.LLM,
    engines: tuple[str, ...] = ("remote", "local"),
    **policy: int | bool,
) -> SlotFallback:
    settings: dict[str, int | bool] = {"deadline_ms": 1000, **policy}
    return SlotFallback(slot, engines, FallbackPolicy(**settings))  # type: ignore[arg-type]


def test_a_request_goes_to_the_first_engine_and_its_deadline_counts_from_the_start() -> None:
    request = fallback().begin(now_ms=5_000)
    assert request.engine == "remote"
    assert request.deadline_at_ms == 6_000
    assert request.remaining_ms(5_400) == 600
    assert request.remaining_ms(7_000) == 0


def test_an_engine_may_have_a_deadline_of_its_own() -> None:
    slot = SlotFallback(Slot.TTS, ("piper", "espeak"), FallbackPolicy(2000), {"piper": 300})
    request = slot.begin(now_ms=0)
    assert request.deadline_at_ms == 300
    assert slot.deadline_ms("espeak") == 2000  # the slot's deadline


def test_the_last_engine_left_has_no_deadline() -> None:
    request = fallback().begin(now_ms=0)
    request.failed(now_ms=1000, reason=DEADLINE, detail="late")
    # Nobody is left to take over: cutting "local" off could only lose its answer.
    assert request.last and request.deadline_at_ms is None
    assert request.remaining_ms(now_ms=60_000) is None
    alone = fallback(engines=("only",)).begin(now_ms=0)
    assert alone.last and alone.deadline_at_ms is None


def test_output_moves_the_deadline_on() -> None:
    request = fallback(engines=("remote", "local")).begin(now_ms=0)
    request.produced_output(now_ms=800)
    assert request.deadline_at_ms == 1_800


# (reason, detail) of each failure, then the engines the request visits and how it ends.
SCENARIOS = [
    (
        "an error hands the same request to the next engine",
        ("a", "b", "c"),
        [(ERROR, "model not found")],
        ["a", "b"],
        None,
    ),
    (
        "a missed deadline hands it on too",
        ("a", "b"),
        [(DEADLINE, "no output within 1000 ms")],
        ["a", "b"],
        None,
    ),
    (
        "every engine failing gives up",
        ("a", "b"),
        [(ERROR, "refused"), (DEADLINE, "slow")],
        ["a", "b"],
        "every llm engine failed on this request: a (error: refused); b (deadline: slow)",
    ),
    (
        "one engine alone gives up at once",
        ("a",),
        [(ERROR, "boom")],
        ["a"],
        "every llm engine failed on this request: a (error: boom)",
    ),
]


@pytest.mark.parametrize(
    ("engines", "failures", "visited", "gave_up"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_handoffs(
    engines: tuple[str, ...],
    failures: list[tuple[HandoffReason, str]],
    visited: list[str],
    gave_up: str | None,
) -> None:
    request = fallback(engines=engines).begin(now_ms=0)
    seen = [request.engine]
    events = []
    for t, (reason, detail) in enumerate(failures, 1):
        event = request.failed(now_ms=t * 100, reason=reason, detail=detail)
        events.append(event)
        if isinstance(event, HandedOff):
            assert (event.from_engine, event.to_engine) == (seen[-1], request.engine)
            assert (event.reason, event.detail, event.slot) == (reason, detail, Slot.LLM)
            # The new engine's own deadline, unless it is the last one left.
            due = None if request.last else t * 100 + 1000
            assert request.deadline_at_ms == due
            seen.append(request.engine)
    assert seen == visited
    last = events[-1]
    if gave_up is None:
        assert isinstance(last, HandedOff) and not request.finished
    else:
        assert isinstance(last, GaveUp) and request.finished
        error = last.error()
        assert isinstance(error, SlotFailedError) and error.retryable
        assert error.message == gave_up
        assert error.engines == tuple(visited)


def test_an_llm_that_already_streamed_is_not_handed_on_by_default() -> None:
    request = fallback().begin(now_ms=0)
    request.produced_output(now_ms=300)
    event = request.failed(now_ms=900, reason=ERROR, detail="connection reset")
    assert isinstance(event, GaveUp) and event.partial and request.finished
    error = event.error()
    assert "remote broke after it had started answering" in error.message
    assert "retry_after_partial" in str(error.hint)


def test_a_voice_that_broke_midway_through_a_sentence_is_not_replaced() -> None:
    request = fallback(Slot.TTS, ("piper", "espeak")).begin(now_ms=0)
    request.produced_output(now_ms=200)
    event = request.failed(now_ms=300, reason=ERROR, detail="synthesis failed")
    assert isinstance(event, GaveUp) and event.partial
    # retry_after_partial is the LLM's setting: a TTS error does not point to it.
    assert event.error().hint == "the rest of this request is lost; the next one tries again"


def test_retry_after_partial_hands_a_broken_answer_on() -> None:
    request = fallback(retry_after_partial=True).begin(now_ms=0)
    request.produced_output(now_ms=300)
    event = request.failed(now_ms=900, reason=ERROR, detail="connection reset")
    assert isinstance(event, HandedOff) and event.after_partial
    assert request.engine == "local" and not request.produced


def test_a_finished_request_refuses_more_reports() -> None:
    request = fallback().begin(now_ms=0)
    request.succeeded()
    with pytest.raises(IllegalTransitionError):
        request.failed(now_ms=1, reason=ERROR, detail="late")


def test_an_engine_failing_twice_in_a_row_is_benched_until_its_cooldown_passes() -> None:
    slot = fallback(Slot.TTS, ("piper", "espeak"), trip_after=2, cooldown_ms=30_000)
    # Sentence 1: piper misses, espeak speaks it; sentence 2 tries piper again.
    first = slot.begin(now_ms=0)
    first.failed(now_ms=1_000, reason=DEADLINE, detail="no audio")
    first.succeeded()
    second = slot.begin(now_ms=2_000)
    assert second.engine == "piper"
    second.failed(now_ms=3_000, reason=DEADLINE, detail="no audio")
    second.succeeded()
    # Two in a row: piper is benched, later sentences start on espeak...
    assert slot.benched(now_ms=3_000) == ["piper"]
    assert slot.begin(now_ms=10_000).engine == "espeak"
    # ...until the cooldown has passed; then piper is tried first again.
    assert slot.benched(now_ms=33_000) == []
    again = slot.begin(now_ms=33_000)
    assert again.engine == "piper"
    # One more failure benches it at once (it never recovered).
    again.failed(now_ms=34_000, reason=DEADLINE, detail="no audio")
    assert slot.benched(now_ms=34_000) == ["piper"]


def test_a_success_clears_an_engines_record() -> None:
    slot = fallback(trip_after=2)
    request = slot.begin(now_ms=0)
    request.failed(now_ms=100, reason=ERROR, detail="blip")
    request.succeeded()
    ok = slot.begin(now_ms=200)
    ok.succeeded()  # the primary answered: its failure is forgiven
    third = slot.begin(now_ms=300)
    third.failed(now_ms=400, reason=ERROR, detail="blip")
    assert slot.benched(now_ms=400) == []


def test_a_benched_engine_is_still_tried_last() -> None:
    slot = fallback(trip_after=1, cooldown_ms=60_000)
    slot.begin(now_ms=0).failed(now_ms=10, reason=ERROR, detail="down")
    request = slot.begin(now_ms=100)
    assert request.engine == "local"
    event = request.failed(now_ms=200, reason=ERROR, detail="also down")
    assert isinstance(event, HandedOff) and event.to_engine == "remote"


@pytest.mark.parametrize(
    ("engines", "policy"),
    [
        ((), {}),
        (("a", "a"), {}),
        (("a",), {"deadline_ms": 0}),
        (("a",), {"trip_after": 0}),
        (("a",), {"cooldown_ms": -1}),
    ],
)
def test_bad_settings_are_refused(engines: tuple[str, ...], policy: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        fallback(engines=engines, **policy)


def test_handoffs_and_give_ups_are_counted_and_alerted_on() -> None:
    metrics = VoxpipeMetrics(environment="test", project="slots")
    request = fallback(Slot.TTS, ("piper", "espeak")).begin(now_ms=0)
    metrics.record_slot_event(request.failed(now_ms=10, reason=DEADLINE, detail="no audio"))
    metrics.record_slot_event(request.failed(now_ms=20, reason=ERROR, detail="no voice"))
    text = metrics.render().decode()
    labels = 'from_engine="piper",project="slots",reason="deadline",slot="tts",to_engine="espeak"'
    assert f'voxpipe_slot_handoffs_total{{environment="test",{labels}}} 1.0' in text
    assert 'voxpipe_slot_failures_total{environment="test",partial="false",project="slots",' in text

    rules = resources.files("voxpipe").joinpath("data/alerts.yml").read_text(encoding="utf-8")
    alerts = {r["alert"]: r["expr"] for g in yaml.safe_load(rules)["groups"] for r in g["rules"]}
    assert "voxpipe_slot_failures_total" in alerts["VoxpipeChainedSlotFailing"]
    assert (
        "by (environment, project, slot, from_engine)" in alerts["VoxpipeChainedEngineFailingOver"]
    )


def test_the_timeline_records_who_handed_what_to_whom() -> None:
    request = fallback().begin(now_ms=0)
    handoff = request.failed(now_ms=5, reason=ERROR, detail="model not found")
    assert timeline_data(handoff) == {
        "slot": "llm",
        "from": "remote",
        "to": "local",
        "reason": "error",
        "detail": "model not found",
        "after_partial": False,
    }
    gave_up = request.failed(now_ms=9, reason=DEADLINE, detail="slow")
    data = timeline_data(gave_up)
    assert data["engines"] == ["remote", "local"] and data["reasons"] == ["error", "deadline"]
    assert data["partial"] is False and "every llm engine failed" in str(data["error"])
