"""Redis specifics beyond the shared store contract (tests/test_store_contract.py runs that):
connection failures, back-pressure, key layout, consumers, the Lua scripts, end to end."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as redis_client
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.store import DeliveryState
from eventrouter.store.redis import RedisStore
from eventrouter.store.scripts import SCRIPT_NAMES, Scripts
from eventrouter.testing import sign_request
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    free_port,
    redis_server_fixture,
)
from tests.stores import claim_one, make_event, record


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
        # the other prefix only wrote its layout version, at start
        assert all(key.startswith("er:") or key == "other:layout" for key in keys), keys
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
        return result.stdout  # notes (plans, where delivery happens) go to stderr

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
        run("dlq", "retry", "--sink", "alpha", "--yes").strip()
        == "1 dead letters queued for delivery again"
    )
    assert run("dlq", "list").strip() == "no dead letters"
    assert run("replay", event.id).strip() == f"event {event.id} queued for 1 sinks"
    shown = run("events", event.id)
    assert "alpha: pending, 0 attempts" in shown


def test_every_script_names_its_keys_and_arguments_at_the_top():
    """``KEYS[i]`` and ``ARGV[i]`` appear only in the ``local`` lines that open a script, numbered
    from 1 without a gap (a variable tail taken right after), so a script reads by name."""
    folder = resources.files("eventrouter.store").joinpath("lua")
    shipped = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))
    assert shipped == sorted([*(f"{name}.lua" for name in SCRIPT_NAMES), "helpers.lua"])
    helpers = folder.joinpath("helpers.lua").read_text(encoding="utf-8")
    assert not re.search(r"\b(KEYS|ARGV)\b", helpers)
    for name in SCRIPT_NAMES:
        lines = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8").splitlines()
        code = [line for line in lines if not line.lstrip().startswith("--")]
        header, body = code[: code.index("")], "\n".join(code[code.index("") :])
        assert all(line.startswith("local ") for line in header), (name, header)
        assert not re.search(r"\b(KEYS|ARGV)\b", body), name
        for table in ("KEYS", "ARGV"):
            named = [int(n) for n in re.findall(rf"\b{table}\[(\d+)\]", "\n".join(header))]
            assert named == list(range(1, len(named) + 1)), (name, table, named)
            tails = [int(n) for n in re.findall(rf"tail\({table}, (\d+)\)", "\n".join(header))]
            assert tails in ([], [len(named) + 1]), (name, table, tails)
        assert callable(getattr(Scripts, name)), name
