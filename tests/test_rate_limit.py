"""``rate_limit`` per sink (shared by every process on the store) and a Retry-After that holds the sink."""

from __future__ import annotations

from typing import Any

import pytest

from eventrouter.config import parse_config
from eventrouter.errors import ConfigError
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.ratelimit import RateLimit, gcra, parse_rate_limit, shared_gcra
from tests.outage_kit import (
    RATE_RANGE,
    Switch,
    SwitchPlugin,
    measure_rate,
    post_many,
    wait_until,
)


@pytest.fixture
def switch(register_plugin: Any) -> Switch:
    state = Switch()
    register_plugin(SwitchPlugin(state))
    return state


def test_rate_limits_are_read_per_second_minute_or_hour() -> None:
    assert parse_rate_limit("50/s") == RateLimit(count=50, period=1)
    assert parse_rate_limit(" 3000 / m ") == RateLimit(count=3000, period=60)
    assert parse_rate_limit("100/h").interval == 36.0
    assert str(parse_rate_limit("3000/m")) == "3000/m"
    for wrong in ("50", "fast", "0/s", "50/d", 50):
        with pytest.raises(ValueError, match="such as '50/s' or '3000/m'"):
            parse_rate_limit(wrong)


def test_a_wrong_rate_limit_names_the_key(config_with) -> None:
    document = config_with(
        {"out": {"plugin": "csv", "directory": "out", "delivery": {"rate_limit": "lots"}}}
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(document, Registry.collect(create_plugin_manager()))
    assert caught.value.problems == [
        "sinks.out.delivery.rate_limit: expected deliveries per second, minute or hour such as "
        "'50/s' or '3000/m', got 'lots'"
    ]


def test_the_limiter_spaces_permits_by_the_interval() -> None:
    tat = 0.0
    taken = []
    for now in (100.0, 100.0, 100.0, 100.5, 100.5):
        tat, wait = gcra(tat, now, 0.5)
        taken.append(wait)
    # one permit of slack (a late waiter keeps the rate), then one per interval
    assert taken == [0.0, 0.0, pytest.approx(0.5), 0.0, pytest.approx(0.5)]


def test_a_clock_stepped_back_holds_a_shared_limiter_two_intervals_at_most() -> None:
    tat, _ = shared_gcra(0.0, 10_000.0, 0.5)
    tat, _ = shared_gcra(tat, 10_000.0, 0.5)
    # the wall clock steps back an hour (NTP, a VM restored)
    _, wait = shared_gcra(tat, 10_000.0 - 3600, 0.5)
    assert wait == pytest.approx(0.5)
    # plain gcra would wait out the hour
    assert gcra(tat, 10_000.0 - 3600, 0.5)[1] > 3600


async def test_a_rate_limit_of_50_per_second_holds_within_the_process(
    make_router, config_with, switch: Switch
) -> None:
    sinks = {"paced": {"plugin": "switch", "delivery": {"rate_limit": "50/s", "concurrency": 8}}}
    router = await make_router(config_with(sinks))
    rate = await measure_rate([router], switch, events=650)
    print(f"SQLite, rate_limit 50/s: {rate:.1f}/s over 10 s")
    assert RATE_RANGE[0] <= rate <= RATE_RANGE[1], rate


async def test_a_retry_after_holds_the_whole_sink(make_router, config_with, switch: Switch) -> None:
    sinks = {"limited": {"plugin": "switch", "delivery": {"concurrency": 4, "jitter": 0}}}
    router = await make_router(config_with(sinks))
    switch.down.add("limited")
    switch.retry_after = 1.0  # a 429 with Retry-After: 1
    await post_many(router, 20, tag="hold")
    await wait_until(lambda: bool(switch.seen("limited")), timeout=5, what="a first attempt")
    switch.down.discard("limited")
    first_refusal = switch.seen("limited")[0].at
    await wait_until(
        lambda: len(switch.received("limited")) == 20, timeout=10, what="every event delivered"
    )
    successes = [a.at for a in switch.seen("limited") if a.ok]
    # the events that were never attempted waited too: the whole sink was held for a second
    assert min(successes) - first_refusal >= 0.95, min(successes) - first_refusal
    control = await router.store.get_control("limited")
    assert control.state == "closed"
