"""The thread bridge the engine drivers use: order kept, errors re-raised, early exit stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from voxpipe.engines.in_thread import iterate_in_thread


async def test_items_arrive_in_order_and_off_the_loop_thread() -> None:
    threads: set[int] = set()

    def produce(_stop: threading.Event) -> Iterator[int]:
        for i in range(5):
            threads.add(threading.get_ident())
            yield i

    assert [i async for i in iterate_in_thread(produce)] == [0, 1, 2, 3, 4]
    assert threading.get_ident() not in threads


async def test_an_error_in_the_thread_is_raised_where_items_are_awaited() -> None:
    def produce(_stop: threading.Event) -> Iterator[int]:
        yield 1
        raise ValueError("model failed")

    seen = []
    with pytest.raises(ValueError, match="model failed"):
        async for item in iterate_in_thread(produce):
            seen.append(item)
    assert seen == [1]


async def test_leaving_early_stops_the_thread_at_its_next_item() -> None:
    produced = []
    taken = threading.Semaphore(0)

    def produce(stop: threading.Event) -> Iterator[int]:
        for i in range(1000):
            if stop.is_set():
                return
            produced.append(i)
            yield i
            # In step with the consumer, so the count does not race thread scheduling
            # (free-running at 2 ms an item, it made 10 whenever the event loop came
            # 15 ms late to the stop, as a loaded one can): the next item waits until
            # this one is taken or the iteration stops; with no stop, after 2 s.
            deadline = time.monotonic() + 2
            while not (taken.acquire(timeout=0.005) or stop.is_set()):
                if time.monotonic() > deadline:
                    break

    async for item in iterate_in_thread(produce):
        if item == 2:
            break
        taken.release()
    assert produced == [0, 1, 2]  # the generator saw stop at its next item, not at 1000
