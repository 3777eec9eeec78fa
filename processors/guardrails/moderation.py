"""Adapter for OpenAI's moderation endpoint as a guardrail policy.

It checks the whole response text so far with ``moderations.create`` through
the ``openai`` :class:`~openai.AsyncOpenAI` client; ``base_url`` points it
at any compatible service. Retries are off: the tap bounds each check by a
timeout, and a retry would only spend that budget. Provider errors are mapped
onto voxpipe's error tree; the tap's debounce core turns them into the
configured fail-open or fail-closed outcome.
"""

from __future__ import annotations

from collections.abc import Iterable

import openai
from openai import AsyncOpenAI
from openai.types import Moderation

from voxpipe.errors import (
    ConfigError,
    FatalProviderError,
    RemoteProtocolError,
    TransportError,
)
from voxpipe.guardrails.policy import ALLOWED, Verdict

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


class ModerationPolicy:
    """Trips when the moderation endpoint flags the text (or scores a watched category high).

    ``categories`` limits the check to those names (as the API spells them,
    e.g. ``"violence"``, ``"self-harm/intent"``); ``score_threshold`` trips on a
    category score at or above it even when the endpoint did not flag it.
    """

    def __init__(
        self,
        client: AsyncOpenAI | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = DEFAULT_MODERATION_MODEL,
        categories: Iterable[str] | None = None,
        score_threshold: float | None = None,
        name: str = "moderation",
    ) -> None:
        if client is None:
            try:
                client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
            except openai.OpenAIError as exc:
                raise ConfigError(f"moderation policy needs an API key: {exc}") from None
        self._client = client
        self._model = model
        self._categories = frozenset(categories) if categories is not None else None
        self._threshold = score_threshold
        self._name = name

    @property
    def name(self) -> str:
        """Policy name for logs and metrics."""
        return self._name

    async def check(self, text: str) -> Verdict:
        """Ask the endpoint about ``text``; a trip spans the whole text checked."""
        if not text.strip():
            return ALLOWED
        try:
            response = await self._client.moderations.create(model=self._model, input=text)
        except openai.APIConnectionError as exc:  # includes timeouts
            raise TransportError(f"moderation endpoint unreachable: {exc}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise FatalProviderError(
                f"moderation endpoint refused the key: {exc.message}", code=str(exc.status_code)
            ) from exc
        except openai.APIStatusError as exc:
            raise RemoteProtocolError(
                f"moderation endpoint failed: {exc.message}", code=str(exc.status_code)
            ) from exc
        if not response.results:
            raise RemoteProtocolError("moderation endpoint answered with no results")
        category = self._tripped_category(response.results[0])
        return (
            ALLOWED if category is None else Verdict.trip(f"{self._name}:{category}", 0, len(text))
        )

    def _tripped_category(self, result: Moderation) -> str | None:
        flagged = result.categories.model_dump(by_alias=True)
        scores = result.category_scores.model_dump(by_alias=True)
        for category, is_flagged in flagged.items():
            if self._categories is not None and category not in self._categories:
                continue
            score = scores.get(category)
            high = self._threshold is not None and score is not None and score >= self._threshold
            if is_flagged or high:
                return str(category)
        if result.flagged and self._categories is None:
            return "flagged"  # flagged, but under a category this client does not know
        return None
