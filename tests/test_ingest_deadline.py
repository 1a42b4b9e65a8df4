"""``within_deadline``: the store's answer, or StoreUnavailable once ``[store]
operation_timeout`` has passed; a cancellation from outside stays a cancellation, and the task's
cancellation count is what it was (so a later deadline in the same task still works)."""

from __future__ import annotations

import asyncio

import pytest

from eventrouter.config import Config, parse_config
from eventrouter.errors import StoreUnavailable
from eventrouter.ingest import within_deadline
from eventrouter.plugins import Registry, create_plugin_manager


def config(timeout: str) -> Config:
    return parse_config(
        {"store": {"operation_timeout": timeout}}, Registry.collect(create_plugin_manager())
    )


async def answer(value: int, after: float = 0.0) -> int:
    await asyncio.sleep(after)
    return value


async def test_an_answer_in_time_is_returned_and_leaves_no_cancellation():
    assert await within_deadline(config("1s"), answer(7), "test") == 7
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_an_operation_past_the_deadline_is_store_unavailable_and_cancelled():
    cancelled = asyncio.Event()

    async def hangs() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.2s \(ingest\)"):
        async with asyncio.timeout(5):  # a bound for the test, outside the one under test
            await within_deadline(config("0.2s"), hangs(), "ingest")
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    # the task's count is clean: the next deadline in it still answers in time
    assert await within_deadline(config("1s"), answer(8, 0.01), "again") == 8


async def test_a_cancellation_from_outside_is_not_a_timeout():
    started = asyncio.Event()

    async def waits() -> int:
        started.set()
        return await answer(0, 30)

    task = asyncio.create_task(within_deadline(config("10s"), waits(), "ingest"))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_a_timeout_error_from_the_store_itself_is_store_unavailable():
    async def times_out() -> int:
        raise TimeoutError

    with pytest.raises(StoreUnavailable, match="did not answer within"):
        await within_deadline(config("1s"), times_out(), "ping")
