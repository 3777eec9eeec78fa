"""Run a blocking generator in a worker thread and consume it from asyncio.

The model engines are blocking generators (tokens, audio chunks). This is the
one bridge every driver uses: the generator runs in the default executor, its
items reach the event loop through a queue, an exception in the thread is
re-raised where the items are awaited, and leaving the ``async for`` early
(an interruption, a cancelled task) sets ``stop`` so the thread ends at its
next item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


class _Box(Generic[T]):
    __slots__ = ("item",)

    def __init__(self, item: T) -> None:
        self.item = item


async def iterate_in_thread(
    produce: Callable[[threading.Event], Iterator[T]],
) -> AsyncGenerator[T, None]:
    """Yield what ``produce(stop)`` yields, running it in a worker thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce(stop):
                loop.call_soon_threadsafe(queue.put_nowait, _Box(item))
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the awaiting side, re-raised there
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    worker = loop.run_in_executor(None, run)
    try:
        while (message := await queue.get()) is not _DONE:
            if isinstance(message, _Failed):
                raise message.error
            assert isinstance(message, _Box)
            yield message.item
    finally:
        stop.set()  # done or abandoned: the thread stops at its next item
        await asyncio.shield(worker)
