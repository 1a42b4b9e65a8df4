"""The store contract, run against both backends (SQLite and Redis Streams), plus Redis specifics.

The ``store_factory`` fixture is parametrised over both backends: every contract test passing
for both shows they implement the same contract. The Redis runs need a ``redis-server`` binary
(see tests/redis_server.py); the SQLite runs need nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_client
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Event, EventData, new_event_id
from eventrouter.store import (
    LOST_WORKER,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Store,
)
from eventrouter.store.redis import RedisStore
from eventrouter.store.sqlite import SQLiteStore
from eventrouter.testing import sign_request
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    free_port,
    redis_server_fixture,
)

StoreFactory = Callable[..., Awaitable[Store]]

#: slack for comparing times taken by the test with times taken inside the store
CLOCK_SLACK = timedelta(seconds=2)


def make_event(
    *,
    source: str = "shop",
    type: str = "order.paid",
    key: str | None = None,
    received_at: datetime | None = None,
) -> Event:
    received = received_at or datetime.now(UTC)
    return Event(
        id=new_event_id(),
        source=source,
        type=type,
        time=received - timedelta(seconds=3),
        provider="test",
        provider_type=f"provider.{type}",
        idempotency_key=key or uuid.uuid4().hex,
        received_at=received,
        data=EventData(attributes={"amount": 12, "note": "ünïcode"}),
        raw={"id": key, "nested": {"token": "secret-value"}},
        subject="order-1",
        sensitive=("nested.token",),
    )


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """``await store_factory(...)``: an opened store; every call is another "process" sharing
    the same data (the same SQLite file, the same Redis server and key prefix)."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    opened: list[Store] = []

    async def factory(*, dedupe_window: float = 3600.0, max_pending_writes: int = 5000) -> Store:
        store: Store
        if url is not None:
            store = RedisStore(
                url,
                key_prefix="contract",
                dedupe_window=dedupe_window,
                max_pending_writes=max_pending_writes,
            )
        else:
            store = SQLiteStore(
                tmp_path / "store.db",
                dedupe_window=dedupe_window,
                max_pending_writes=max_pending_writes,
            )
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


def assert_near(
    actual: datetime | None, expected: datetime, slack: timedelta = CLOCK_SLACK
) -> None:
    assert actual is not None
    assert abs(actual - expected) <= slack, (actual, expected)


def record(stored: Any, sink: str) -> DeliveryRecord:
    matches = [r for r in stored.deliveries if r.sink == sink]
    assert len(matches) == 1, stored.deliveries
    return matches[0]


async def claim_one(store: Store, sink: str, *, lease: float = 30.0) -> Delivery:
    claimed = await store.claim(sink, limit=10, lease=lease)
    assert len(claimed) == 1, claimed
    return claimed[0]


# -- the contract, on both backends ---------------------------------------------------------------


async def test_ingest_stores_event_with_one_pending_delivery_per_sink(store_factory):
    store = await store_factory()
    event = make_event()
    before = datetime.now(UTC)

    result = await store.ingest(event, ["alpha", "beta"])

    assert result == IngestResult(accepted=True, event_id=event.id)
    stored = await store.get_event(event.id)
    assert stored is not None
    assert stored.event == event
    assert stored.event.raw["nested"]["token"] == "secret-value"
    assert [r.sink for r in stored.deliveries] == ["alpha", "beta"]
    for delivery in stored.deliveries:
        assert delivery.state == DeliveryState.PENDING
        assert delivery.attempts == 0
        assert delivery.last_error is None
        assert_near(delivery.next_attempt_at, before)
    assert await store.queue_depth() == {"alpha": {"pending": 1}, "beta": {"pending": 1}}
    assert await store.get_event("evt_missing") is None
    assert store.pending_writes == 0


async def test_event_without_sinks_is_stored_without_deliveries(store_factory):
    store = await store_factory()
    event = make_event()

    assert (await store.ingest(event, [])).accepted

    stored = await store.get_event(event.id)
    assert stored is not None
    assert stored.event == event
    assert stored.deliveries == ()
    assert await store.queue_depth() == {}


