"""Delivery: per-sink workers, retry schedule, dead letters, restart, observer hooks."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventrouter import hookimpl
from eventrouter.server import DISPATCHER
from eventrouter.sinks import retry_after_seconds
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
    for n in range(9):
        await router.post("demo", {"type": "x", "data": {"n": n}})
    await recorded.wait_for("limited", 9, timeout=5)
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
