"""The console on the Redis store (what ``eventrouter console`` runs next to Redis workers)."""

from __future__ import annotations

import pytest

from tests.console_harness import console_document, start_console
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    redis_server_fixture,
)

pytestmark = pytest.mark.redis


async def test_console_reads_filters_and_acts_on_a_redis_store(
    make_router, redis_server: RedisServer
):
    document = console_document()
    document["store"] = {"backend": "redis", "url": redis_server.url, "key_prefix": "console"}
    console = await start_console(make_router, document)
    try:
        call = await console.call_ended("cll_1", "55 1234 5678")
        order = await console.ingest("order.created", id=1)
        await console.settled(order)
        await console.settled(call)
        status, body = await console.get_json("/api/events")
        assert (status, [e["id"] for e in body["events"]]) == (200, [order, call])
        _, body = await console.get_json("/api/events", contact="+52 55 1234 5678")
        assert [e["id"] for e in body["events"]] == [call]
        _, body = await console.get_json("/api/timeline", contact="+525512345678")
        assert [e["id"] for e in body["events"]] == [call]
        status, body = await console.get_json("/api/events", text="anything")
        assert (status, body["parameter"]) == (400, "text")
        assert "redis store cannot filter on text" in body["message"]
        _, body = await console.get_json(f"/api/events/{order}")
        assert [a["outcome"] for a in body["deliveries"][0]["history"]] == ["dead"]
        _, body = await console.post_json("/api/dead-letters/retry", {"sink": "flaky"})
        assert body == {"plan": {"by_sink": {"flaky": 1}, "total": 1}}
        _, body = await console.post_json(
            "/api/dead-letters/retry", {"sink": "flaky", "confirm": True}
        )
        assert body["retried"]["by_sink"] == {"flaky": 1}
        for path in ("/", "/events", f"/events/{call}", "/dead-letters", "/config"):
            async with console.client.get(path, headers=console.bearer()) as response:
                assert response.status == 200, path
    finally:
        await console.client.close()
