"""``voxpipe serve --fallback chained``: a WebRTC call moves to the chained brain and back.

Real parts on loopback: the serve app, aiortc on both ends, voxpipe's
Realtime server with fault injection (scripted brain), the chained brain's
local models (Whisper, Qwen, Piper). The call's fallback comes from the
serve command's own reading of ``--fallback chained`` and an agent file's
``[fallback]`` table. Every wait is on the call's state, with deadlines a
loaded 2-core machine keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from webrtc_peer import calling

from voxpipe.call.failover import Brain, SwitchReason
from voxpipe.call.state import CallState
from voxpipe.cli.serve import _fallback
from voxpipe.engines import LocalEngines
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.processors.failover import FailoverBrain
from voxpipe.transports.realtime_server import (
    ScriptedBrain,
    SendError,
    ServerConfig,
    running_realtime_server,
)
from voxpipe.transports.webrtc.app import ServeConfig, running_serve

pytestmark = pytest.mark.models

KEY = "serve-failover-key"
REPLY = "Realtime desk here, happy to help."
AGENT = """
[fallback]
brain = "chained"
first_audio_deadline_ms = 30000
stall_ms = 30000
cooldown_ms = 15000
probe_interval_ms = 1000
"""
# The cooldown outlasts the question: at load 16 the caller's words took seconds to reach
# the chained brain's VAD over WebRTC, and a 3 s cooldown let the call switch back first
# (the chained brain had heard nothing yet: to it, the call was between turns).


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the live call's state
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def _bot_captions(messages: list[Any]) -> list[str]:
    decoded = [json.loads(m) for m in messages if isinstance(m, str) and m.startswith("{")]
    return [
        m["text"]
        for m in decoded
        if m.get("type") == "caption" and m.get("role") == "bot" and m.get("final")
    ]


async def test_voxpipe_serve_with_a_fallback_moves_a_webrtc_call_to_chained_and_back(
    make_speech: Any, tmp_path: Path, loaded_engines: LocalEngines
) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENT)
    fallback = _fallback(argparse.Namespace(fallback="chained", config=agent))
    assert fallback is not None and fallback.cooldown_ms == 15_000
    hello = make_speech("Hello, I have a question.", lead_ms=500, tail_ms=500)
    question = make_speech("What is the capital of France?", lead_ms=300, tail_ms=500)
    thanks = make_speech("Thank you, that is all.", lead_ms=300, tail_ms=500)
    config = ServerConfig(api_key=KEY, fault_injection=True)
    async with running_realtime_server(config=config, brain=ScriptedBrain([REPLY])) as srv:
        spec = LiveCallSpec(
            server_url=srv.realtime_url,
            api_key=KEY,
            record_dir=tmp_path / "calls",
            fallback=fallback,
        )
        async with (
            running_serve(ServeConfig(call=spec)) as serve,
            calling(serve.url, hello, live_mic=True) as caller,
        ):
            call_id = caller.answer["call_id"]
            graph = serve.app.calls[call_id].call.graph
            brain = graph.services["failover"]
            assert isinstance(brain, FailoverBrain)
            rt = brain.realtime
            await until(lambda: REPLY in _bot_captions(caller.messages), 90, "the realtime reply")
            await until(lambda: rt.machine.state is CallState.LISTENING, 60, "the reply heard")
            srv.arm(SendError(error_type="insufficient_quota", code="insufficient_quota"))
            await until(lambda: bool(brain.switched), 30, "the switch to chained")
            heard_before = caller.heard.loud_ms()
            assert caller.mic is not None
            caller.mic.say(question)
            await until(
                lambda: any(m["content"] not in ("", REPLY) for m in _assistant(graph)),
                150,
                "the chained brain's answer",
            )
            # The caller hears it: Piper's voice over the same WebRTC track.
            await until(lambda: caller.heard.loud_ms() > heard_before + 800, 60, "its audio")
            await until(lambda: len(brain.switched) >= 2, 120, "the switch back")
            captions = len(_bot_captions(caller.messages))
            caller.mic.say(thanks)
            await until(
                lambda: REPLY in _bot_captions(caller.messages)[captions:],
                90,
                "the realtime brain's next reply",
            )
        record = tmp_path / "calls" / call_id
        await until(lambda: (record / "report.json").exists(), 60, "the call's report")

    away, back = brain.switched
    assert (away.previous, away.current, away.reason) == (
        Brain.REALTIME,
        Brain.CHAINED,
        SwitchReason.QUOTA_EXHAUSTED,
    )
    assert (back.current, back.reason) == (Brain.REALTIME, SwitchReason.REALTIME_HEALTHY)
    assert [p.healthy for p in brain.probes[:2]] == [True, True]
    lines = [json.loads(x) for x in (record / "timeline.jsonl").read_text().splitlines()]
    switches = [x for x in lines if x["type"] == "brain_switched"]
    assert [(x["from"], x["to"]) for x in switches] == [
        ("realtime", "chained"),
        ("chained", "realtime"),
    ]
    report = json.loads((record / "report.json").read_text())
    assert set(report["brains"]["time_ms"]) == {"realtime", "chained"}
    print(
        f"serve failover at load {os.getloadavg()[0]:.1f}: back after "
        f"{brain.policy.switches[1].at_ms - brain.policy.switches[0].at_ms} ms"
    )


def _assistant(graph: Any) -> list[dict[str, str]]:
    return [
        {"content": str(m.get("content") or "")}
        for m in graph.context.get_messages()
        if m.get("role") == "assistant"
    ]
