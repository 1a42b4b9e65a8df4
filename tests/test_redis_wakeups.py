"""Workers on Redis are woken by pub/sub when any process queues work, instead of polling.

The ingest, retry, dead-letter retry and replay scripts publish on the sink's channel; the
dispatcher's workers listen (``RedisStore.watch``) and poll only as a safety net.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_client

from eventrouter import dispatch
from eventrouter.store.redis import RedisStore
from tests.processes import WHSEC
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    redis_server_fixture,
)
from tests.stores import make_event
from tests.wakeups import queued_elsewhere_is_delivered, retries_and_revivals_are_delivered

pytestmark = pytest.mark.redis

PREFIX = "wake"
#: how long a woken worker may take to deliver on a busy shared machine: well under the 60 s
#: polls (and 30 s leases) these tests set, so only a wake-up delivers in time
WOKEN_WITHIN = 10


def config(url: str) -> dict[str, Any]:
    return {
        "store": {"backend": "redis", "url": url, "key_prefix": PREFIX},
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {"recorder": {"plugin": "recording"}},
        "routes": [{"sinks": ["recorder"]}],
    }


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis_client.Redis]:
    client = redis_client.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def other_process(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """Another eventrouter process's store on the same Redis (an ingest node, the CLI)."""
    store = RedisStore(redis_server.url, key_prefix=PREFIX)
    await store.open()
    yield store
    await store.close()


async def listening(router: Any, admin: redis_client.Redis) -> None:
    deadline = time.monotonic() + 5
    while (
        not router.store.watching
        or dict(await admin.pubsub_numsub(f"{PREFIX}:wake:recorder")).get(
            f"{PREFIX}:wake:recorder", 0
        )
        < 1
    ):
        assert time.monotonic() < deadline, "the worker never subscribed"
        await asyncio.sleep(0.02)


async def test_work_queued_by_another_process_is_delivered_at_once(
    redis_server, make_router, admin, other_process, monkeypatch
):
    # polls so rare that only a wake-up can explain a prompt delivery
    monkeypatch.setattr(dispatch, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(dispatch, "WATCHED_POLL_INTERVAL", 60.0)
    router = await make_router(config(redis_server.url))
    await listening(router, admin)
    await asyncio.sleep(0.2)  # the worker has gone to sleep

    took = await queued_elsewhere_is_delivered(router, other_process, within=WOKEN_WITHIN)
    print(f"\nwoken by another process's ingest: delivered {took * 1000:.0f} ms later")


async def test_retries_and_dead_letters_queued_by_another_process_wake_the_worker(
    redis_server, make_router, admin, other_process, monkeypatch
):
    monkeypatch.setattr(dispatch, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(dispatch, "WATCHED_POLL_INTERVAL", 60.0)

    async def start() -> Any:
        router = await make_router(config(redis_server.url))
        await listening(router, admin)
        await asyncio.sleep(0.2)
        return router

    await retries_and_revivals_are_delivered(other_process, start, within=WOKEN_WITHIN)


async def test_an_idle_worker_barely_touches_redis(redis_server, make_router, admin):
    router = await make_router(config(redis_server.url))
    await listening(router, admin)
    await asyncio.sleep(1.0)  # start-up: the first claims, the purge
    before = await admin.info("commandstats")
    total = (await admin.info("stats"))["total_commands_processed"]

    await asyncio.sleep(3.0)

    after = await admin.info("commandstats")
    scripts = after["cmdstat_evalsha"]["calls"] - before["cmdstat_evalsha"]["calls"]
    # less the two INFO commands of this test counted in between
    commands = (await admin.info("stats"))["total_commands_processed"] - total - 2
    # polling once a second ran two scripts a second (about 15 commands): 6 scripts here
    assert scripts <= 2, scripts
    assert 0 <= commands <= 20, commands
    print(f"\nidle worker: {scripts} scripts, {commands} commands in 3 s")


async def test_wakeups_resume_after_the_subscription_is_cut(
    redis_server, make_router, admin, other_process, monkeypatch
):
    monkeypatch.setattr(dispatch, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(dispatch, "WATCHED_POLL_INTERVAL", 60.0)
    router = await make_router(config(redis_server.url))
    await listening(router, admin)

    assert await admin.client_kill_filter(_type="pubsub") >= 1
    await asyncio.sleep(0.1)
    await listening(router, admin)  # resubscribed by itself

    event = make_event(source="demo")
    await other_process.ingest(event, ["recorder"])
    [got] = await router.recorder.wait_for("recorder", 1, timeout=WOKEN_WITHIN)
    assert got.id == event.id
