"""Delivery: per-sink workers, retry schedule, dead letters, restart, observer hooks."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from eventrouter import hookimpl
from eventrouter.app import DISPATCHER
from eventrouter.errors import PermanentError, RetryableError, StoreUnavailable
from eventrouter.sinks import error_for_status, retry_after_seconds
from eventrouter.testing import Recorder


def fast(**delivery) -> dict:
    return {"retry_schedule": ["50ms", "100ms"], "jitter": 0, **delivery}


async def wait_state(router, event_id: str, sink: str, state: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = await router.store.get_event(event_id)
        record = next(r for r in stored.deliveries if r.sink == sink)
        if record.state == state:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"{sink} delivery of {event_id} never reached {state}: {record}")


async def test_retries_follow_the_schedule_then_succeed(
    make_router, config_with, recorded: Recorder
):
    router = await make_router(
        config_with({"flaky": {"plugin": "recording", "fail_times": 2, "delivery": fast()}})
    )
    started = time.monotonic()
    _, body = await router.post("demo", {"type": "x"})
    await recorded.wait_for("flaky", 1)
    assert time.monotonic() - started >= 0.15  # 50 ms + 100 ms of scheduled waits
    assert recorded.attempts["flaky"] == 3
    record = await wait_state(router, body["event_id"], "flaky", "done")
    assert record.attempts == 3
    assert record.last_error is None


async def test_exhausted_schedule_dead_letters_with_the_reason_and_dlq_retry_delivers(
    make_router, config_with, recorded
):
    router = await make_router(
        config_with({"down": {"plugin": "recording", "fail_times": 3, "delivery": fast()}})
    )
    _, body = await router.post("demo", {"type": "x"})
    record = await wait_state(router, body["event_id"], "down", "dead")
    assert record.attempts == 3
    assert record.last_error == "gave up after 3 attempts: recording sink failed attempt 3"
    [letter] = await router.store.list_dead_letters()
    assert (letter.event_id, letter.sink, letter.attempts) == (body["event_id"], "down", 3)
    assert recorded.events == {}
    assert await router.store.retry_dead_letters(sink="down") == 1
    [event] = await recorded.wait_for("down", 1)  # the fourth attempt succeeds
    assert event.id == body["event_id"]
    assert await router.store.list_dead_letters() == []


async def test_permanent_error_dead_letters_at_once(make_router, config_with, recorded):
    router = await make_router(
        config_with(
            {
                "picky": {
                    "plugin": "recording",
                    "fail_times": 1,
                    "fail_with": "permanent",
                    "delivery": fast(),
                }
            }
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    record = await wait_state(router, body["event_id"], "picky", "dead")
    assert (record.attempts, record.last_error) == (1, "recording sink refused attempt 1")


async def test_retry_after_overrides_the_schedule(make_router, config_with, recorded):
    delivery = {"retry_schedule": ["1h"], "jitter": 0}
    router = await make_router(
        config_with(
            {
                "limited": {
                    "plugin": "recording",
                    "fail_times": 1,
                    "retry_after": 0.1,
                    "delivery": delivery,
                }
            }
        )
    )
    await router.post("demo", {"type": "x"})
    await recorded.wait_for("limited", 1, timeout=5)


@pytest.mark.parametrize("retry_after", [1e20, float("inf"), float("nan"), -5.0])
async def test_retry_after_is_capped_by_the_schedule(
    make_router, config_with, recorded, retry_after
):
    """A remote end cannot park a delivery for ever (or break the bookkeeping with inf/nan)."""
    delivery = {"retry_schedule": ["100ms", "200ms"], "jitter": 0}
    router = await make_router(
        config_with(
            {
                "limited": {
                    "plugin": "recording",
                    "fail_times": 1,
                    "retry_after": retry_after,
                    "delivery": delivery,
                }
            }
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    await recorded.wait_for("limited", 1, timeout=5)
    record = await wait_state(router, body["event_id"], "limited", "done")
    assert record.attempts == 2


def test_retry_after_header_values():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    for nonsense in ("inf", "nan", "1e400", "soon", "", None, "Wed, 99 Foo 99999 99:99:99 GMT"):
        assert retry_after_seconds(nonsense) is None


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 599])
def test_statuses_worth_retrying_are_retryable_honouring_retry_after(status):
    # 409: the remote end is busy with a conflicting request (a lock, an edit in flight)
    error = error_for_status(status, detail="busy", retry_after="7")
    assert isinstance(error, RetryableError)
    assert error.retry_after == 7.0
    assert error.message == f"HTTP {status}: busy"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 422])
def test_other_statuses_are_permanent(status):
    assert isinstance(error_for_status(status, detail="no", retry_after="7"), PermanentError)


async def test_retry_delays_are_jittered_around_the_schedule(make_router, config_with):
    router = await make_router(
        config_with(
            {
                "jittered": {
                    "plugin": "recording",
                    "delivery": {"retry_schedule": ["10s", "20s"], "jitter": 0.5},
                },
                "exact": {
                    "plugin": "recording",
                    "delivery": {"retry_schedule": ["10s", "20s"], "jitter": 0},
                },
            }
        )
    )
    workers = router.client.app[DISPATCHER].workers
    first = [workers["jittered"].delay(1) for _ in range(200)]
    later = [workers["jittered"].delay(5) for _ in range(200)]  # past the schedule: its last

    # within +-50% of the scheduled delay, and spread over both sides of it (retries from
    # many failed deliveries must not arrive in lock-step)
    assert all(5.0 <= d <= 15.0 for d in first)
    assert min(first) < 9.0
    assert max(first) > 11.0
    assert all(10.0 <= d <= 30.0 for d in later)
    assert min(later) < 18.0
    assert max(later) > 22.0
    assert {workers["exact"].delay(1) for _ in range(20)} == {10.0}
    # a Retry-After replaces the schedule and is not jittered
    assert {workers["jittered"].delay(1, retry_after=3.0) for _ in range(20)} == {3.0}


async def test_timeout_counts_as_a_retryable_failure(make_router, config_with, recorded):
    router = await make_router(
        config_with(
            {"slow": {"plugin": "recording", "delay": "2s", "delivery": fast(timeout="100ms")}}
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    record = await wait_state(router, body["event_id"], "slow", "pending")
    for _ in range(100):
        record = next(r for r in (await router.store.get_event(body["event_id"])).deliveries)
        if record.last_error:
            break
        await asyncio.sleep(0.02)
    assert record.last_error == "timed out after 0.1s"


async def test_a_slow_sink_does_not_delay_another(make_router, config_with, recorded):
    router = await make_router(
        config_with(
            {
                "slow": {"plugin": "recording", "delay": "3s", "delivery": {"concurrency": 1}},
                "fast": {"plugin": "recording"},
            }
        )
    )
    started = time.monotonic()
    for n in range(5):
        await router.post("demo", {"type": "x", "data": {"n": n}})
    await recorded.wait_for("fast", 5, timeout=2)
    assert time.monotonic() - started < 2
    assert "slow" not in recorded.events


async def test_concurrency_limit_is_respected(make_router, config_with, recorded):
    active = 0
    peak = 0
    router = await make_router(
        config_with(
            {"limited": {"plugin": "recording", "delay": "100ms", "delivery": {"concurrency": 3}}}
        )
    )
    sink = router.config.sinks["limited"].sink
    original = sink.deliver

    async def counting(event):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await original(event)
        finally:
            active -= 1

    sink.deliver = counting
    # the nine wait while the sink is paused, so the worker finds a backlog: posted one by one
    # to a working sink, three were in flight only if each post took under an attempt's 100 ms
    store = router.store
    await store.put_control(
        "limited", attrs.evolve(await store.get_control("limited"), paused=True)
    )
    for n in range(9):
        await router.post("demo", {"type": "x", "data": {"n": n}})
    paused = await store.get_control("limited")
    assert await store.put_control("limited", attrs.evolve(paused, paused=False))
    router.client.app[DISPATCHER].notify(["limited"])
    await recorded.wait_for("limited", 9, timeout=10)
    assert peak == 3


async def test_pending_deliveries_survive_a_restart(make_router, config_with, recorded, tmp_path):
    sinks = {
        "later": {
            "plugin": "recording",
            "fail_times": 1,
            "delivery": {"retry_schedule": ["1s"], "jitter": 0},
        }
    }
    first = await make_router(config_with(sinks))
    _, body = await first.post("demo", {"type": "x"})
    await wait_state(first, body["event_id"], "later", "pending")
    await first.client.close()  # shut down before the retry is due
    assert recorded.events == {}
    second = await make_router(config_with(sinks))
    [event] = await recorded.wait_for("later", 1, timeout=5)
    assert event.id == body["event_id"]
    await wait_state(second, body["event_id"], "later", "done")


async def test_observer_hooks_see_success_failure_and_dead_letters(
    make_router, config_with, recorded, register_plugin
):
    calls: list[tuple] = []

    class Observer:
        @hookimpl
        def delivery_succeeded(self, event, sink, attempt, duration):
            calls.append(("succeeded", sink.name, attempt, duration >= 0))

        @hookimpl
        async def delivery_failed(self, event, sink, attempt, error, retry_at):
            calls.append(("failed", sink.name, attempt, error, retry_at is None))

        @hookimpl
        def event_dead_lettered(self, event, sink, reason):
            calls.append(("dead", sink.name, reason))

    register_plugin(Observer())
    router = await make_router(
        config_with(
            {
                "ok": {"plugin": "recording", "fail_times": 1, "delivery": fast()},
                "bad": {
                    "plugin": "recording",
                    "fail_times": 1,
                    "fail_with": "permanent",
                    "delivery": fast(),
                },
            }
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    await recorded.wait_for("ok", 1)
    await wait_state(router, body["event_id"], "bad", "dead")
    await asyncio.sleep(0.05)
    assert sorted(calls, key=str) == sorted(
        [
            ("failed", "ok", 1, "recording sink failed attempt 1", False),
            ("succeeded", "ok", 2, True),
            ("failed", "bad", 1, "recording sink refused attempt 1", True),
            ("dead", "bad", "recording sink refused attempt 1"),
        ],
        key=str,
    )


async def test_replay_delivers_a_stored_event_again(make_router, config_with, recorded):
    router = await make_router(
        config_with(
            {"a": {"plugin": "recording"}, "b": {"plugin": "recording"}}, [{"sinks": ["a"]}]
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    await recorded.wait_for("a", 1)
    assert await router.store.replay(body["event_id"], ["a", "b"]) == 2
    await recorded.wait_for("a", 2, timeout=3)
    await recorded.wait_for("b", 1, timeout=3)
    assert recorded.events["a"][0].id == recorded.events["a"][1].id == recorded.events["b"][0].id


async def test_lease_is_the_timeout_plus_the_configured_margin(make_router, config_with):
    router = await make_router(
        config_with(
            {
                "default": {"plugin": "recording", "delivery": {"timeout": "5s"}},
                "short": {
                    "plugin": "recording",
                    "delivery": {"timeout": "5s", "lease_margin": "2s"},
                },
            }
        )
    )
    workers = router.client.app[DISPATCHER].workers
    assert (workers["default"].lease, workers["short"].lease) == (35.0, 7.0)


async def test_a_claim_that_gets_nothing_although_work_is_due_backs_off(
    make_router, config_with, monkeypatch
):
    """next_due says "due now" but claims get nothing (e.g. leases the store cannot take over
    yet): the worker must not spin on 10 ms sleeps, hammering the store."""
    router = await make_router(config_with({"stuck": {"plugin": "recording"}}))
    store = router.store
    claims: list[float] = []

    async def due_now(sink):
        return datetime.now(UTC) - timedelta(seconds=1)

    async def nothing(sink, *, limit, lease):
        claims.append(time.monotonic())
        return []

    monkeypatch.setattr(store, "next_due", due_now)
    monkeypatch.setattr(store, "claim", nothing)
    router.client.app[DISPATCHER].notify(["stuck"])
    await asyncio.sleep(1.5)

    # 10, 20, 40, ... ms up to the poll interval: about 8 claims in 1.5 s (a spin: 150)
    assert 3 <= len(claims) <= 15, len(claims)
    gaps = [b - a for a, b in itertools.pairwise(claims[-4:])]
    assert min(gaps) >= 0.1, gaps


async def test_a_failed_outcome_write_is_retried_before_the_lease_ends(
    make_router, config_with, recorded, monkeypatch
):
    """A store blip when recording a success must not lose it: delivered again a lease later."""
    router = await make_router(config_with({"ok": {"plugin": "recording"}}))
    store = router.store
    real_settle = store.settle
    failures = 3

    async def flaky_settle(settlements):
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreUnavailable("Redis ack failed: Connection reset by peer")
        await real_settle(settlements)

    monkeypatch.setattr(store, "settle", flaky_settle)
    _, body = await router.post("demo", {"type": "x"})

    # 10 s: room for a slow machine, still far short of the 60 s lease a lost outcome waits for
    record = await wait_state(router, body["event_id"], "ok", "done", timeout=10)
    assert record.attempts == 1
    assert failures == 0
    assert len(recorded.events["ok"]) == 1  # the lease is 60 s: nothing delivered twice


async def test_an_outcome_that_cannot_be_written_is_given_up_before_the_lease_ends(
    make_router, config_with, recorded, monkeypatch, caplog
):
    router = await make_router(
        config_with(
            {"ok": {"plugin": "recording", "delivery": {"timeout": "1s", "lease_margin": "1.5s"}}}
        )
    )
    tries: list[float] = []

    async def broken_settle(settlements):
        tries.append(time.monotonic())
        raise StoreUnavailable("Redis ack failed")

    monkeypatch.setattr(router.store, "settle", broken_settle)
    started = time.monotonic()
    await router.post("demo", {"type": "x"})
    await recorded.wait_for("ok", 1)
    deadline = time.monotonic() + 5
    while "could not record the outcome" not in caplog.text:
        assert time.monotonic() < deadline, tries
        await asyncio.sleep(0.05)

    # retried with a growing backoff, and given up a second before the 2.5 s lease ends
    assert 4 <= len(tries) <= 12, len(tries)
    assert tries[-1] - tries[0] < 2.5 - 0.9
    assert tries[0] - started < 1.0
    assert f"after {len(tries)} tries" in caplog.text


async def test_a_delivery_whose_workers_died_is_dead_lettered_after_its_attempts(
    make_router, config_with, recorded, register_plugin
):
    """Attempts cut short by a worker that died (the event may be what kills it) count: after
    the sink's attempts it is a dead letter, and the sink never sees it again."""
    dead: list[tuple[str, str]] = []

    class Observer:
        @hookimpl
        def event_dead_lettered(self, event, sink, reason):
            dead.append((sink.name, reason))

    register_plugin(Observer())
    sinks = {"fragile": {"plugin": "recording", "delivery": fast()}}  # 3 attempts
    ingest_only = await make_router(config_with(sinks), deliver=False)
    _, body = await ingest_only.post("demo", {"type": "x"})
    for _ in range(3):  # three workers (of other processes) die delivering it
        claimed = await ingest_only.store.claim("fragile", limit=1, lease=0.1)
        assert [d.event.id for d in claimed] == [body["event_id"]]
        await asyncio.sleep(0.15)

    worker = await make_router(config_with(sinks))  # its worker takes the delivery over

    record = await wait_state(worker, body["event_id"], "fragile", "dead")
    reason = "gave up after 3 attempts: worker lost 3 times during delivery"
    assert (record.attempts, record.last_error) == (3, reason)
    [letter] = await worker.store.list_dead_letters()
    assert (letter.attempts, letter.reason) == (3, reason)
    assert dead == [("fragile", reason)]
    assert recorded.attempts.get("fragile", 0) == 0


async def test_stop_does_not_hang_when_a_cancellation_is_lost(
    make_router, config_with, monkeypatch
):
    """On Python 3.11 redis-py can drop a cancellation (asyncio.wait_for): the wake-up watcher
    and the purge loop must still end when the server stops."""
    from eventrouter.store.sqlite import SQLiteStore

    lost: list[str] = []

    async def stubborn(what: str, result: Any) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.append(what)  # dropped once, as wait_for does when the result is ready too
        return result

    async def watch(self, sinks, wake):
        await stubborn("watch", None)
        await asyncio.Event().wait()  # and carries on listening

    async def purge(self, *, retention):
        return await stubborn("purge", 0)

    monkeypatch.setattr(SQLiteStore, "watch", watch)
    monkeypatch.setattr(SQLiteStore, "purge", purge)
    router = await make_router(config_with({"ok": {"plugin": "recording"}}))
    await asyncio.sleep(0.05)

    started = time.monotonic()
    await asyncio.wait_for(router.client.close(), timeout=10)

    assert time.monotonic() - started < 3
    assert sorted(lost) == ["purge", "watch"]
