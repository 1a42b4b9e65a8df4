"""The store contract, run against both backends: SQLite and Redis Streams.

Every test here takes ``store`` (an opened store) or ``store_factory`` (``await
store_factory(...)`` opens another "process" sharing the same data: the same SQLite file, the same
Redis server and key prefix), both parametrised over the backends, so a promise of
:class:`eventrouter.store.Store` kept by one backend and broken by the other fails here. The
backends' own tests (group commit, Sentinel, outages...) live in test_store_sqlite.py and
test_store_redis.py. The Redis runs need a ``redis-server`` binary (see tests/redis_server.py).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from attrs import evolve

from eventrouter import query
from eventrouter.circuit import SinkControl
from eventrouter.errors import StoreUnavailable
from eventrouter.events import Call, Campaign, Contact, Event, EventData
from eventrouter.query import BulkAction, EventFilter, PageRequest, QueryError
from eventrouter.store import (
    LOST_WORKER,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Settlement,
    Store,
    Trigger,
)
from eventrouter.store.redis import RedisStore
from eventrouter.store.sqlite import SQLiteStore
from tests.redis_server import redis_server_fixture  # noqa: F401 - registers the fixture
from tests.stores import assert_near, claim_one, make_event, record

StoreFactory = Callable[..., Awaitable[Store]]


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


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """One opened store of the backend under test."""
    return await store_factory()


def test_every_operation_of_the_contract_is_exercised_here():
    """A method added to Store without a test here would be a promise neither backend is held to."""
    module = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    called = {
        node.func.attr
        for node in ast.walk(module)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    operations = {
        name
        for name, value in vars(Store).items()
        if not name.startswith("_") and callable(value) and name not in {"open", "close"}
    }
    assert operations - called == set()


async def test_ingest_stores_event_with_one_pending_delivery_per_sink(store):
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


async def test_event_without_sinks_is_stored_without_deliveries(store):
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


async def test_claim_then_ack(store):
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
    assert evolve(done, updated_at=None) == DeliveryRecord(
        sink="alpha", state=DeliveryState.DONE, attempts=1, next_attempt_at=None, last_error=None
    )
    assert_near(done.updated_at, datetime.now(UTC))
    assert record(await store.get_event(event.id), "beta").state == DeliveryState.PENDING
    assert await store.queue_depth() == {"beta": {"pending": 1}}
    assert await store.next_due("alpha") is None
    assert await store.claim("alpha", limit=10, lease=30) == []
    # a second ack of the same delivery changes nothing
    await store.ack(delivery)
    assert record(await store.get_event(event.id), "alpha") == done


async def test_an_event_timed_in_local_mean_time_is_claimed_like_any_other(store):
    # a naive "0001-01-01 00:00:00" read in Asia/Kolkata (+05:53:28 then), and a time of 1850:
    # the stores' reader used to refuse them, failing every claim of the sink behind them
    kolkata = ZoneInfo("Asia/Kolkata")
    event = evolve(
        make_event(),
        time=datetime(1, 1, 1, tzinfo=kolkata),
        data=EventData(call=Call(started_at=datetime(1850, 6, 1, tzinfo=kolkata))),
    )
    await store.ingest(event, ["alpha"])
    delivery = await claim_one(store, "alpha")
    assert delivery.event == event
    assert delivery.event.data.call.started_at == datetime(1850, 6, 1, tzinfo=kolkata)
    await store.ack(delivery)
    assert record(await store.get_event(event.id), "alpha").state == DeliveryState.DONE


def _stored_as(event: Event, change: Callable[[dict], None]) -> Event:
    """``event``, whose JSON (what the stores write) is changed by ``change``: as an event that
    another version of eventrouter wrote, or one a disk or a hand has spoilt, is stored."""
    body = json.loads(event.to_json())
    change(body)
    object.__setattr__(event, "_json", json.dumps(body))
    return event


async def test_an_event_the_reader_refuses_is_dead_lettered_not_holding_up_its_claim(store):
    # One stored event the reader refuses (here a CallStatus a later version has, and a contact
    # whose phone is a number) used to make every claim of the sink raise, leaving the good
    # deliveries claimed with it in flight until their lease ran out, again and again.
    good = [make_event(), make_event()]
    bad = [
        _stored_as(make_event(), lambda b: b["data"].update(call={"status": "sk_live_hidden"})),
        _stored_as(make_event(), lambda b: b["data"].update(contact={"phone": 123})),
    ]
    for event in (good[0], bad[0], bad[1], good[1]):
        await store.ingest(event, ["alpha"])
    claimed = await store.claim("alpha", limit=10, lease=30)
    assert sorted(d.event.id for d in claimed) == sorted(e.id for e in good)
    letters = {d.event_id: d for d in await store.list_dead_letters()}
    assert set(letters) == {e.id for e in bad}
    # what was wrong and where, never the value itself
    assert letters[bad[0].id].reason == (
        "the stored event could not be read: Invalid enum value - at `$.data.call.status`"
    )
    assert letters[bad[1].id].reason == (
        "the stored event could not be read: Expected `str | null`, got `int`"
        " - at `$.data.contact.phone`"
    )
    assert letters[bad[0].id].attempts == 0  # dead-lettered without an attempt
    assert await store.list_attempts(bad[0].id) == []
    for delivery in claimed:
        await store.ack(delivery)
    assert await store.claim("alpha", limit=10, lease=30) == []
    depth = (await store.queue_depth())["alpha"]
    assert depth.get("dead") == 2
    assert not depth.get("inflight")
    assert not depth.get("pending")


async def test_claim_respects_limit_and_order(store):
    events = [make_event() for _ in range(5)]
    for event in events:
        await store.ingest(event, ["alpha"])

    first = await store.claim("alpha", limit=2, lease=30)
    rest = await store.claim("alpha", limit=10, lease=30)

    assert [d.event.id for d in first] == [e.id for e in events[:2]]
    assert [d.event.id for d in rest] == [e.id for e in events[2:]]
    assert await store.queue_depth() == {"alpha": {"inflight": 5}}


async def test_retry_later_is_not_claimable_before_it_is_due(store):
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


async def test_dead_letter_list_and_retry(store):
    first, second = make_event(type="order.paid"), make_event(type="order.refunded")
    await store.ingest(first, ["alpha", "beta"])
    await store.ingest(second, ["alpha"])
    for delivery in await store.claim("alpha", limit=10, lease=30):
        await store.dead_letter(delivery, error=f"410 gone for {delivery.event.type}")
    died = datetime.now(UTC)

    dead = record(await store.get_event(first.id), "alpha")
    assert_near(dead.updated_at, died)
    assert evolve(dead, updated_at=None) == DeliveryRecord(
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


async def test_replay_queues_a_stored_event_again(store):
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


async def test_list_events_newest_first_with_filters(store):
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
    store,
):
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


async def test_purge_forgets_old_delivered_events_only(store):
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


async def test_ping_answers_while_open_and_a_closed_store_is_unavailable(store_factory):
    store = await store_factory()
    await store.ping()
    await store.close()

    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.ingest(make_event(), ["alpha"])


async def test_watch_wakes_the_sinks_given_work_or_returns_at_once(store_factory):
    watcher, writer = await store_factory(), await store_factory()
    woken: list[str] = []
    task = asyncio.create_task(watcher.watch(["alpha", "beta"], woken.append))
    try:
        for _ in range(500):
            if task.done() or watcher.watching:
                break
            await asyncio.sleep(0.01)
        if task.done():  # a backend that cannot tell: workers poll
            assert task.result() is None
            assert not watcher.watching
            return
        assert watcher.watching
        for _ in range(500):  # (re)subscribing wakes every sink once
            if sorted(woken) == ["alpha", "beta"]:
                break
            await asyncio.sleep(0.01)
        woken.clear()

        await writer.ingest(make_event(), ["alpha", "gamma"])

        for _ in range(500):
            if woken:
                break
            await asyncio.sleep(0.01)
        assert woken == ["alpha"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- sink control (circuit, pause) and rate limits: eventrouter.circuit, eventrouter.ratelimit --


async def test_a_sink_control_record_is_written_by_compare_and_set(store_factory):
    one, two = await store_factory(), await store_factory()
    fresh = await one.get_control("alpha")
    assert fresh == SinkControl()

    assert await one.put_control("alpha", evolve(fresh, paused=True, reason="CRM upgrade"))
    seen = await two.get_control("alpha")
    assert (seen.paused, seen.reason, seen.version) == (True, "CRM upgrade", 1)

    # a writer that read the record before that write is refused and changes nothing
    assert not await two.put_control("alpha", evolve(fresh, failures=3))
    assert (await one.get_control("alpha")).failures == 0
    assert await two.put_control("alpha", evolve(seen, paused=False, reason=None))
    assert (await one.get_control("alpha")).version == 2
    assert await one.get_control("beta") == SinkControl()  # one record per sink


async def test_release_makes_a_claim_pending_again_without_counting_the_attempt(store):
    event = make_event()
    await store.ingest(event, ["alpha"])
    delivery = await claim_one(store, "alpha")

    await store.release(delivery, at=datetime.now(UTC), error="not attempted: circuit open")

    [stored] = (await store.get_event(event.id)).deliveries
    assert (stored.state, stored.attempts) == (DeliveryState.PENDING, 0)
    again = await claim_one(store, "alpha")
    assert (again.event.id, again.attempts) == (event.id, 0)


async def test_rate_permits_are_spaced_by_the_interval(store):
    waits = [await store.rate_permit("alpha", interval=60.0) for _ in range(3)]

    assert waits[0] == 0.0  # the first permit is free
    assert 0.0 < waits[-1] <= 60.0  # then one a minute: the caller is told how long to wait
    assert await store.rate_permit("beta", interval=60.0) == 0.0  # each sink has its own


async def test_rate_permits_are_shared_by_every_process_on_the_store(store_factory):
    # serve's delivery processes, or eventrouter workers: a sink's limit is the sink's, not
    # each process's
    first, second = await store_factory(), await store_factory()
    assert await first.rate_permit("alpha", interval=60.0) == 0.0
    assert await second.rate_permit("alpha", interval=60.0) == 0.0  # the one permit of slack
    assert await first.rate_permit("alpha", interval=60.0) > 0.0
    assert await second.rate_permit("alpha", interval=60.0) > 0.0


# -- the query layer, attempt history, bulk-action marks, heartbeats (issue 13) ----------------


def contact_event(
    *,
    phone: str | None = None,
    email: str | None = None,
    call: str | None = None,
    campaign: str | None = None,
    received_at: datetime | None = None,
    source: str = "shop",
    type: str = "order.paid",
    raw: object = None,
) -> Event:
    event = make_event(source=source, type=type, received_at=received_at)
    return event.evolve(
        data=EventData(
            contact=Contact(phone=phone, email=email),
            call=Call(id=call) if call else None,
            campaign=Campaign(id=campaign) if campaign else None,
        ),
        raw=raw if raw is not None else event.raw,
    )


async def ids(store: Store, **filters: object) -> list[str]:
    page = await query.find_events(store, EventFilter.build(**filters), PageRequest(limit=100))  # type: ignore[arg-type]
    return [stored.event.id for stored in page.events]


async def test_every_filter_finds_its_events_newest_first(store):
    base = datetime.now(UTC) - timedelta(hours=1)
    ana = contact_event(
        phone="+525512345678",
        email="ana@example.com",
        call="call-1",
        campaign="camp-1",
        received_at=base,
        source="altur",
        type="call.ended",
        raw={"note": "Customer asked for a CALLBACK"},
    )
    bob = contact_event(
        phone="+14155550100",
        call="call-2",
        campaign="camp-1",
        received_at=base + timedelta(minutes=1),
        source="exotel",
        type="call.attempts_exhausted",
    )
    news = contact_event(
        email="Ana@Example.com",
        campaign="camp-2",
        received_at=base + timedelta(minutes=2),
        source="pelcro",
        type="campaign.completed",
    )
    for event, sinks in ((ana, ["crm", "slack"]), (bob, ["crm"]), (news, [])):
        await store.ingest(event, sinks)
    await store.dead_letter(await claim_one(store, "slack"), error="HTTP 400: no")

    assert await ids(store) == [news.id, bob.id, ana.id]
    assert await ids(store, source="exotel") == [bob.id]
    assert await ids(store, type="call.*") == [bob.id, ana.id]
    assert await ids(store, type="call.ended") == [ana.id]
    assert await ids(store, state="dead") == [ana.id]
    assert await ids(store, state="pending") == [bob.id, ana.id]
    assert await ids(store, sink="crm") == [bob.id, ana.id]
    assert await ids(store, sink="crm", state="dead") == []
    assert await ids(store, since=base + timedelta(seconds=30)) == [news.id, bob.id]
    assert await ids(store, until=base + timedelta(seconds=30)) == [ana.id]
    assert await ids(store, idempotency_key=bob.idempotency_key) == [bob.id]
    # a phone in any format, as E.164; an email in any case
    assert await ids(store, contact="+52 (55) 1234-5678") == [ana.id]
    assert await ids(store, contact="ANA@example.com") == [news.id, ana.id]
    assert await ids(store, call_id="call-2") == [bob.id]
    assert await ids(store, campaign_id="camp-1") == [bob.id, ana.id]
    assert await ids(store, campaign_id="camp-1", source="altur") == [ana.id]
    if "text" in store.supported_filters:
        assert await ids(store, text="callback") == [ana.id]
    else:
        with pytest.raises(QueryError, match="cannot filter on text") as refused:
            await ids(store, text="callback")
        assert refused.value.field == "text"


async def test_dead_letters_of_the_events_a_filter_matches(store):
    base = datetime.now(UTC) - timedelta(hours=1)
    ana = contact_event(phone="+525512345678", campaign="camp-1", received_at=base, source="altur")
    bob = contact_event(
        phone="+14155550100", campaign="camp-1", received_at=base + timedelta(minutes=1)
    )
    cy = contact_event(campaign="camp-1", received_at=base + timedelta(minutes=2))
    for event, sinks in ((ana, ["crm", "slack"]), (bob, ["crm"]), (cy, ["crm"])):
        await store.ingest(event, sinks)
    await store.dead_letter(await claim_one(store, "slack"), error="HTTP 400: no channel")
    for delivery in await store.claim("crm", limit=2, lease=30):  # ana's and bob's, not cy's
        await store.dead_letter(delivery, error=f"HTTP 410: gone ({delivery.event.id})")
    died = datetime.now(UTC)

    async def letters(limit: int = 50, cursor: str | None = None, **filters: object):
        where = EventFilter.build(**filters)  # type: ignore[arg-type]
        page = await query.find_dead_letters(store, where, PageRequest(limit=limit, cursor=cursor))
        return [(d.event_id, d.sink) for d in page.letters], page

    everything, page = await letters()
    assert everything == [(bob.id, "crm"), (ana.id, "crm"), (ana.id, "slack")]
    first = page.letters[1]
    assert (first.source, first.type, first.attempts) == ("altur", "order.paid", 1)
    assert first.reason == f"HTTP 410: gone ({ana.id})"
    assert_near(first.dead_at, died)
    assert (await letters(sink="slack"))[0] == [(ana.id, "slack")]
    assert (await letters(contact="+52 55 1234 5678"))[0] == [(ana.id, "crm"), (ana.id, "slack")]
    assert (await letters(campaign_id="camp-1", source="shop"))[0] == [(bob.id, "crm")]
    assert (await letters(until=base + timedelta(seconds=30), sink="crm"))[0] == [(ana.id, "crm")]
    # a page of events: the next one starts after the last event shown
    newest, page = await letters(limit=1)
    assert newest == [(bob.id, "crm")]
    assert (await letters(cursor=page.next_cursor))[0] == [(ana.id, "crm"), (ana.id, "slack")]
    with pytest.raises(QueryError, match="state dead") as refused:
        await letters(state="pending")
    assert refused.value.field == "state"


@pytest.mark.parametrize("where", [EventFilter(), EventFilter(campaign_id="camp-1")])
async def test_pages_walk_every_event_once_newest_first_with_ties(store, where):
    same = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        contact_event(campaign="camp-1", received_at=same + timedelta(seconds=i // 3))
        for i in range(8)
    ]
    for event in events:
        await store.ingest(event, ["alpha"])
    expected = [e.id for e in sorted(events, key=lambda e: (e.received_at, e.id), reverse=True)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await query.find_events(store, where, PageRequest(limit=3, cursor=cursor))
        seen += [stored.event.id for stored in page.events]
        # an event arriving meanwhile does not shift the pages (it is newer than the cursor)
        await store.ingest(make_event(), ["alpha"])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen[: len(expected)] == expected
    with pytest.raises(QueryError, match="cursor"):
        await query.find_events(store, EventFilter(), PageRequest(cursor="nonsense"))


async def test_attempts_are_recorded_with_their_outcome_and_purged_with_the_event(store):
    event = make_event(received_at=datetime.now(UTC) - timedelta(days=3))
    await store.ingest(event, ["alpha"])
    started = datetime.now(UTC)

    def attempt(delivery: Delivery, outcome: AttemptOutcome, **more: object) -> Attempt:
        return Attempt(
            sink=delivery.sink,
            number=delivery.attempts + 1,
            started_at=started,
            duration=0.25,
            outcome=outcome,
            trigger=delivery.trigger,
            **more,  # type: ignore[arg-type]
        )

    first = await claim_one(store, "alpha")
    assert first.trigger == Trigger.FIRST
    failed = attempt(
        first, AttemptOutcome.RETRY, status=503, error="HTTP 503: busy", response_excerpt="busy"
    )
    await store.retry_later(first, at=datetime.now(UTC), error="HTTP 503: busy", attempt=failed)
    # an outcome recorded again for the same claim changes nothing, the history included
    await store.retry_later(first, at=datetime.now(UTC), error="again", attempt=failed)
    second = await claim_one(store, "alpha", lease=0.2)
    assert second.trigger == Trigger.RETRY
    await asyncio.sleep(0.4)
    third = await claim_one(store, "alpha")  # the second's worker was lost
    await store.ack(third, attempt=attempt(third, AttemptOutcome.DONE, status=200))

    history = await store.list_attempts(event.id)
    assert [(a.number, a.outcome, a.trigger, a.status) for a in history] == [
        (1, AttemptOutcome.RETRY, Trigger.FIRST, 503),
        (2, AttemptOutcome.LOST, Trigger.RETRY, None),
        (3, AttemptOutcome.DONE, Trigger.RETRY, 200),
    ]
    assert history[0].response_excerpt == "busy"
    assert history[0].duration == 0.25
    assert history[1].error == LOST_WORKER
    assert 0.1 < history[1].duration < 5
    found = await query.event_with_attempts(store, event.id)
    assert found is not None
    assert found[1] == tuple(history)

    assert await store.purge(retention=86400) == 1
    assert await store.list_attempts(event.id) == []


async def test_settle_records_a_batch_of_outcomes_each_as_its_own_operation_would(store_factory):
    store, taker = await store_factory(), await store_factory()
    events = [make_event() for _ in range(6)]
    for event in events:
        await store.ingest(event, ["alpha"])
    claimed = await store.claim("alpha", limit=6, lease=30)
    assert [d.event.id for d in claimed] == [e.id for e in events]
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)

    def tried(delivery: Delivery, outcome: AttemptOutcome) -> Attempt:
        return Attempt(
            sink="alpha",
            number=delivery.attempts + 1,
            started_at=now,
            duration=0.01,
            outcome=outcome,
            trigger=delivery.trigger,
        )

    done, retried, released, dead, given_up, unrecorded = claimed
    settlements = [
        Settlement(
            delivery=done, state=DeliveryState.DONE, attempt=tried(done, AttemptOutcome.DONE)
        ),
        Settlement(
            delivery=retried,
            state=DeliveryState.PENDING,
            at=later,
            error="HTTP 503",
            attempt=tried(retried, AttemptOutcome.RETRY),
        ),
        Settlement(
            delivery=released, state=DeliveryState.PENDING, at=now, error="held", counted=False
        ),
        Settlement(
            delivery=dead,
            state=DeliveryState.DEAD,
            error="HTTP 400",
            attempt=tried(dead, AttemptOutcome.DEAD),
        ),
        Settlement(delivery=given_up, state=DeliveryState.DEAD, error="no more", counted=False),
    ]
    await store.settle(settlements)
    await store.settle([])  # nothing to record: nothing happens

    states = [record(await store.get_event(e.id), "alpha") for e in events]
    assert [(r.state, r.attempts, r.last_error) for r in states] == [
        (DeliveryState.DONE, 1, None),
        (DeliveryState.PENDING, 1, "HTTP 503"),
        (DeliveryState.PENDING, 0, "held"),
        (DeliveryState.DEAD, 1, "HTTP 400"),
        (DeliveryState.DEAD, 0, "no more"),
        (DeliveryState.INFLIGHT, 0, None),
    ]
    assert_near(states[1].next_attempt_at, later, timedelta(milliseconds=5))
    assert [a.outcome for a in await store.list_attempts(retried.event.id)] == [
        AttemptOutcome.RETRY
    ]
    assert await store.list_attempts(released.event.id) == []
    # the released one is due again at once, the retried one not before its time
    assert [d.event.id for d in await taker.claim("alpha", limit=10, lease=30)] == [
        released.event.id
    ]
    # settling the same claims again changes nothing: each claim's outcome is recorded once
    await store.settle(settlements)
    assert [record(await store.get_event(e.id), "alpha") for e in events[:2]] == states[:2]
    assert len(await store.list_attempts(done.event.id)) == 1
    with pytest.raises(ValueError, match="due again"):
        await store.settle([Settlement(delivery=unrecorded, state=DeliveryState.PENDING)])


async def test_a_bulk_action_never_revives_or_replays_a_delivery_twice(store):
    event = make_event()
    await store.ingest(event, ["alpha"])
    await store.dead_letter(await claim_one(store, "alpha"), error="HTTP 400")

    assert await store.retry_dead_letters(event_ids=[event.id], action="bulk-1") == 1
    delivery = await claim_one(store, "alpha")
    assert delivery.trigger == Trigger.DLQ_RETRY
    await store.dead_letter(delivery, error="HTTP 400 again")
    # the same action run again (after an interruption) leaves it; another action does not
    assert await store.retry_dead_letters(event_ids=[event.id], action="bulk-1") == 0
    assert await store.retry_dead_letters(sink="alpha", action="bulk-1") == 0
    assert await store.retry_dead_letters(event_ids=[event.id], action="bulk-2") == 1
    await store.ack(await claim_one(store, "alpha"))

    assert await store.replay(event.id, ["alpha", "beta"], action="replay-1") == 2
    assert (await claim_one(store, "beta")).trigger == Trigger.REPLAY
    assert await store.replay(event.id, ["alpha", "beta"], action="replay-1") == 0
    assert await store.replay(event.id, ["alpha"]) == 1


async def test_find_and_count_deliveries_for_bulk_actions(store):
    events = [
        make_event(received_at=datetime.now(UTC) - timedelta(seconds=10 - i)) for i in range(5)
    ]
    for event in events:
        await store.ingest(event, ["alpha", "beta"])
    for _ in range(3):
        await store.dead_letter(await claim_one_of(store, "alpha"), error="HTTP 400")
    dead = EventFilter(state=DeliveryState.DEAD)
    assert await store.count_deliveries(dead) == {"alpha": 3}
    assert await store.count_deliveries(EventFilter()) == {"alpha": 5, "beta": 5}
    plan = await query.delivery_plan(store, EventFilter(sink="beta"))
    assert (plan.by_sink, plan.total) == ({"beta": 5}, 5)
    walked: list[tuple[str, str]] = []
    after = None
    while True:
        batch = await store.find_deliveries(EventFilter(), limit=2, after=after)
        if not batch:
            break
        walked += [(cursor.event_id, sink) for cursor, sink in batch]
        after = batch[-1][0]
    assert walked == [(e.id, sink) for e in reversed(events) for sink in ("alpha", "beta")]


async def claim_one_of(store: Store, sink: str) -> Delivery:
    [delivery] = await store.claim(sink, limit=1, lease=30)
    return delivery


async def test_heartbeats_say_when_a_delivering_process_was_last_seen(store):
    assert await store.last_heartbeat() is None
    await store.heartbeat("worker-1", ttl=0.3)
    assert_near(await store.last_heartbeat(), datetime.now(UTC))
    await asyncio.sleep(0.5)
    assert await store.last_heartbeat() is None


# -- bulk actions on a filter (eventrouter.query.run_bulk) -------------------------------


class Interrupted(Exception):
    """Stands for a Ctrl-C in the middle of an action."""


async def dead_letters(store: Store, count: int, sinks: list[str]) -> list[str]:
    ids = []
    for i in range(count):
        event = make_event(received_at=datetime.now(UTC) - timedelta(seconds=100 - i))
        await store.ingest(event, sinks)
        ids.append(event.id)
    for sink in sinks:
        for delivery in await store.claim(sink, limit=count, lease=30):
            await store.dead_letter(delivery, error="HTTP 400: refused")
    return ids


async def test_an_interrupted_dlq_retry_resumed_does_the_rest_and_nothing_twice(store_factory):
    store = await store_factory()
    await dead_letters(store, 12, ["alpha", "beta"])
    action = BulkAction.start("dlq_retry", EventFilter(), sinks={"alpha", "beta"})
    walked = []

    def interrupt_after_first(n: int) -> None:
        walked.append(n)
        raise Interrupted

    with pytest.raises(Interrupted):
        await query.run_bulk(store, action, batch=5, progress=interrupt_after_first)
    assert walked == [10]  # 5 events, 2 sinks each
    assert (await store.queue_depth())["alpha"] == {"pending": 5, "dead": 7}
    # the first five are delivered and die again meanwhile: the resumed action leaves them
    for sink in ("alpha", "beta"):
        for delivery in await store.claim(sink, limit=50, lease=30):
            assert delivery.trigger == Trigger.DLQ_RETRY
            await store.dead_letter(delivery, error="HTTP 400: still refused")

    again = BulkAction.resume(
        "dlq_retry", EventFilter(), sinks={"alpha", "beta"}, action_id=action.id
    )
    assert await query.run_bulk(store, again, batch=5) == 14
    assert await query.run_bulk(store, again, batch=5) == 0
    assert await store.queue_depth() == {
        "alpha": {"pending": 7, "dead": 5},
        "beta": {"pending": 7, "dead": 5},
    }
    with pytest.raises(QueryError, match="not the id of an earlier replay"):
        BulkAction.resume("replay", EventFilter(), sinks={"alpha"}, action_id=action.id)


async def test_a_replay_beside_a_running_worker_delivers_each_event_once_more(store_factory):
    store = await store_factory()
    worker_store = await store_factory()  # another process
    ids = []
    for i in range(30):
        event = make_event(received_at=datetime.now(UTC) - timedelta(seconds=60 - i))
        await store.ingest(event, ["alpha"])
        ids.append(event.id)
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            for delivery in await worker_store.claim("alpha", limit=4, lease=30):
                await asyncio.sleep(0.001)
                done = Attempt(
                    sink="alpha",
                    number=delivery.attempts + 1,
                    started_at=datetime.now(UTC),
                    duration=0.001,
                    outcome=AttemptOutcome.DONE,
                    trigger=delivery.trigger,
                )
                await worker_store.ack(delivery, attempt=done)
            await asyncio.sleep(0.001)

    running = asyncio.create_task(worker())
    try:
        action = BulkAction.start("replay", EventFilter(source="shop"), sinks={"alpha"})
        assert await query.run_bulk(store, action, batch=7) == 30
        assert await query.run_bulk(store, action, batch=7) == 0  # run again: nothing twice
        for _ in range(500):
            if await store.queue_depth() == {}:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert await store.queue_depth() == {}
    for event_id in ids:
        triggers = [a.trigger for a in await store.list_attempts(event_id)]
        assert triggers.count(Trigger.REPLAY) == 1, (event_id, triggers)


async def test_a_replay_or_retry_made_in_the_console_is_recorded_as_its_trigger(store):
    event = make_event()
    await store.ingest(event, ["alpha"])
    await store.dead_letter(await claim_one(store, "alpha"), error="HTTP 400")

    assert await store.retry_dead_letters(event_ids=[event.id], action="console:alice:1") == 1
    revived = await claim_one(store, "alpha")
    assert revived.trigger == Trigger.CONSOLE
    await store.ack(revived)
    assert await store.replay(event.id, ["alpha"], action="console:bob:2") == 1
    assert (await claim_one(store, "alpha")).trigger == Trigger.CONSOLE
