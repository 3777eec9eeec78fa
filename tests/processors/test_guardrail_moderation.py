"""The tap driving the moderation policy over real HTTP (a loopback stand-in for the paid API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from loopback import serving
from openai.types.moderation import Categories
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.tests.utils import run_test

from voxpipe.frames import GuardrailTrippedFrame
from voxpipe.guardrails import CheckFailure, FailMode
from voxpipe.processors.guardrails.moderation import ModerationPolicy
from voxpipe.processors.guardrails.tap import GuardrailTap

KEY = "sk-test-tap"
NAMES = [f.alias or name for name, f in Categories.model_fields.items()]
SAFE = "Let's keep this friendly."


class Moderations:
    """POST /v1/moderations: flags "violence" when the input says "bludgeon"."""

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.inputs.append(body["input"])
        if self.status != 200:
            return web.json_response({"error": {"message": "down"}}, status=self.status)
        flags = {name: name == "violence" and "bludgeon" in body["input"] for name in NAMES}
        result = {
            "flagged": any(flags.values()),
            "categories": flags,
            "category_scores": {name: 0.95 if flags[name] else 0.01 for name in NAMES},
            "category_applied_input_types": {name: ["text"] for name in NAMES},
        }
        return web.json_response({"id": "modr-1", "model": body["model"], "results": [result]})


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Moderations, str]]:
    state = Moderations()
    app = web.Application()
    app.router.add_post("/v1/moderations", state.handle)
    async with serving(app) as base:
        yield state, f"{base}/v1"


def response(*deltas: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *map(LLMTextFrame, deltas), LLMFullResponseEndFrame()]


def of(frames: Any, kind: type[Frame]) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


async def test_a_flagged_response_is_stopped_and_replaced(
    endpoint: tuple[Moderations, str],
) -> None:
    state, url = endpoint
    tap = GuardrailTap([ModerationPolicy(base_url=url, api_key=KEY)], safe_line=SAFE, timeout_s=5)
    down, up = await run_test(tap, frames_to_send=response("I will ", "bludgeon ", "you."))
    (trip,) = of(down, GuardrailTrippedFrame)
    assert (trip.policy, trip.rule, trip.failure) == ("moderation", "moderation:violence", None)
    assert of(up, InterruptionFrame)
    assert [f.text for f in of(down, TTSSpeakFrame)] == [SAFE]
    assert state.inputs[-1] == "I will bludgeon you."  # the whole response, at its end


@pytest.mark.parametrize("fail", list(FailMode))
async def test_an_endpoint_failure_follows_the_fail_mode(
    endpoint: tuple[Moderations, str], fail: FailMode
) -> None:
    state, url = endpoint
    state.status = 500
    policy = ModerationPolicy(base_url=url, api_key=KEY)
    tap = GuardrailTap([policy], fail=fail, safe_line=SAFE, timeout_s=5)
    down, _ = await run_test(tap, frames_to_send=response("A perfectly ", "nice reply."))
    assert tap.core.failures[CheckFailure.RAISED] == 1
    assert bool(of(down, GuardrailTrippedFrame)) is (fail is FailMode.CLOSED)
