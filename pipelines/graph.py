"""The one graph shape every mode shares.

    transport.input -> [echo guard] -> [pre] -> user aggregator -> BRAIN -> [guardrail tap]
        -> [voice] -> transport.output -> assistant aggregator

The chained brain is the LLM (STT sits in ``pre``, TTS in ``voice``, so the tap
sees text before it is spoken); the realtime brain is the speech-to-speech
service with no ``pre`` or ``voice``. The echo guard comes before any turn
detection (the server's VAD or a local one), so the bot's own voice picked up
by the caller's microphone is silence to it. Anything that fits a slot is a
pipecat ``FrameProcessor``. The pipeline is an :class:`ObservedPipeline`, so
voxpipe's instruments run inside its pushes rather than behind pipecat's
observer queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport

from voxpipe.processors.observability.inline import ObservedPipeline

if TYPE_CHECKING:
    from voxpipe.processors.openai_http import RateLimitHeaders


@dataclass
class VoiceGraph:
    """A built graph and the parts an application or a test reaches for."""

    pipeline: ObservedPipeline
    context: LLMContext
    transport: BaseTransport
    user_aggregator: LLMUserAggregator
    assistant_aggregator: LLMAssistantAggregator
    brain: FrameProcessor
    tap: FrameProcessor | None = None
    echo_guard: FrameProcessor | None = None
    services: dict[str, FrameProcessor] = field(default_factory=dict)
    # The OpenAI HTTP services' rate-limit headers, when the chained slots use them.
    rate_limit_headers: RateLimitHeaders | None = None


def assemble(
    transport: BaseTransport,
    *,
    context: LLMContext,
    user_aggregator: LLMUserAggregator,
    assistant_aggregator: LLMAssistantAggregator,
    brain: FrameProcessor,
    pre: Sequence[FrameProcessor] = (),
    tap: FrameProcessor | None = None,
    voice: Sequence[FrameProcessor] = (),
    echo_guard: FrameProcessor | None = None,
    services: dict[str, FrameProcessor] | None = None,
    rate_limit_headers: RateLimitHeaders | None = None,
) -> VoiceGraph:
    """Put the slots in the shared order and return the graph."""
    guard = [echo_guard] if echo_guard is not None else []
    stages: list[FrameProcessor] = [transport.input(), *guard, *pre, user_aggregator, brain]
    if tap is not None:
        stages.append(tap)
    stages += [*voice, transport.output(), assistant_aggregator]
    return VoiceGraph(
        pipeline=ObservedPipeline(stages),
        context=context,
        transport=transport,
        user_aggregator=user_aggregator,
        assistant_aggregator=assistant_aggregator,
        brain=brain,
        tap=tap,
        echo_guard=echo_guard,
        services=dict(services or {}),
        rate_limit_headers=rate_limit_headers,
    )
