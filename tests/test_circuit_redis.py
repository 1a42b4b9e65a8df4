"""The circuit breaker and the rate limit on Redis, shared by two workers of the same sinks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.outage_kit import (
    RATE_RANGE,
    Switch,
    SwitchPlugin,
    measure_rate,
    outage_sinks,
    play_outage,
)
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    redis_server_fixture,
)

pytestmark = [pytest.mark.redis]


@pytest.fixture
def switch(register_plugin: Any) -> Switch:
    state = Switch()
    register_plugin(SwitchPlugin(state))
    return state


def on_redis(document: dict[str, Any], server: RedisServer, prefix: str) -> dict[str, Any]:
    return {**document, "store": {"backend": "redis", "url": server.url, "key_prefix": prefix}}


async def test_two_workers_share_the_circuit_through_a_30_minute_outage(
    redis_server: RedisServer, make_router, config_with, switch: Switch
) -> None:
    document = on_redis(config_with(outage_sinks()), redis_server, "circuit")
    routers = [await make_router(document), await make_router(document, environ={})]
    figures = await play_outage(routers, switch, events=1000)
    print(f"Redis outage, two workers, 1000 events: {figures}")


async def test_two_workers_hold_a_rate_limit_of_50_per_second_together(
    redis_server: RedisServer, make_router, config_with, switch: Switch
) -> None:
    sinks = {"paced": {"plugin": "switch", "delivery": {"rate_limit": "50/s", "concurrency": 8}}}
    document = on_redis(config_with(sinks), redis_server, "rate")
    routers = [await make_router(document), await make_router(document)]
    rate = await measure_rate(routers, switch, events=700)
    print(f"Redis, two workers, rate_limit 50/s: {rate:.1f}/s over 10 s")
    assert RATE_RANGE[0] <= rate <= RATE_RANGE[1], rate
