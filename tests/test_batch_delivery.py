"""Batch delivery (``Sink.deliver_batch``): a batch per slot, one store write for its outcomes,
per-event refusals, and one circuit-breaker attempt per batch."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from eventrouter import hookimpl
from eventrouter.app import DISPATCHER
from eventrouter.events import Event, utcnow
from eventrouter.store import AttemptOutcome
from eventrouter.testing import Recorder, new_event_id


def batch_sink(**options: Any) -> dict[str, Any]:
    return batch_sink_of("recording-batch", **options)


def batch_sink_of(plugin: str, **options: Any) -> dict[str, Any]:
    delivery = {"retry_schedule": ["50ms", "50ms"], "jitter": 0, "batch_size": 20}
    return {"plugin": plugin, **options, "delivery": {**delivery, **options.pop("delivery", {})}}


def event(kind: str = "call.ended") -> Event:
    now = utcnow()
    key = new_event_id()
    return Event(
        id=key,
        source="demo",
        type=kind,
        time=now,
        provider="demo",
        provider_type=kind,
        idempotency_key=key,
        received_at=now,
    )


async def queue(router: Any, sink: str, events: list[Event]) -> None:
    """Store ``events`` for ``sink`` while it is paused, then resume and wake it: one backlog.

    Without the pause the worker may wake (its idle poll) between two of the ingests' commits
    and claim a part of them: a loaded CI machine did, and the batches were not those the
    test expects."""
    store = router.store
    control = await store.get_control(sink)
    assert await store.put_control(sink, attrs.evolve(control, paused=True))
    await asyncio.gather(*(store.ingest(e, [sink]) for e in events))
    paused = await store.get_control(sink)
    assert await store.put_control(sink, attrs.evolve(paused, paused=False))
    router.client.app[DISPATCHER].notify([sink])


async def states(router: Any, events: list[Event], sink: str) -> list[tuple[str, int]]:
    found = []
    for e in events:
        stored = await router.store.get_event(e.id)
        [record] = [r for r in stored.deliveries if r.sink == sink]
        found.append((record.state.value, record.attempts))
    return found


async def test_a_backlog_is_delivered_in_batches_each_recorded_once(
    make_router, config_with, recorded: Recorder
):
    router = await make_router(config_with({"bulk": batch_sink()}))
    backlog = [event() for _ in range(130)]
    await queue(router, "bulk", backlog)

    await recorded.wait_for("bulk", 130)

    sizes = recorded.batches["bulk"]
    assert max(sizes) <= 20, sizes
    assert sum(sizes) == 130, sizes
    assert len(sizes) <= 13, sizes  # batches, not one call per event
    assert sorted(e.id for e in recorded.events["bulk"]) == sorted(e.id for e in backlog)
    for _ in range(100):
        if await router.store.queue_depth() == {}:
            break
        await asyncio.sleep(0.05)
    assert await router.store.queue_depth() == {}
    assert set(await states(router, backlog, "bulk")) == {("done", 1)}
    attempts = await router.store.list_attempts(backlog[0].id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, AttemptOutcome.DONE)]


async def test_events_refused_one_by_one_fail_alone(make_router, config_with, recorded):
    router = await make_router(
        config_with({"bulk": batch_sink(refuse_types=["refund.created"], fail_with="permanent")})
    )
    calls = [event() for _ in range(6)]
    refunds = [event("refund.created") for _ in range(3)]
    await queue(router, "bulk", [*calls[:3], *refunds, *calls[3:]])

    await recorded.wait_for("bulk", 6)
    for _ in range(100):
        if {s for s, _ in await states(router, refunds, "bulk")} == {"dead"}:
            break
        await asyncio.sleep(0.05)

    assert await states(router, calls, "bulk") == [("done", 1)] * 6
    assert await states(router, refunds, "bulk") == [("dead", 1)] * 3
    stored = await router.store.get_event(refunds[0].id)
    assert stored.deliveries[0].last_error == "recording sink refused attempt 1"
    [attempt] = await router.store.list_attempts(refunds[0].id)
    assert attempt.outcome == AttemptOutcome.DEAD
    # the sink took some of the batch: it is up, the circuit has nothing to count
    control = await router.store.get_control("bulk")
    assert control.failures == 0


async def test_a_failed_batch_is_one_failure_for_the_circuit_and_every_event_is_retried(
    make_router, config_with, recorded
):
    router = await make_router(
        config_with(
            {"bulk": batch_sink(fail_times=2, delivery={"circuit_failures": 3, "batch_size": 50})}
        )
    )
    backlog = [event() for _ in range(40)]
    await queue(router, "bulk", backlog)

    await recorded.wait_for("bulk", 40)

    # two failed batches of 40: not 80 failures, so the circuit (3 in a row) never opened
    control = await router.store.get_control("bulk")
    assert control.state.value == "closed"
    for _ in range(100):
        if {s for s, _ in await states(router, backlog, "bulk")} == {"done"}:
            break
        await asyncio.sleep(0.05)
    # the failed batch's retries fell due at one moment, so they came back as one batch: every
    # event failed twice, then was delivered (their times once differed by microseconds, and a
    # busy machine's retry claim took a part: batches of 40, 35, 5, 35)
    assert recorded.batches["bulk"] == [40, 40, 40]
    assert set(await states(router, backlog, "bulk")) == {("done", 3)}
    history = await router.store.list_attempts(backlog[-1].id)
    assert [a.outcome for a in history] == [
        AttemptOutcome.RETRY,
        AttemptOutcome.RETRY,
        AttemptOutcome.DONE,
    ]
    assert history[0].error == "recording sink failed attempt 1"


async def test_a_batch_that_outlasts_the_timeout_fails_as_a_whole(
    make_router, config_with, recorded
):
    router = await make_router(
        config_with({"slow": batch_sink(delay="300ms", delivery={"timeout": "100ms"})})
    )
    backlog = [event() for _ in range(5)]
    await queue(router, "slow", backlog)
    for _ in range(100):
        found = await states(router, backlog, "slow")
        if all(attempts >= 1 for _, attempts in found):
            break
        await asyncio.sleep(0.05)
    stored = await router.store.get_event(backlog[0].id)
    assert stored.deliveries[0].last_error == "timed out after 0.1s"
    assert recorded.events.get("slow", []) == []


async def test_observers_hear_of_each_event_of_a_batch(
    make_router, config_with, recorded, register_plugin
):
    heard: list[tuple[str, str]] = []

    class Observer:
        @hookimpl
        def delivery_succeeded(self, event, sink, attempt, duration):
            heard.append(("succeeded", event.id))

        @hookimpl
        def event_dead_lettered(self, event, sink, reason):
            heard.append(("dead", event.id))

    register_plugin(Observer())
    router = await make_router(
        config_with({"bulk": batch_sink(refuse_types=["refund.created"], fail_with="permanent")})
    )
    call, refund = event(), event("refund.created")
    await queue(router, "bulk", [call, refund])
    for _ in range(100):
        if len(heard) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(heard) == sorted([("succeeded", call.id), ("dead", refund.id)])


async def test_a_rate_limited_batch_sink_takes_one_event_at_a_time(
    make_router, config_with, recorded
):
    router = await make_router(config_with({"bulk": batch_sink(delivery={"rate_limit": "50/s"})}))
    await queue(router, "bulk", [event() for _ in range(5)])
    await recorded.wait_for("bulk", 5)
    assert recorded.batches["bulk"] == [1] * 5


async def test_a_batch_answer_that_is_not_a_mapping_fails_the_batch_and_says_why(
    make_router, config_with, register_plugin, caplog
):
    from eventrouter import Sink

    class Sloppy(Sink):
        type_name = "sloppy"

        async def deliver(self, event: Event) -> None:
            raise AssertionError("a batching sink gets batches")

        async def deliver_batch(self, events):
            return [event.id for event in events]  # not what the contract asks

    class Plugin:
        @hookimpl
        def register_sinks(self, register):
            register(Sloppy)

    register_plugin(Plugin())
    router = await make_router(config_with({"sloppy": batch_sink_of("sloppy")}))
    backlog = [event() for _ in range(3)]
    await queue(router, "sloppy", backlog)
    for _ in range(100):
        if all(attempts for _, attempts in await states(router, backlog, "sloppy")):
            break
        await asyncio.sleep(0.05)
    stored = await router.store.get_event(backlog[0].id)
    error = stored.deliveries[0].last_error
    assert error == "TypeError: deliver_batch returned list, not a mapping of event ids to errors"
    assert "sink sloppy raised an unexpected error delivering a batch of 3 events" in caplog.text


async def test_events_that_trickle_in_gather_into_batches_for_batch_wait(
    make_router, config_with, recorded
):
    router = await make_router(config_with({"bulk": batch_sink(delivery={"batch_wait": "300ms"})}))
    trickle = [event() for _ in range(10)]
    for e in trickle:  # one every 20 ms: without the wait, nearly one claim each
        await queue(router, "bulk", [e])
        await asyncio.sleep(0.02)
    await recorded.wait_for("bulk", 10)
    assert len(recorded.batches["bulk"]) <= 5, recorded.batches["bulk"]  # 10 without the wait


async def test_a_long_batch_wait_does_not_hold_up_a_stop(make_router, config_with, recorded):
    router = await make_router(config_with({"bulk": batch_sink(delivery={"batch_wait": "5s"})}))
    await queue(router, "bulk", [event()])
    await recorded.wait_for("bulk", 1)
    await asyncio.sleep(0.1)  # the worker is in its wait now
    dispatcher = router.client.app[DISPATCHER]
    async with asyncio.timeout(2):
        await dispatcher.stop(grace=1)
