"""The moderation policy against a real loopback HTTP server standing in for the paid service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from loopback import serving
from openai.types.moderation import Categories

from voxpipe.errors import FatalProviderError, RemoteProtocolError, TransportError
from voxpipe.guardrails.debounce import TIMED_OUT, CheckDue, CheckFailure, GuardrailDebouncer
from voxpipe.guardrails.policy import FailMode, GuardrailPolicy
from voxpipe.processors.guardrails.moderation import ModerationPolicy

API_KEY = "sk-test-moderation"
CATEGORY_NAMES = [f.alias or name for name, f in Categories.model_fields.items()]
# The stand-in flags a category when its trigger word is in the input.
TRIGGERS = {"violence": "bludgeon", "hate": "vermin"}


@dataclass
class ModerationServer:
    """A minimal /v1/moderations with fault injection."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    hang: bool = False
    delay_s: float = 0.0
    empty: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        if self.hang:
            await self.released.wait()  # until the test ends
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": {"message": "boom"}}, status=self.status)
        text = body["input"]
        flags = {c: TRIGGERS.get(c, "\0") in text for c in CATEGORY_NAMES}
        scores = {c: (0.9 if flags[c] else 0.3 if c == "harassment" else 0.01) for c in flags}
        result = {
            "flagged": any(flags.values()),
            "categories": flags,
            "category_scores": scores,
            "category_applied_input_types": {c: ["text"] for c in flags},
        }
        return web.json_response(
            {"id": "modr-1", "model": body["model"], "results": [] if self.empty else [result]}
        )


@pytest.fixture
async def server() -> AsyncIterator[ModerationServer]:
    state = ModerationServer()
    app = web.Application()
    app.router.add_post("/v1/moderations", state.handle)
    async with serving(app) as base:
        state.url = f"{base}/v1"
        yield state
        state.released.set()


def _policy(server: ModerationServer, **kwargs: Any) -> ModerationPolicy:
    return ModerationPolicy(base_url=server.url, api_key=API_KEY, **kwargs)


async def test_clean_text_passes_and_the_whole_text_is_sent(server: ModerationServer) -> None:
    policy = _policy(server)
    assert isinstance(policy, GuardrailPolicy)
    verdict = await policy.check("The weather is lovely today.")
    assert not verdict.tripped
    assert server.requests == [
        {"model": "omni-moderation-latest", "input": "The weather is lovely today."}
    ]


async def test_flagged_text_trips_with_the_category(server: ModerationServer) -> None:
    text = "Then you bludgeon the man."
    verdict = await _policy(server).check(text)
    assert verdict.rule == "moderation:violence"
    assert (verdict.start, verdict.end) == (0, len(text))


async def test_watched_categories_and_score_threshold(server: ModerationServer) -> None:
    only_hate = _policy(server, categories=["hate"])
    assert not (await only_hate.check("Then you bludgeon the man.")).tripped
    assert (await only_hate.check("They are vermin.")).rule == "moderation:hate"
    strict = _policy(server, score_threshold=0.25)
    assert (await strict.check("Hello.")).rule == "moderation:harassment"


async def test_empty_text_is_not_sent(server: ModerationServer) -> None:
    assert not (await _policy(server).check("   ")).tripped
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "empty", "error"),
    [(500, False, RemoteProtocolError), (200, True, RemoteProtocolError)],
)
async def test_server_failures_raise_voxpipe_errors(
    server: ModerationServer, status: int, empty: bool, error: type[Exception]
) -> None:
    server.status, server.empty = status, empty
    with pytest.raises(error):
        await _policy(server).check("hello")


async def test_bad_key_is_fatal(server: ModerationServer) -> None:
    policy = ModerationPolicy(base_url=server.url, api_key="sk-wrong")
    with pytest.raises(FatalProviderError):
        await policy.check("hello")


async def test_unreachable_endpoint_is_a_transport_error() -> None:
    # Bind and close a socket to get a port nobody listens on.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    policy = ModerationPolicy(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY)
    with pytest.raises(TransportError):
        await policy.check("hello")


@pytest.mark.parametrize(("fail", "trips"), [(FailMode.OPEN, False), (FailMode.CLOSED, True)])
async def test_a_hung_endpoint_times_out_into_the_fail_mode(
    server: ModerationServer, fail: FailMode, trips: bool
) -> None:
    server.hang = True
    core = GuardrailDebouncer(every_chars=5, fail=fail)
    check = core.on_delta("r1", "hello there")
    assert check is not None
    policy = _policy(server)
    result: object
    try:
        result = await asyncio.wait_for(policy.check(check.text), timeout=0.2)
    except TimeoutError:
        result = TIMED_OUT
    judgement = core.judge(check, policy.name, result)
    assert judgement.failure is CheckFailure.TIMED_OUT
    assert judgement.verdict.tripped is trips


async def test_fast_text_and_a_slow_endpoint_keep_one_request_in_flight(
    server: ModerationServer,
) -> None:
    """The driving loop of the debounce core's docstring, against the real endpoint."""
    server.delay_s = 0.3
    core = GuardrailDebouncer(every_chars=100, fail=FailMode.CLOSED)
    policy = _policy(server)
    judgements = []

    async def run(check: CheckDue | None) -> None:
        while check is not None:
            try:
                result: object = await asyncio.wait_for(policy.check(check.text), 1.0)
            except TimeoutError:
                result = TIMED_OUT
            judgement = core.judge(check, policy.name, result)
            judgements.append(judgement)
            check = judgement.follow_up

    tasks = []
    words = ["All is calm here. "] * 60 + ["Now bludgeon him."]
    for delta in [*words, None]:  # None: the response ends
        check = core.on_delta("r1", delta) if delta else core.on_response_done("r1")
        if check is not None and core.start(check, policy.name):
            tasks.append(asyncio.create_task(run(check)))
        await asyncio.sleep(0)  # text arrives far faster than the endpoint answers
    await asyncio.gather(*tasks)

    assert core.checks == 11  # ten every 100 characters, then the final one
    assert len(server.requests) == 2  # the first check, then only the final text
    assert server.requests[-1]["input"] == "".join(words)
    assert judgements[-1].verdict.rule == "moderation:violence"
