"""A reply generated before it was asked for, kept until the turn decides its fate.

On the chained path the caller's transcript exists a few hundred milliseconds
before the end of the turn is decided (the VAD's stop, then the aggregator's
silence timeout). The local LLM spends that wait generating the reply the
transcript would get. When the turn ends with the same prompt, the reply's
chunks are replayed (those already made at once, the rest as they come); when
the caller said more, the speculation is cancelled and its thread stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_SPACES = re.compile(r"\s+")


def prompt_key(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """What makes two prompts the same reply: the messages and tools, whitespace aside."""

    def squeeze(value: Any) -> Any:
        if isinstance(value, str):
            return _SPACES.sub(" ", value).strip()
        if isinstance(value, list):
            return [squeeze(v) for v in value]
        if isinstance(value, dict):
            return {k: squeeze(v) for k, v in value.items()}
        return value

    return json.dumps([squeeze(messages), squeeze(tools)], sort_keys=True, default=str)


@dataclass
class SpeculationStats:
    """How speculation went over a call."""

    started: int = 0
    used: int = 0  # the turn ended with the speculated prompt: its reply was replayed
    dropped: int = 0  # the caller went on, or the prompt differed: cancelled


class Speculation(Generic[T]):
    """One speculative reply: a task collecting chunks, which any number of readers replay."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.chunks: list[T] = []
        self.finished = False
        self.error: BaseException | None = None
        self._grew = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, key: str, stream: AsyncIterator[T]) -> Speculation[T]:
        """Begin collecting ``stream`` in a task of its own."""
        speculation: Speculation[T] = cls(key)
        speculation._task = asyncio.get_running_loop().create_task(speculation._collect(stream))
        return speculation

    async def _collect(self, stream: AsyncIterator[T]) -> None:
        try:
            async for chunk in stream:
                self.chunks.append(chunk)
                self._grew.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # re-raised to whoever replays it
            self.error = exc
        finally:
            self.finished = True
            self._grew.set()

    async def replay(self, *, cancel_on_exit: bool = True) -> AsyncGenerator[T, None]:
        """Every chunk in order, waiting for the ones not made yet.

        Leaving early (the reply was interrupted) cancels the generation, unless
        ``cancel_on_exit`` is False (a reader that only looks ahead).
        """
        sent = 0
        try:
            while True:
                while sent < len(self.chunks):
                    yield self.chunks[sent]
                    sent += 1
                if self.finished:
                    break
                self._grew.clear()
                if sent == len(self.chunks) and not self.finished:
                    await self._grew.wait()
            if self.error is not None:
                raise self.error
        finally:
            if cancel_on_exit and not self.finished:
                await self.cancel()

    async def cancel(self) -> None:
        """Stop the generation and wait until its thread has let go of the model."""
        if self._task is None or self._task.done():
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