async def test_duplicate_within_window_is_refused_and_accepted_after_it(store_factory):
    store = await store_factory(dedupe_window=0.6)
    first = make_event(key="order-1")
    second = make_event(key="order-1")
    other_source = make_event(key="order-1", source="other-shop")

    assert await store.ingest(first, ["alpha"]) == IngestResult(accepted=True, event_id=first.id)
    assert await store.ingest(second, ["alpha"]) == IngestResult(accepted=False, event_id=first.id)
    # the key is per source
    assert (await store.ingest(other_source, ["alpha"])).accepted
    assert await store.get_event(second.id) is None
    assert await store.queue_depth() == {"alpha": {"pending": 2}}

    await asyncio.sleep(0.8)
    third = make_event(key="order-1")
    assert await store.ingest(third, ["alpha"]) == IngestResult(accepted=True, event_id=third.id)
    assert await store.queue_depth() == {"alpha": {"pending": 3}}


async def test_claim_then_ack(store_factory):
    store = await store_factory()
    event = make_event()
    await store.ingest(event, ["alpha", "beta"])
    assert await store.next_due("alpha") <= datetime.now(UTC) + timedelta(milliseconds=50)
    assert await store.next_due("nowhere") is None
    assert await store.claim("nowhere", limit=5, lease=30) == []

    claimed_at = datetime.now(UTC)
    delivery = await claim_one(store, "alpha")

    assert delivery.event == event
    assert delivery.sink == "alpha"
    assert delivery.attempts == 0
    assert delivery.token
    assert await store.claim("alpha", limit=10, lease=30) == []
    inflight = record(await store.get_event(event.id), "alpha")
    assert inflight.state == DeliveryState.INFLIGHT
    assert inflight.attempts == 0
    assert_near(inflight.next_attempt_at, claimed_at + timedelta(seconds=30))
    # the lease end is when the delivery is due again (should its worker die)
    assert_near(await store.next_due("alpha"), claimed_at + timedelta(seconds=30))
    assert await store.queue_depth() == {"alpha": {"inflight": 1}, "beta": {"pending": 1}}

    await store.ack(delivery)

    done = record(await store.get_event(event.id), "alpha")
    assert done == DeliveryRecord(
        sink="alpha", state=DeliveryState.DONE, attempts=1, next_attempt_at=None, last_error=None
    )
    assert record(await store.get_event(event.id), "beta").state == DeliveryState.PENDING
    assert await store.queue_depth() == {"beta": {"pending": 1}}
    assert await store.next_due("alpha") is None
    assert await store.claim("alpha", limit=10, lease=30) == []
    # a second ack of the same delivery changes nothing
    await store.ack(delivery)
    assert record(await store.get_event(event.id), "alpha") == done


async def test_claim_respects_limit_and_order(store_factory):
    store = await store_factory()
    events = [make_event() for _ in range(5)]
    for event in events:
        await store.ingest(event, ["alpha"])

    first = await store.claim("alpha", limit=2, lease=30)
    rest = await store.claim("alpha", limit=10, lease=30)

    assert [d.event.id for d in first] == [e.id for e in events[:2]]
    assert [d.event.id for d in rest] == [e.id for e in events[2:]]
    assert await store.queue_depth() == {"alpha": {"inflight": 5}}


async def test_retry_later_is_not_claimable_before_it_is_due(store_factory):
    store = await store_factory()
    event = make_event()
    await store.ingest(event, ["alpha"])
    delivery = await claim_one(store, "alpha")
    at = datetime.now(UTC) + timedelta(seconds=0.8)

    await store.retry_later(delivery, at=at, error="503 from the sink")

    waiting = record(await store.get_event(event.id), "alpha")
    assert waiting.state == DeliveryState.PENDING
    assert waiting.attempts == 1
    assert waiting.last_error == "503 from the sink"
    assert_near(waiting.next_attempt_at, at, timedelta(milliseconds=5))
    assert_near(await store.next_due("alpha"), at, timedelta(milliseconds=200))
    assert await store.queue_depth() == {"alpha": {"pending": 1}}
    assert await store.claim("alpha", limit=10, lease=30) == []

    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.1)
    again = await claim_one(store, "alpha")

    assert again.event == event
    assert again.attempts == 1
    await store.retry_later(again, at=datetime.now(UTC), error="still failing")
    third = await claim_one(store, "alpha")
    assert third.attempts == 2
    await store.ack(third)
    done = record(await store.get_event(event.id), "alpha")
    assert (done.state, done.attempts, done.last_error) == (DeliveryState.DONE, 3, None)


