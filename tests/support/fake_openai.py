"""A loopback stand-in for OpenAI's paid HTTP API: transcriptions, chat, speech.

It answers as the real endpoints do, in their wire formats, and sends the
``x-ratelimit-*`` headers on every answer. Its answers come from voxpipe's
local engines: the Whisper API is faster-whisper on the uploaded WAV, speech
is Piper resampled to the 24 kHz PCM the API streams. The chat reply is a
fixed line, so the test knows what the bot should say.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from aiohttp import web
from loopback import serving

from voxpipe.engines import TTSEngineKind, shared_stt, shared_tts

API_KEY = "sk-test-chained"
REPLY = "We open at nine on Saturday."
MODEL = "gpt-4.1"


@dataclass
class Limits:
    """The account's limits as the stand-in reports them; every answer spends one request."""

    requests_limit: int = 100
    requests_remaining: int = 12
    tokens_limit: int = 30_000
    tokens_remaining: int = 29_000

    def spend(self, tokens: int) -> dict[str, str]:
        self.requests_remaining = max(self.requests_remaining - 1, 0)
        self.tokens_remaining = max(self.tokens_remaining - tokens, 0)
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(self.requests_remaining),
            "x-ratelimit-reset-requests": "8.64s",
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(self.tokens_remaining),
            "x-ratelimit-reset-tokens": "6m0s",
        }


# The speech endpoint's built-in voices (OpenAI's text-to-speech guide, gpt-4o-mini-tts).
SPEECH_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
    | {"verse", "marin", "cedar"}
)


@dataclass
class FakeOpenAI:
    """The stand-in's state: what it was asked and which headers it sent."""

    url: str = ""
    limits: Limits = field(default_factory=Limits)
    sent_headers: list[dict[str, str]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    # When each chat was asked (time.monotonic()), beside it in ``chats``.
    chat_times: list[float] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    voices: list[str] = field(default_factory=list)  # each speech request's voice, in order
    unauthorised: int = 0
    # Faults of a provider in trouble: a chat that waits this long before answering,
    # or one that drops the connection after streaming this many words.
    chat_stall_secs: float = 0.0
    chat_cut_after_words: int | None = None

    def _headers(self, tokens: int) -> dict[str, str]:
        headers = self.limits.spend(tokens)
        self.sent_headers.append(headers)
        return headers

    def _authorised(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bearer {API_KEY}"
        self.unauthorised += 0 if ok else 1
        return ok

    async def transcriptions(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _unauthorised()
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        audio, rate = sf.read(io.BytesIO(upload.file.read()), dtype="int16")
        engine = await shared_stt()
        text = await asyncio.to_thread(engine.transcribe, np.asarray(audio).tobytes(), rate)
        self.transcripts.append(text)
        return web.json_response({"text": text}, headers=self._headers(len(text.split())))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return _unauthorised()
        body = await request.json()
        self.chats.append(body)
        self.chat_times.append(time.monotonic())
        if self.chat_stall_secs:
            await asyncio.sleep(self.chat_stall_secs)
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError  # the client gave up waiting: nobody to answer
        words = REPLY.split(" ")
        usage = {
            "prompt_tokens": 40,
            "completion_tokens": len(words),
            "total_tokens": 40 + len(words),
        }
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **self._headers(usage["total_tokens"])}
        )
        await response.prepare(request)
        created = int(time.time())
        for i, word in enumerate(words):
            if i == self.chat_cut_after_words and request.transport is not None:
                request.transport.close()  # mid-stream: the body never completes
                return response
            delta: dict[str, Any] = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            await _event(response, _chunk(created, [_choice(delta, None)]))
        await _event(response, _chunk(created, [_choice({}, "stop")]))
        if body.get("stream_options", {}).get("include_usage"):
            await _event(response, _chunk(created, [], usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def speech(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return _unauthorised()
        body = await request.json()
        text = str(body["input"])
        voice = str(body.get("voice"))
        if voice not in SPEECH_VOICES:  # as OpenAI: a 400 naming the parameter
            return web.json_response(
                {"error": {"message": f"Invalid voice {voice!r}", "param": "voice"}}, status=400
            )
        self.spoken.append(text)
        self.voices.append(voice)
        if body.get("response_format") != "pcm":
            return web.json_response({"error": {"message": "only pcm here"}}, status=400)
        engine = await shared_tts(TTSEngineKind.PIPER)
        pcm = b"".join(await asyncio.to_thread(lambda: list(engine.synthesize(text))))
        samples = np.frombuffer(pcm, dtype=np.int16)
        at_24k = soxr.resample(samples, engine.sample_rate, 24_000).astype(np.int16).tobytes()
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", **self._headers(len(text))}
        )
        await response.prepare(request)
        for start in range(0, len(at_24k), 4800):
            await response.write(at_24k[start : start + 4800])
        await response.write_eof()
        return response

    def chats_told(self) -> str:
        """Each chat request: when it came (seconds after the first) and its messages.

        For assertion messages: a test that expected one chat and got two says
        what the second one asked.
        """
        first = self.chat_times[0] if self.chat_times else 0.0
        lines = [f"{len(self.chats)} chat request(s):"]
        for at, body in zip(self.chat_times, self.chats, strict=True):
            asked = [(m.get("role"), m.get("content")) for m in body.get("messages", [])]
            lines.append(f"  +{at - first:.2f} s: {asked}")
        return "\n".join(lines)


def _unauthorised() -> web.Response:
    error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
    return web.json_response({"error": {**error, "code": "invalid_api_key"}}, status=401)


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}


def _chunk(
    created: int, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": choices,
        "usage": usage,
    }


async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve the stand-in on a free loopback port; ``url`` is its ``/v1`` base."""
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", fake.transcriptions)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/audio/speech", fake.speech)
    async with serving(app) as base:
        fake.url = f"{base}/v1"
        yield fake
