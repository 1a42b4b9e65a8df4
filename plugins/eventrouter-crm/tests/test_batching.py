import asyncio
import time

import pytest

from eventrouter import PermanentError, RetryableError
from eventrouter_crm.batching import Batcher
from eventrouter_crm.ratelimit import RateGate


class Recorder:
    def __init__(self, answer=None, *, delay=0.0):
        self.batches = []
        self.answer = answer or (lambda items: [f"id-{item}" for item in items])
        self.delay = delay

    async def __call__(self, items):
        self.batches.append(list(items))
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer(items)


async def test_items_within_the_window_share_a_batch():
    send = Recorder()
    batcher = Batcher(send, window=0.05, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(4)))
    assert results == ["id-0", "id-1", "id-2", "id-3"]
    assert send.batches == [[0, 1, 2, 3]]
    assert await batcher.submit(9) == "id-9"
    assert send.batches == [[0, 1, 2, 3], [9]]


async def test_a_full_batch_goes_before_the_window_ends():
    send = Recorder()
    batcher = Batcher(send, window=10, max_size=3)
    started = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(6))), 2)
    assert time.monotonic() - started < 1
    assert results == [f"id-{n}" for n in range(6)]
    assert send.batches == [[0, 1, 2], [3, 4, 5]]


async def test_same_key_is_merged_and_shares_the_result():
    send = Recorder()
    batcher = Batcher(
        send,
        window=0.05,
        max_size=10,
        key=lambda item: item[0],
        merge=lambda old, new: (old[0], old[1] + new[1]),
    )
    results = await asyncio.gather(
        batcher.submit(("a", 1)), batcher.submit(("b", 2)), batcher.submit(("a", 3))
    )
    assert send.batches == [[("a", 4), ("b", 2)]]
    assert results == ["id-('a', 4)", "id-('b', 2)", "id-('a', 4)"]


async def test_per_item_errors_reach_only_their_item():
    def answer(items):
        return [PermanentError(f"bad {item}") if item == 2 else f"ok {item}" for item in items]

    batcher = Batcher(Recorder(answer), window=0.05, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert results[0] == "ok 0"
    assert results[1] == "ok 1"
    assert isinstance(results[2], PermanentError)
    assert results[2].message == "bad 2"


async def test_a_failed_send_fails_every_item():
    async def send(items):
        raise RetryableError("HubSpot HTTP 503: down", retry_after=4)

    batcher = Batcher(send, window=0.05, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, RetryableError) and r.retry_after == 4 for r in results)


async def test_a_wrong_number_of_results_fails_every_item():
    batcher = Batcher(Recorder(lambda items: ["one"]), window=0.01, max_size=10)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [str(r) for r in results] == ["batch send answered 1 results for 2"] * 2


async def test_a_cancelled_waiter_does_not_break_the_batch():
    send = Recorder(delay=0.1)
    batcher = Batcher(send, window=0.01, max_size=10)
    impatient = asyncio.create_task(batcher.submit(1))
    patient = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.05)  # the batch is in flight
    impatient.cancel()
    assert await patient == "id-2"
    assert impatient.cancelled()
    assert send.batches == [[1, 2]]


async def test_close_sends_at_once_and_later_items_do_not_wait():
    send = Recorder()
    batcher = Batcher(send, window=30, max_size=10)
    waiting = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.close(), 1)
    assert await waiting == "id-1"
    assert await asyncio.wait_for(batcher.submit(2), 1) == "id-2"


def test_max_size_must_be_positive():
    with pytest.raises(ValueError, match="max_size"):
        Batcher(Recorder(), window=0.1, max_size=0)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


async def test_gate_allows_limit_requests_per_period():
    gate = RateGate(limit=3, period=0.3, max_wait=5)
    started = time.monotonic()
    for _ in range(3):
        await gate.acquire()
    # not held: a hold lasts a 0.3 s period; 0.1 s was no room for a stalled shared machine
    assert time.monotonic() - started < 0.25
    await gate.acquire()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0


async def test_gate_pause_is_waited_out_when_short():
    gate = RateGate(limit=100, period=10, max_wait=1)
    gate.pause(0.2)
    started = time.monotonic()
    await gate.acquire()
    assert 0.15 <= time.monotonic() - started < 1.0
    assert gate.paused_for == 0


async def test_gate_pause_fails_at_once_when_long():
    clock = Clock()
    gate = RateGate(limit=100, period=10, max_wait=10, clock=clock)
    gate.pause(3600)
    clock.now += 600
    with pytest.raises(RetryableError) as caught:
        await gate.acquire()
    assert caught.value.retry_after == 3000
    assert caught.value.message == "rate limited: requests paused for 3000s more"
    gate.pause(5)  # a shorter pause never shortens a longer one
    assert gate.paused_for == 3000


def test_gate_limit_must_be_positive():
    with pytest.raises(ValueError, match="limit"):
        RateGate(limit=0, period=10, max_wait=10)