async def test_dead_letter_list_and_retry(store_factory):
    store = await store_factory()
    first, second = make_event(type="order.paid"), make_event(type="order.refunded")
    await store.ingest(first, ["alpha", "beta"])
    await store.ingest(second, ["alpha"])
    for delivery in await store.claim("alpha", limit=10, lease=30):
        await store.dead_letter(delivery, error=f"410 gone for {delivery.event.type}")
    died = datetime.now(UTC)

    dead = record(await store.get_event(first.id), "alpha")
    assert dead == DeliveryRecord(
        sink="alpha",
        state=DeliveryState.DEAD,
        attempts=1,
        next_attempt_at=None,
        last_error="410 gone for order.paid",
    )
    letters = await store.list_dead_letters()
    assert [(d.event_id, d.sink) for d in letters] == [(second.id, "alpha"), (first.id, "alpha")]
    letter = letters[1]
    assert letter.source == "shop"
    assert letter.type == "order.paid"
    assert letter.attempts == 1
    assert letter.reason == "410 gone for order.paid"
    assert_near(letter.dead_at, died)
    assert [d.event_id for d in await store.list_dead_letters(limit=1)] == [second.id]
    assert await store.list_dead_letters(sink="beta") == []
    assert await store.queue_depth() == {"alpha": {"dead": 2}, "beta": {"pending": 1}}
    assert await store.claim("alpha", limit=10, lease=30) == []
    assert await store.next_due("alpha") is None

    assert await store.retry_dead_letters(event_ids=[first.id]) == 1

    revived = record(await store.get_event(first.id), "alpha")
    assert revived.state == DeliveryState.PENDING
    assert revived.attempts == 0
    assert [d.event_id for d in await store.list_dead_letters()] == [second.id]
    assert await store.queue_depth() == {
        "alpha": {"pending": 1, "dead": 1},
        "beta": {"pending": 1},
    }
    again = await claim_one(store, "alpha")
    assert again.event == first
    assert again.attempts == 0

    assert await store.retry_dead_letters(sink="beta") == 0
    assert await store.retry_dead_letters(sink="alpha") == 1
    assert await store.list_dead_letters() == []
    assert [d.event.id for d in await store.claim("alpha", limit=10, lease=30)] == [second.id]
    assert await store.retry_dead_letters() == 0


async def test_replay_queues_a_stored_event_again(store_factory):
    store = await store_factory()
    event = make_event()
    await store.ingest(event, ["alpha", "beta"])
    await store.ack(await claim_one(store, "alpha"))
    await store.dead_letter(await claim_one(store, "beta"), error="400 bad request")

    assert await store.replay(event.id, ["alpha", "beta", "gamma"]) == 3

    stored = await store.get_event(event.id)
    assert [(r.sink, r.state, r.attempts) for r in stored.deliveries] == [
        ("alpha", DeliveryState.PENDING, 0),
        ("beta", DeliveryState.PENDING, 0),
        ("gamma", DeliveryState.PENDING, 0),
    ]
    assert await store.list_dead_letters() == []
    assert await store.queue_depth() == {
        "alpha": {"pending": 1},
        "beta": {"pending": 1},
        "gamma": {"pending": 1},
    }
    for sink in ("alpha", "beta", "gamma"):
        delivery = await claim_one(store, sink)
        assert delivery.event == event
        assert delivery.attempts == 0
        await store.ack(delivery)
    assert await store.replay("evt_missing", ["alpha"]) == 0
    assert await store.queue_depth() == {}


