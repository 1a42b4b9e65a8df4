"""``[store]`` options of the Redis backend: the optional dependency, Sentinel, deadlines."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as redis_client
from click.testing import CliRunner
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from eventrouter.cli import cli
from eventrouter.config import StoreConfig, parse_config
from eventrouter.errors import ConfigError, StoreUnavailable
from eventrouter.events import Event, new_event_id, utcnow
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.store import create_store
from eventrouter.store.redis import RedisStore
from tests.processes import WHSEC
from tests.redis_server import RedisServer, free_port, start_redis_server

INSTALL = "install it with: pip install 'eventrouter[redis]'"


def document(**store: object) -> dict:
    return {
        "store": {"backend": "redis", "url": "redis://127.0.0.1:6379/0", **store},
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {"out": {"plugin": "http", "url": "http://127.0.0.1:9/"}},
        "routes": [{"sinks": ["out"]}],
    }


def problems(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, Registry.collect(create_plugin_manager()), environ={})
    return info.value.problems


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the ``redis`` extra were not installed: importing it fails."""
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "redis", None)


# -- the optional dependency --------------------------------------------------------------------


def test_without_the_redis_extra_the_config_names_the_install_command(without_redis):
    [problem] = problems(document())
    assert problem.startswith("store.backend: the Redis store needs the redis package")
    assert problem.endswith(INSTALL)
    # SQLite needs nothing of it
    sqlite = {**document(), "store": {"backend": "sqlite"}}
    assert parse_config(sqlite, Registry.collect(create_plugin_manager()), environ={})


def test_without_the_redis_extra_create_store_is_a_config_error(without_redis, tmp_path):
    with pytest.raises(ValueError, match="install it with"):  # validated at construction too
        StoreConfig(backend="redis", url="redis://127.0.0.1/0")
    import attrs

    with attrs.validators.disabled():
        config = StoreConfig(backend="redis", url="redis://127.0.0.1/0")
    with pytest.raises(ConfigError) as info:
        create_store(config, base_dir=tmp_path)
    assert INSTALL in info.value.problems[0]


@pytest.mark.parametrize("command", [["check"], ["serve"], ["worker"], ["events"]])
def test_without_the_redis_extra_commands_fail_cleanly(without_redis, tmp_path, command):
    config = tmp_path / "eventrouter.toml"
    config.write_text(
        f"""
[store]
backend = "redis"
url = "redis://127.0.0.1:{free_port()}/0"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "store.backend: the Redis store needs the redis package" in result.output
    assert INSTALL in result.output
    assert "Traceback" not in result.output


# -- validation -----------------------------------------------------------------------------


def test_store_options_are_validated():
    found = problems(
        document(
            sentinels=["sentinel-1:26379", "no-port"], service_name="s", operation_timeout="0s"
        )
    )
    assert sorted(found) == [
        "store.operation_timeout: must be more than 0 seconds, got 0.0",
        "store.sentinels: expected 'host:port' entries, got 'no-port'",
    ]
    [port] = problems(document(sentinels=["h:99999"], service_name="s"))
    assert port == "store.sentinels: expected 'host:port' entries, got 'h:99999'"
    [missing] = problems(document(sentinels=["127.0.0.1:26379"]))
    assert missing.startswith("store.service_name: required with sentinels")
    config = parse_config(
        document(operation_timeout="750ms"), Registry.collect(create_plugin_manager()), environ={}
    )
    assert config.store.operation_timeout == 0.75
    assert parse_config(document(), Registry.collect(create_plugin_manager()), environ={})
    assert StoreConfig().operation_timeout == 3.0


# -- Sentinel -------------------------------------------------------------------------------------


def test_sentinel_options_build_a_client_of_the_primary_they_name(tmp_path):
    config = StoreConfig(
        backend="redis",
        url="rediss://app:s3cret@ignored-host:1/2",
        sentinels=("10.0.0.1:26379", "[::1]:26380"),
        service_name="events",
    )
    store = create_store(config, base_dir=tmp_path)
    assert isinstance(store, RedisStore)

    client = store._make_client()

    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "events"
    assert pool.is_master
    assert pool.connection_class is SentinelManagedSSLConnection  # rediss:// is TLS
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", "s3cret")
    assert "host" not in kwargs
    assert "port" not in kwargs
    nodes = [n.connection_pool.connection_kwargs for n in pool.sentinel_manager.sentinels]
    assert [(n["host"], n["port"]) for n in nodes] == [("10.0.0.1", 26379), ("::1", 26380)]
    assert "s3cret" not in store.where
    assert store.where == "Sentinel service 'events' (10.0.0.1:26379, [::1]:26380)"
    # without sentinels, the url is the server
    plain = create_store(StoreConfig(backend="redis", url="redis://h:7/0"), base_dir=tmp_path)
    assert not isinstance(plain._make_client().connection_pool, SentinelConnectionPool)


def start_sentinel(directory: Path, primary: RedisServer, *, service: str) -> RedisServer:
    """A Sentinel (``redis-server --sentinel``) watching ``primary``, quick to fail over."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"sentinel monitor {service} 127.0.0.1 {primary.port} 1\n"
        f"sentinel down-after-milliseconds {service} 400\n"
        f"sentinel failover-timeout {service} 2000\n",
        encoding="utf-8",
    )
    return start_redis_server(directory, config_file=conf, args=["--sentinel"])


