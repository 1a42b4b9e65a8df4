"""A sink that is down waits instead of burning its retries (SQLite store, one worker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from eventrouter.circuit import CircuitState
from tests.outage_kit import Switch, SwitchPlugin, outage_sinks, play_outage, post_many, wait_until


@pytest.fixture
def switch(register_plugin: Any) -> Switch:
    state = Switch()
    register_plugin(SwitchPlugin(state))
    return state


async def test_a_30_minute_outage_dead_letters_nothing_and_delivers_everything_once(
    make_router, config_with, switch: Switch
) -> None:
    router = await make_router(config_with(outage_sinks()))
    figures = await play_outage([router], switch, events=1000)
    print(f"SQLite outage, 1000 events: {figures}")


async def test_metrics_show_the_circuit_state(make_router, config_with, switch: Switch) -> None:
    router = await make_router(config_with(outage_sinks()))
    switch.down.add("crm")
    await post_many(router, 10, tag="metrics")

    async def gauge() -> str:
        async with router.client.get("/metrics") as answer:
            text = await answer.text()
        return next(
            line
            for line in text.splitlines()
            if line.startswith('eventrouter_sink_circuit_state{sink="crm"}')
        )

    deadline = time.monotonic() + 5
    while (await router.store.get_control("crm")).state is CircuitState.CLOSED:
        assert time.monotonic() < deadline, "the circuit never opened"
        await asyncio.sleep(0.05)
    assert (await gauge()).split()[-1] in ("2.0", "1.0")
    switch.down.discard("crm")
    await wait_until(lambda: len(switch.received("crm")) == 10, timeout=5, what="recovery")
    assert (await gauge()).split()[-1] == "0.0"


async def test_permanent_errors_do_not_open_the_circuit(make_router, config_with, recorded) -> None:
    delivery = {"circuit_failures": 3, "retry_schedule": ["50ms"], "jitter": 0}
    router = await make_router(
        config_with(
            {
                "picky": {
                    "plugin": "recording",
                    "fail_times": 6,
                    "fail_with": "permanent",
                    "delivery": delivery,
                }
            }
        )
    )
    for index in range(7):
        await router.post("demo", {"type": "x", "n": index})
    await recorded.wait_for("picky", 1)
    deadline = time.monotonic() + 5
    while len(await router.store.list_dead_letters()) < 6:
        assert time.monotonic() < deadline, "six dead letters expected"
        await asyncio.sleep(0.05)
    control = await router.store.get_control("picky")
    assert (control.state, control.failures) == ("closed", 0)
    assert recorded.attempts["picky"] == 7


async def test_a_failure_ratio_over_the_window_opens_the_circuit(tmp_path) -> None:
    from eventrouter.circuit import RATIO_MIN_ATTEMPTS, SinkGate
    from eventrouter.config import DeliveryPolicy
    from eventrouter.events import Event, utcnow
    from eventrouter.store.base import Delivery
    from eventrouter.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "ratio.db")
    await store.open()
    try:
        policy = DeliveryPolicy(circuit_failures=0, circuit_failure_ratio=0.5)
        gate = SinkGate("crm", policy, store)
        now = utcnow()
        event = Event(
            id="evt_1",
            source="demo",
            type="x",
            time=now,
            provider="demo",
            provider_type="x",
            idempotency_key="k",
            received_at=now,
        )
        delivery = Delivery(event=event, sink="crm", attempts=0, token="0")
        # success, failure, success, ...: never two failures in a row, half of them failed
        for index in range(RATIO_MIN_ATTEMPTS - 1):
            if index % 2:
                assert not await gate.failed(delivery, error="HTTP 503", retry_after=None)
            else:
                await gate.succeeded(delivery)
        assert (await store.get_control("crm")).state == "closed"  # 19 attempts: too few
        await gate.failed(delivery, error="HTTP 503", retry_after=None)  # 10 of 20 failed
        control = await store.get_control("crm")
        assert (control.state, control.last_error) == ("open", "HTTP 503")
    finally:
        await store.close()