async def test_list_events_newest_first_with_filters(store_factory):
    store = await store_factory()
    start = datetime.now(UTC) - timedelta(minutes=1)
    events = [
        make_event(source="shop", type="order.paid", received_at=start),
        make_event(source="calls", type="call.started", received_at=start + timedelta(seconds=1)),
        make_event(source="calls", type="call.ended", received_at=start + timedelta(seconds=2)),
        make_event(source="shop", type="call.note", received_at=start + timedelta(seconds=3)),
    ]
    for event in events:
        await store.ingest(event, ["alpha"])

    newest_first = await store.list_events()
    assert [s.event.id for s in newest_first] == [e.id for e in reversed(events)]
    assert newest_first[0].event == events[3]
    assert [(r.sink, r.state) for r in newest_first[0].deliveries] == [
        ("alpha", DeliveryState.PENDING)
    ]
    assert [s.event.id for s in await store.list_events(limit=2)] == [events[3].id, events[2].id]
    assert [s.event.id for s in await store.list_events(source="calls")] == [
        events[2].id,
        events[1].id,
    ]
    assert [s.event.id for s in await store.list_events(type="call.*")] == [
        events[3].id,
        events[2].id,
        events[1].id,
    ]
    assert [s.event.id for s in await store.list_events(source="shop", type="call.*")] == [
        events[3].id
    ]
    assert await store.list_events(source="nobody") == []


async def test_expired_lease_is_taken_over_counting_the_lost_attempt(store_factory):
    first, second = await store_factory(), await store_factory()
    event = make_event()
    await first.ingest(event, ["alpha"])
    lost = await claim_one(first, "alpha", lease=0.5)
    await first.close()  # the first process dies mid-delivery

    assert await second.claim("alpha", limit=10, lease=0.5) == []
    await asyncio.sleep(0.7)
    assert await second.next_due("alpha") <= datetime.now(UTC)
    taken = await claim_one(second, "alpha", lease=0.5)

    assert taken.event == event
    assert (lost.attempts, lost.lost) == (0, 0)
    # the attempt the dead worker was making counts: a delivery that kills its workers runs
    # out of attempts instead of going from worker to worker for ever
    assert (taken.attempts, taken.lost) == (1, 1)
    inflight = record(await second.get_event(event.id), "alpha")
    assert (inflight.state, inflight.attempts) == (DeliveryState.INFLIGHT, 1)
    assert inflight.last_error == LOST_WORKER
    await second.ack(taken)
    done = record(await second.get_event(event.id), "alpha")
    assert (done.state, done.attempts, done.last_error) == (DeliveryState.DONE, 2, None)
    assert await second.claim("alpha", limit=10, lease=0.5) == []


async def test_an_outcome_from_a_claim_taken_over_changes_nothing(store_factory):
    slow, taker = await store_factory(), await store_factory()
    event = make_event()
    await slow.ingest(event, ["alpha"])
    stale = await claim_one(slow, "alpha", lease=0.3)
    await asyncio.sleep(0.5)
    current = await claim_one(taker, "alpha", lease=30)

    # the slow worker outlived its lease; what it records now must not end the taker's claim
    await slow.retry_later(stale, at=datetime.now(UTC), error="late")
    await slow.ack(stale)

    still = record(await taker.get_event(event.id), "alpha")
    assert (still.state, still.attempts) == (DeliveryState.INFLIGHT, 1)
    await taker.ack(current)
    assert record(await taker.get_event(event.id), "alpha").state == DeliveryState.DONE


async def test_a_live_lease_is_not_stolen_by_a_worker_with_a_shorter_one(store_factory):
    # a rolling deploy: one process's sink has a 30 s lease, another's a 0.2 s one
    long_lease, short_lease = await store_factory(), await store_factory()
    event = make_event()
    await long_lease.ingest(event, ["alpha"])
    held = await claim_one(long_lease, "alpha", lease=30)
    await asyncio.sleep(0.4)

    assert await short_lease.claim("alpha", limit=10, lease=0.2) == []
    assert_near(await short_lease.next_due("alpha"), datetime.now(UTC) + timedelta(seconds=29.6))
    await long_lease.ack(held)
    done = record(await long_lease.get_event(event.id), "alpha")
    assert (done.state, done.attempts) == (DeliveryState.DONE, 1)


async def test_an_expired_short_lease_is_taken_over_by_a_worker_with_a_longer_one(store_factory):
    # the other way round: when next_due says the delivery is due, a claim must get it (else a
    # worker sleeps 0 s and claims nothing, again and again)
    short_lease, long_lease = await store_factory(), await store_factory()
    event = make_event()
    await short_lease.ingest(event, ["alpha"])
    await claim_one(short_lease, "alpha", lease=0.3)
    await asyncio.sleep(0.5)

    assert await long_lease.next_due("alpha") <= datetime.now(UTC)
    taken = await claim_one(long_lease, "alpha", lease=30)

    assert (taken.event, taken.attempts, taken.lost) == (event, 1, 1)
    assert_near(await long_lease.next_due("alpha"), datetime.now(UTC) + timedelta(seconds=30))


