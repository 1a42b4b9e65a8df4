"""Scenarios shared by the wake-up tests of both stores (tests/test_redis_wakeups.py,
tests/test_sqlite_watch.py): work another process queues reaches a sleeping worker at once.

``other`` is that other process's store (an ingest node, the command line) on the router's
store; the tests set polls so rare that only a wake-up delivers within ``within`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from eventrouter.store import Store
from tests.stores import make_event

__all__ = ["queued_elsewhere_is_delivered", "retries_and_revivals_are_delivered"]


async def queued_elsewhere_is_delivered(router: Any, other: Store, *, within: float) -> float:
    """Another process ingests an event, then replays it (the command line): each delivered
    by the router's sleeping worker. Returns the seconds from the ingest to the delivery."""
    event = make_event(source="demo")
    started = time.monotonic()
    await other.ingest(event, ["recorder"])
    [got] = await router.recorder.wait_for("recorder", 1, timeout=within)
    took = time.monotonic() - started
    assert got.id == event.id

    assert await other.replay(event.id, ["recorder"]) == 1
    again = await router.recorder.wait_for("recorder", 2, timeout=within)
    assert again[1].id == event.id
    return took


async def retries_and_revivals_are_delivered(
    other: Store, start: Callable[[], Awaitable[Any]], *, within: float
) -> None:
    """Another process's worker holds two deliveries (30 s leases) and dead-letters one; the
    router started by ``start`` is woken when that worker schedules a retry of the other (it
    learns when it is due, not a lease later) and when ``dlq retry`` revives the dead one."""
    retried, revived = make_event(source="demo"), make_event(source="demo")
    await other.ingest(retried, ["recorder"])
    await other.ingest(revived, ["recorder"])
    held = {d.event.id: d for d in await other.claim("recorder", limit=2, lease=30)}
    await other.dead_letter(held[revived.id], error="410 gone")
    router = await start()
    assert router.recorder.events == {}  # the other worker's lease has 30 s to run

    await other.retry_later(
        held[retried.id], at=datetime.now(UTC) + timedelta(seconds=0.2), error="503"
    )
    [first] = await router.recorder.wait_for("recorder", 1, timeout=within)
    assert first.id == retried.id
    assert await other.retry_dead_letters() == 1  # `eventrouter dlq retry`
    second = await router.recorder.wait_for("recorder", 2, timeout=within)
    assert second[1].id == revived.id