def event() -> Event:
    now = utcnow()
    return Event(
        id=new_event_id(),
        source="demo",
        type="t",
        time=now,
        provider="p",
        provider_type="t",
        idempotency_key=new_event_id(),
        received_at=now,
    )


@pytest.mark.redis
@pytest.mark.slow
async def test_a_store_behind_sentinel_follows_a_failover(tmp_path):
    servers: list[RedisServer] = []
    admin = store = None
    try:
        primary = start_redis_server(tmp_path / "primary")
        servers.append(primary)
        replica = start_redis_server(
            tmp_path / "replica", args=["--replicaof", "127.0.0.1", str(primary.port)]
        )
        servers.append(replica)
        sentinel = start_sentinel(tmp_path / "sentinel", primary, service="events")
        servers.append(sentinel)
        admin = redis_client.Redis(host="127.0.0.1", port=primary.port)
        store = RedisStore(
            "redis://ignored/0",
            key_prefix="sent",
            sentinels=[f"127.0.0.1:{sentinel.port}"],
            service_name="events",
            operation_timeout=2,
        )
        deadline = time.monotonic() + 10  # the replica has synced and Sentinel has seen it
        while (await admin.info("replication"))["connected_slaves"] < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await store.open()
        first = event()
        assert (await store.ingest(first, ["out"])).accepted
        follower = redis_client.Redis(host="127.0.0.1", port=replica.port)
        try:
            while not await follower.exists(f"sent:event:{first.id}"):  # replicated
                assert time.monotonic() < deadline, "not replicated within 10 s"
                await asyncio.sleep(0.05)
        finally:
            await follower.aclose()

        primary.stop()
        started = time.monotonic()
        second = event()
        while True:  # 503s while Sentinel fails over, then the new primary takes the writes
            try:
                assert (await store.ingest(second, ["out"])).accepted
                break
            except StoreUnavailable:  # until the failover is done
                assert time.monotonic() - started < 30, "no failover within 30 s"
                await asyncio.sleep(0.2)

        promoted = redis_client.Redis(host="127.0.0.1", port=replica.port, decode_responses=True)
        try:
            assert (await promoted.info("replication"))["role"] == "master"
        finally:
            await promoted.aclose()
        assert (await store.get_event(first.id)) is not None
        assert [d.event.id for d in await store.claim("out", limit=5, lease=30)] == [
            first.id,
            second.id,
        ]
        print(f"\nsentinel failover: writes accepted again {time.monotonic() - started:.1f}s later")
    finally:
        if store is not None:
            await store.close()
        if admin is not None:
            await admin.aclose()
        for server in reversed(servers):
            server.stop()