async def test_an_expired_lease_is_found_behind_many_live_ones(store_factory):
    live, dying, taker = await store_factory(), await store_factory(), await store_factory()
    for _ in range(25):
        await live.ingest(make_event(), ["alpha"])
    assert len(await live.claim("alpha", limit=25, lease=30)) == 25
    orphan = make_event()
    await live.ingest(orphan, ["alpha"])
    await claim_one(dying, "alpha", lease=0.3)
    await asyncio.sleep(0.5)

    taken = await taker.claim("alpha", limit=1, lease=30)

    assert [d.event.id for d in taken] == [orphan.id]


async def test_a_delivery_whose_workers_keep_dying_is_dead_lettered_without_an_attempt(
    store_factory,
):
    store = await store_factory()
    event = make_event()
    await store.ingest(event, ["alpha"])
    seen = []
    for _ in range(3):  # three workers die delivering it
        delivery = await claim_one(store, "alpha", lease=0.2)
        seen.append((delivery.attempts, delivery.lost))
        await asyncio.sleep(0.3)
    last = await claim_one(store, "alpha", lease=30)
    seen.append((last.attempts, last.lost))
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3)]

    await store.dead_letter(last, error="worker lost 3 times during delivery", count_attempt=False)

    dead = record(await store.get_event(event.id), "alpha")
    assert (dead.state, dead.attempts) == (DeliveryState.DEAD, 3)
    [letter] = await store.list_dead_letters()
    assert (letter.attempts, letter.reason) == (3, "worker lost 3 times during delivery")
    # revived, it starts again from nothing
    assert await store.retry_dead_letters() == 1
    again = await claim_one(store, "alpha")
    assert (again.attempts, again.lost) == (0, 0)


async def test_concurrent_claims_never_share_a_delivery(store_factory):
    stores = [await store_factory(), await store_factory()]
    events = [make_event() for _ in range(30)]
    for event in events:
        await stores[0].ingest(event, ["alpha"])

    async def drain(store: Store) -> list[str]:
        got: list[str] = []
        for _ in range(100):
            batch = await store.claim("alpha", limit=3, lease=30)
            if not batch:
                break
            got.extend(d.event.id for d in batch)
            await asyncio.sleep(0)
        return got

    one, two = await asyncio.gather(drain(stores[0]), drain(stores[1]))

    assert not set(one) & set(two)
    assert len(one) + len(two) == len(events)
    assert set(one) | set(two) == {e.id for e in events}
    assert await stores[1].queue_depth() == {"alpha": {"inflight": 30}}


async def test_purge_forgets_old_delivered_events_only(store_factory):
    store = await store_factory()
    old = datetime.now(UTC) - timedelta(hours=2)
    delivered, pending, unrouted = (make_event(received_at=old) for _ in range(3))
    recent = make_event()
    await store.ingest(delivered, ["alpha"])
    await store.ack(await claim_one(store, "alpha"))
    await store.ingest(pending, ["alpha"])
    await store.ingest(unrouted, [])
    await store.ingest(recent, [])

    assert await store.purge(retention=3600) == 2

    assert await store.get_event(delivered.id) is None
    assert await store.get_event(unrouted.id) is None
    assert [s.event.id for s in await store.list_events()] == [recent.id, pending.id]


# -- Redis specifics ------------------------------------------------------------------------------


def redis_store(server: RedisServer, **options: Any) -> RedisStore:
    return RedisStore(server.url, **{"key_prefix": "er", **options})


async def test_unreachable_redis_is_store_unavailable():
    store = RedisStore(f"redis://:hunter2@127.0.0.1:{free_port()}/0?password=hunter3")
    started = time.monotonic()

    with pytest.raises(StoreUnavailable) as info:
        await store.open()

    assert "hunter" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert time.monotonic() - started < 5
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.ingest(make_event(), ["alpha"])


