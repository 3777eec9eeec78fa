"""Property-based fuzzing of the live realtime server (issue 19).

Inputs are generated from the ``openai.types.realtime`` client events (every type,
with valid seeds mutated at a random path) and raw: wrong types, lone surrogates,
deep nesting, huge and negative numbers, NaN, text that is not JSON, binary frames.
For every input: the server answers with an ``error`` event or goes on as the
protocol says, the same session still answers a probe, the server process is
alive, and nothing is logged at ERROR (no traceback).

CI runs a fixed, bounded set (``derandomize``: the same examples every run, so a
green main stays green); ``make fuzz`` runs ``VOXPIPE_FUZZ_EXAMPLES`` (default
100,000) random ones and prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_realtime_server_support import API_KEY, RawClient

from voxpipe.realtime_server.parsing import CLIENT_EVENT_CLASSES
from voxpipe.transports.realtime_server import (
    RunningServer,
    ScriptedBrain,
    ServerConfig,
    running_realtime_server,
)

T = TypeVar("T")

EXAMPLES = int(os.environ.get("VOXPIPE_FUZZ_EXAMPLES", "0")) or None
CI_EXAMPLES = 400
PROGRESS_EVERY = 1_000
FUZZ_SESSION_S = 7 * 24 * 3600.0

# One valid event of each GA client type: mutations start from these.
SEEDS: list[dict[str, Any]] = [
    {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}},
    {"type": "input_audio_buffer.append", "audio": "AAAAAAAAAAA="},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
    },
    {"type": "conversation.item.retrieve", "item_id": "item_1"},
    {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 10,
    },
    {"type": "conversation.item.delete", "item_id": "item_1"},
    {"type": "response.create", "response": {"output_modalities": ["text"]}},
    {"type": "response.cancel"},
    {"type": "output_audio_buffer.clear"},
]
assert {s["type"] for s in SEEDS} == set(CLIENT_EVENT_CLASSES)

SURROGATE_TEXT = st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "é" * 50])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    SURROGATE_TEXT,
    st.sampled_from(["", "inf", "-1", "audio", "text", "item_1", "server_vad"]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid seed with one path replaced by any JSON value, or a key added."""
    event = json.loads(json.dumps(draw(st.sampled_from(SEEDS))))
    path = draw(st.sampled_from([p for p in _paths(event) if p and p != ("type",)] or [()]))
    value = draw(JSON_VALUES)
    if not path or draw(st.booleans()):
        event[draw(st.text(min_size=1, max_size=10))] = value
        return event
    parent: Any = event
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return event


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A known or unknown type with arbitrary fields."""
    kind = draw(st.one_of(st.sampled_from(sorted(CLIENT_EVENT_CLASSES)), st.text(max_size=20)))
    fields = draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5))
    return {**fields, "type": kind}


def _deep(depth: int) -> str:
    return '{"type": "session.update", "session": ' + "[" * depth + "]" * depth + "}"


RAW_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            _deep(50),
            _deep(5_000),
            '{"type": "session.update", "session": {"type": "realtime", "audio": '
            '{"output": {"speed": NaN}}}}',
            '{"type": "response.create", "response": {"max_output_tokens": -1e308}}',
            '{"type": "input_audio_buffer.append", "audio": "' + "A" * 100_001 + '"}',
            '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
            '"content": [{"type": "input_text", "text": "\\ud800"}]}}',
            '{"type": "\\ud800"}',
            "[]",
            "null",
            "1e999999",
        ]
    ),
)

INPUTS = st.one_of(
    mutated_events().map(lambda e: ("text", _dumps(e))),
    event_like().map(lambda e: ("text", _dumps(e))),
    RAW_TEXT.map(lambda t: ("text", t)),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
)


def _dumps(event: dict[str, Any]) -> str:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as a client library would send them.
    return json.dumps(event)


class Harness:
    """A live server and one client session on a loop in another thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.logged: list[str] = []
        self.inputs = 0
        self.errors = 0
        self.started = time.monotonic()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def open(self) -> None:
        from loguru import logger

        self._sink = logger.add(lambda m: self.logged.append(str(m)), level="ERROR")
        brain = ScriptedBrain(["Fine."], pace=0)
        # One session takes every input, so its cap must outlast the run: with the default
        # (OpenAI's 60 minutes) a make fuzz run at 13 inputs/s ended at 48,157 inputs
        # when the server expired the session, as it should.
        config = ServerConfig(api_key=API_KEY, session_max_seconds=FUZZ_SESSION_S)
        self._server_cm = running_realtime_server(config=config, brain=brain)
        self.server: RunningServer = await self._server_cm.__aenter__()
        self.http = aiohttp.ClientSession()
        await self.connect()

    async def connect(self) -> None:
        ws = await self.http.ws_connect(
            f"{self.server.realtime_url}?model=gpt-realtime",
            headers={"Authorization": f"Bearer {API_KEY}"},
            max_msg_size=0,
        )
        self.client = RawClient(ws)
        assert (await self.client.next())["type"] == "session.created"

    async def close(self) -> None:
        from loguru import logger

        await self.client.ws.close()
        await self.http.close()
        await self._server_cm.__aexit__(None, None, None)
        logger.remove(self._sink)

    async def send_and_probe(self, kind: str, payload: str | bytes) -> None:
        """Send one input, then a probe the session must answer (events between are read)."""
        self.inputs += 1
        if kind == "binary":
            assert isinstance(payload, bytes)
            await self.client.ws.send_bytes(payload)
        else:
            assert isinstance(payload, str)
            await self.client.ws.send_str(payload)
        probe = f"probe_{self.inputs}"
        await self.client.send({"type": "input_audio_buffer.clear", "event_id": probe})
        while True:
            event = await self.client.next(30)
            if event["type"] == "error":
                self.errors += 1
                assert event["error"]["message"], event
                assert event["error"].get("event_id") != probe, event  # the probe itself is valid
            if event["type"] == "input_audio_buffer.cleared":
                break
        # A response the input started must not outlive the example (the next would be refused).
        await self.client.send({"type": "response.cancel", "event_id": f"cancel_{self.inputs}"})
        self.client.seen.clear()
        if EXAMPLES and self.inputs % PROGRESS_EVERY == 0:
            self.progress()

    def progress(self) -> None:
        """A long run says how far it got, so a run cut short still has its figures."""
        elapsed = time.monotonic() - self.started
        print(
            f"fuzz progress: {self.inputs} inputs, {self.errors} error events, "
            f"{elapsed:.0f} s, {self.inputs / elapsed:.1f} inputs/s, "
            f"load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S')}",
            flush=True,
        )


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    h.run(h.open())
    yield h
    h.run(h.close())
    h.loop.call_soon_threadsafe(h.loop.stop)
    h.thread.join(5)


@settings(
    max_examples=EXAMPLES or CI_EXAMPLES,
    derandomize=EXAMPLES is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(sent=INPUTS)
def test_every_input_gets_an_error_or_an_answer_and_the_session_goes_on(
    harness: Harness, sent: tuple[str, str | bytes]
) -> None:
    kind, payload = sent
    harness.run(harness.send_and_probe(kind, payload))
    assert harness.server.server.live_sessions, "the session ended"
    assert not harness.logged, harness.logged[:1]


def test_fuzz_figures(harness: Harness) -> None:
    """Runs after the fuzzing (same module): say what was covered; fail if nothing was."""
    assert harness.inputs >= min(EXAMPLES or CI_EXAMPLES, CI_EXAMPLES)
    assert harness.errors > 0  # the generators do produce bad input
    elapsed = time.monotonic() - harness.started
    print(
        f"\nfuzz: {harness.inputs} inputs, {harness.errors} error events, "
        f"{len(harness.server.server.live_sessions)} session alive, "
        f"{elapsed:.0f} s ({harness.inputs / elapsed:.1f} inputs/s), "
        f"load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S')}"
    )
