"""A chained call whose first engine in every slot is broken still answers the caller.

agent.toml lists, per slot, a first engine that fails for real (a Whisper
model directory, a GGUF file and a Piper voice that do not exist) and the
working local engine behind it. The caller's question must be heard, answered
and spoken as if nothing were wrong, and the timeline, the transcript and the
metrics must show each slot's handoff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hearing import assert_heard, bot_speech
from metric_samples import sample

from voxpipe.engines import LocalEngines
from voxpipe.evaluation import word_error_rate
from voxpipe.guardrails.config import load_agent_file
from voxpipe.observability.metrics import VoxpipeMetrics
from voxpipe.pipelines.simulated_call import CallSpec, Mode, simulate_call
from voxpipe.transports.file import FileTransport

pytestmark = pytest.mark.models

QUESTION = "What is the weather like in London today?"

AGENT = """
instructions = "You are a phone assistant. Answer in one short sentence."

[chained]
stt = [{{engine = "whisper", model = "{gone}/whisper", name = "whisper-gone"}}, "whisper"]
llm = [{{engine = "llama", model = "{gone}/model.gguf", name = "llama-gone"}}, "llama"]
tts = [{{engine = "piper", model = "{gone}/voice.onnx", name = "piper-gone"}}, "piper"]
# The broken engines fail at once; the working ones, last, have no deadline.
"""


async def test_a_call_goes_on_when_the_first_engine_of_every_slot_fails(
    make_speech: Any, tmp_path: Path, loaded_engines: LocalEngines
) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENT.format(gone=tmp_path / "gone"))
    config = load_agent_file(agent)
    assert config.instructions is not None
    metrics = VoxpipeMetrics(environment="test", project="slot-fallback")
    spec = CallSpec(
        make_speech(QUESTION, lead_ms=500, tail_ms=4000),
        tmp_path / "call",
        mode=Mode.CHAINED,
        instructions=config.instructions,
        slots=config.chained,
        metrics=metrics,
    )
    result = await simulate_call(spec)

    # The caller was heard and answered, and heard the whole answer.
    (turn,) = result.turns
    assert word_error_rate(QUESTION, turn.heard) <= 1 / 8, turn.heard
    assert len(turn.replied.split()) >= 3, turn.replied
    transport = result.graph.transport
    assert isinstance(transport, FileTransport)
    assert_heard(turn.replied, loaded_engines.stt.transcribe(bot_speech(transport), 24_000))

    # Each slot handed the request from its broken engine to the working one.
    lines = [json.loads(x) for x in (spec.out_dir / "timeline.jsonl").read_text().splitlines()]
    handoffs = {(x["slot"], x["from"], x["to"]) for x in lines if x["type"] == "slot_handoff"}
    assert handoffs == {
        ("stt", "whisper-gone", "whisper"),
        ("llm", "llama-gone", "llama"),
        ("tts", "piper-gone", "piper"),
    }
    details = {x["slot"]: x["detail"] for x in lines if x["type"] == "slot_handoff"}
    assert "gone/whisper" in details["stt"] and "model.bin not found" in details["stt"]
    assert "gone/model.gguf" in details["llm"]
    assert "gone/voice.onnx" in details["tts"]
    assert all(x["reason"] == "error" for x in lines if x["type"] == "slot_handoff")
    # No request went unserved and nothing was fatal. pipecat's own non-fatal "TTS
    # context ... completed with no audio" was seen once (fc10, at 29.7 s, in a call whose
    # answer was heard in full); it is not a slot's failure. Cause not yet found.
    assert not [x for x in lines if x["type"] == "slot_failed"]
    assert not [x for x in lines if x["type"] == "error" and x.get("fatal")]

    # The report lists them too, per slot, and its page shows them.
    report = json.loads((spec.out_dir / "report.json").read_text())
    assert {(h["slot"], h["from"], h["to"]) for h in report["slots"]["handoffs"]} == handoffs
    assert report["slots"]["failures"] == []
    page = (spec.out_dir / "report.html").read_text()
    assert "Engine handoffs (chained slots)" in page and "llama-gone" in page

    # The handoffs are counted, by slot, engine and reason.
    rendered = metrics.render().decode()
    for slot, gone, working in sorted(handoffs):
        count = sample(
            rendered,
            "voxpipe_slot_handoffs_total",
            slot=slot,
            from_engine=gone,
            to_engine=working,
            reason="error",
        )
        assert count is not None and count >= 1, (slot, rendered)