@pytest.mark.redis
async def test_redis_going_down_is_store_unavailable(redis_server):
    store = redis_store(redis_server)
    await store.open()
    event = make_event()
    await store.ingest(event, ["alpha"])
    delivery = await claim_one(store, "alpha")
    redis_server.stop()

    calls: list[Callable[[], Awaitable[Any]]] = [
        store.ping,
        lambda: store.ingest(make_event(), ["alpha"]),
        lambda: store.claim("alpha", limit=1, lease=30),
        lambda: store.next_due("alpha"),
        lambda: store.ack(delivery),
        lambda: store.retry_later(delivery, at=datetime.now(UTC), error="x"),
        lambda: store.dead_letter(delivery, error="x"),
        lambda: store.get_event(event.id),
        lambda: store.list_events(),
        lambda: store.list_dead_letters(),
        lambda: store.retry_dead_letters(),
        lambda: store.replay(event.id, ["alpha"]),
        store.queue_depth,
        lambda: store.purge(retention=0),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            await call()
        assert not isinstance(info.value, Overloaded)
    assert store.pending_writes == 0
    await store.close()


@pytest.mark.redis
async def test_redis_error_reply_is_store_unavailable(redis_server):
    store = redis_store(redis_server)
    await store.open()
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1")
    try:
        await admin.config_set("maxmemory", "1")
        with pytest.raises(StoreUnavailable, match="maxmemory"):
            await store.ingest(make_event(), ["alpha"])
        await admin.config_set("maxmemory", "0")
        assert (await store.ingest(make_event(), ["alpha"])).accepted
    finally:
        await admin.aclose()
        await store.close()


@pytest.mark.redis
async def test_ingest_beyond_max_pending_writes_is_overloaded(redis_server):
    store = redis_store(redis_server, max_pending_writes=1)
    await store.open()
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1")
    try:
        await admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
        first = asyncio.create_task(store.ingest(make_event(), ["alpha"]))
        deadline = time.monotonic() + 5
        while store.pending_writes < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert store.pending_writes == 1

        with pytest.raises(Overloaded):
            await store.ingest(make_event(), ["alpha"])

        await admin.execute_command("CLIENT", "UNPAUSE")
        assert (await asyncio.wait_for(first, 5)).accepted
        assert store.pending_writes == 0
        assert (await store.ingest(make_event(), ["alpha"])).accepted
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await store.close()


@pytest.mark.redis
async def test_keys_are_prefixed_and_prefixes_are_isolated(redis_server):
    mine, theirs = redis_store(redis_server), redis_store(redis_server, key_prefix="other")
    await mine.open()
    await theirs.open()
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1", decode_responses=True)
    try:
        event = make_event()
        await mine.ingest(event, ["alpha"])
        await mine.dead_letter(await claim_one(mine, "alpha"), error="nope")
        await mine.ingest(make_event(), ["alpha"])
        await mine.retry_later(await claim_one(mine, "alpha"), at=datetime.now(UTC), error="x")

        keys = sorted([key async for key in admin.scan_iter()])
        assert keys
        assert all(key.startswith("er:") for key in keys), keys
        assert await theirs.list_events() == []
        assert await theirs.get_event(event.id) is None
        assert await theirs.claim("alpha", limit=10, lease=30) == []
        assert await theirs.queue_depth() == {}
        assert await theirs.list_dead_letters() == []
        # the dedupe key expires by itself (SET ... PX window)
        dedupe = [k for k in keys if k.startswith("er:dedupe:")]
        assert len(dedupe) == 2
        assert 0 < await admin.pttl(dedupe[0]) <= 3 * 86400 * 1000
    finally:
        await admin.aclose()
        await mine.close()
        await theirs.close()


@pytest.mark.redis
async def test_close_forgets_an_idle_consumer_but_keeps_unfinished_deliveries(redis_server):
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1", decode_responses=True)
    idle, busy = redis_store(redis_server), redis_store(redis_server)
    await idle.open()
    await busy.open()
    try:
        for _ in range(2):
            await idle.ingest(make_event(), ["alpha"])
        finished = await idle.claim("alpha", limit=1, lease=30)
        await idle.ack(finished[0])
        unfinished = (await busy.claim("alpha", limit=1, lease=0.5))[0]
        await idle.close()
        await busy.close()

        consumers = await admin.xinfo_consumers("er:queue:alpha", "workers")
        assert [(c["name"], c["pending"]) for c in consumers] == [(busy.consumer, 1)]
        later = redis_store(redis_server)
        await later.open()
        assert await later.claim("alpha", limit=1, lease=0.5) == []
        await asyncio.sleep(0.6)
        taken = await claim_one(later, "alpha", lease=0.5)
        assert taken.event == unfinished.event
        await later.ack(taken)
        await later.close()
    finally:
        await admin.aclose()


@pytest.mark.redis
async def test_router_delivers_through_the_redis_store(redis_server, make_router):
    router = await make_router(
        {
            "store": {"backend": "redis", "url": redis_server.url, "key_prefix": "e2e"},
            "sources": {
                "demo": {
                    "plugin": "standard-webhooks",
                    "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                }
            },
            "sinks": {
                "recorder": {"plugin": "recording"},
                "flaky": {
                    "plugin": "recording",
                    "fail_times": 1,
                    "delivery": {"retry_schedule": ["100ms"], "jitter": 0},
                },
            },
            "routes": [{"sinks": ["recorder", "flaky"]}],
        }
    )
    assert isinstance(router.store, RedisStore)

    data, signature = sign_request(
        router.config.sources["demo"], {"type": "invoice.paid", "data": {"id": 7}}
    )

    status, body = await router.post("demo", data, signed=False, headers=signature.headers)

    assert status == 200, body
    assert body["status"] == "accepted"
    assert body["sinks"] == ["recorder", "flaky"]
    received = await router.recorder.wait_for("recorder", 1)
    assert received[0].id == body["event_id"]
    assert received[0].type == "invoice.paid"
    retried = await router.recorder.wait_for("flaky", 1)
    assert retried[0].id == body["event_id"]
    assert router.recorder.attempts["flaky"] == 2

    deadline = time.monotonic() + 5
    while True:
        stored = await router.store.get_event(body["event_id"])
        states = {r.sink: (r.state, r.attempts) for r in stored.deliveries}
        if all(state == DeliveryState.DONE for state, _ in states.values()):
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.05)
    assert states == {"flaky": (DeliveryState.DONE, 2), "recorder": (DeliveryState.DONE, 1)}
    flaky = record(stored, "flaky")
    assert flaky.last_error is None

    status, again = await router.post("demo", data, signed=False, headers=signature.headers)
    assert status == 200, again
    assert again == {"status": "duplicate", "event_id": body["event_id"]}
    assert [s.event.id for s in await router.store.list_events()] == [body["event_id"]]


@pytest.mark.redis
def test_cli_reads_and_operates_the_redis_store(redis_server, tmp_path):
    config = tmp_path / "eventrouter.toml"
    config.write_text(
        f"""
[store]
backend = "redis"
url = "{redis_server.url}"
key_prefix = "cli"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[sinks.alpha]
plugin = "http"
url = "http://127.0.0.1:9/"

[[routes]]
sinks = ["alpha"]
""",
        encoding="utf-8",
    )
    event = make_event(source="demo")

    async def dead_letter_one() -> None:
        store = redis_store(redis_server, key_prefix="cli")
        await store.open()
        try:
            await store.ingest(event, ["alpha"])
            await store.dead_letter(await claim_one(store, "alpha"), error="404 not found")
        finally:
            await store.close()

    asyncio.run(dead_letter_one())
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--config", str(config)])
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = json.loads(run("events", "--json"))
    assert listed["event"]["id"] == event.id
    assert listed["event"]["raw"]["nested"]["token"] != "secret-value"
    assert listed["deliveries"] == [
        {
            "sink": "alpha",
            "state": "dead",
            "attempts": 1,
            "next_attempt_at": None,
            "last_error": "404 not found",
        }
    ]
    letter = json.loads(run("dlq", "list", "--json"))
    assert (letter["event_id"], letter["sink"], letter["reason"], letter["attempts"]) == (
        event.id,
        "alpha",
        "404 not found",
        1,
    )
    assert (
        run("dlq", "retry", "--sink", "alpha").strip() == "1 dead letter queued for delivery again"
    )
    assert run("dlq", "list").strip() == "no dead letters"
    assert run("replay", event.id).strip() == f"event {event.id} queued for 1 sink"
    shown = run("events", event.id)
    assert "alpha: pending, 0 attempts" in shown
