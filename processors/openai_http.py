"""OpenAI's HTTP services in the chained slots, with their rate-limit headers read.

With a key, the chained pipeline's STT, LLM and TTS slots take pipecat's
OpenAI services (Whisper API, chat completions, speech). Every answer they
get carries ``x-ratelimit-*`` headers; the Realtime API's
``rate_limits.updated`` has no equivalent on this path, so the headers are the
only warning before a 429. :class:`RateLimitHeaders` gives the three services
one HTTP client whose response hook hands those headers to listeners (the
call's :class:`~voxpipe.processors.observability.UsageObserver`).

The client honours ``OPENAI_BASE_URL`` as the SDK does, so the same graph can
talk to a compatible endpoint (or, in tests, a stand-in on loopback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx  # the HTTP library the openai package is built on
from loguru import logger
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import VALID_VOICES, OpenAITTSService

from voxpipe.errors import ConfigError

_PREFIX = "x-ratelimit-"

HeaderListener = Callable[[Mapping[str, str]], object]


class RateLimitHeaders:
    """Hands the ``x-ratelimit-*`` headers of every HTTP answer to its listeners.

    A listener must return at once; one that raises is logged and skipped,
    never allowed to fail the request it observed.
    """

    def __init__(self) -> None:
        self._listeners: list[HeaderListener] = []
        self.answers = 0  # answers that carried rate-limit headers

    def add_listener(self, listener: HeaderListener) -> None:
        """Call ``listener(headers)`` with each answer's rate-limit headers (lower-case names)."""
        self._listeners.append(listener)

    def http_client(self) -> httpx.AsyncClient:
        """An HTTP client for ``AsyncOpenAI`` that reports each answer's headers."""
        return DefaultAsyncHttpxClient(event_hooks={"response": [self._on_response]})

    async def _on_response(self, response: httpx.Response) -> None:
        self.observe(response.headers)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pass the rate-limit headers among ``headers`` to the listeners."""
        limits = {k.lower(): v for k, v in headers.items() if k.lower().startswith(_PREFIX)}
        if not limits:
            return
        self.answers += 1
        for listener in self._listeners:
            try:
                listener(limits)
            except Exception as exc:  # an observer's bug must not fail the call
                logger.exception(f"rate-limit header listener {listener!r} failed: {exc}")


class HeaderedOpenAILLMService(OpenAILLMService):
    """pipecat's chat completions service on an HTTP client of our choosing."""

    def __init__(self, *, http_client: httpx.AsyncClient, **kwargs: Any) -> None:
        self._http_client = http_client  # create_client runs inside super().__init__
        super().__init__(**kwargs)

    def create_client(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            organization=organization,
            project=project,
            http_client=self._http_client,
            default_headers=default_headers,
        )


@dataclass(frozen=True)
class OpenAIServices:
    """The three chained slots on OpenAI, sharing one header-reporting client."""

    stt: OpenAISTTService
    llm: HeaderedOpenAILLMService
    tts: OpenAITTSService
    headers: RateLimitHeaders


def speech_voice(voice: str) -> bool:
    """Whether OpenAI's speech service has ``voice`` (every built-in Realtime voice is one)."""
    return voice in VALID_VOICES


def openai_services(api_key: str, *, instructions: str, voice: str | None = None) -> OpenAIServices:
    """OpenAI's Whisper API, chat and speech services for the chained pipeline.

    ``voice``: the speech service's voice (its default, ``alloy``, when None).
    """
    if voice is not None and not speech_voice(voice):
        raise ConfigError(
            f"OpenAI's speech service has no voice {voice!r}",
            hint=f"voices: {', '.join(sorted(VALID_VOICES))}",
        )
    tts_settings = OpenAITTSService.Settings(voice=voice) if voice else None
    headers = RateLimitHeaders()
    client = headers.http_client()
    return OpenAIServices(
        stt=OpenAISTTService(api_key=api_key, http_client=client),
        llm=HeaderedOpenAILLMService(
            api_key=api_key,
            http_client=client,
            settings=OpenAILLMService.Settings(system_instruction=instructions),
        ),
        tts=OpenAITTSService(api_key=api_key, http_client=client, settings=tts_settings),
        headers=headers,
    )
