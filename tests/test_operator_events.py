"""eventrouter's own events (circuit opened/closed, paused/resumed, dead letters) reach the
sink an operator routes them to, once per state change, and never the sink they are about."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eventrouter.app import DISPATCHER
from eventrouter.cli import cli
from eventrouter.testing import Recorder
from tests.outage_kit import Switch, SwitchPlugin, post_many, wait_until
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    redis_server_fixture,
)


@pytest.fixture
def switch(register_plugin: Any) -> Switch:
    state = Switch()
    register_plugin(SwitchPlugin(state))
    return state


#: seconds of dead letters a process summarises in one event (the default is a minute)
WINDOW = 1.0


def operator_config(config_with: Any, store: dict[str, Any]) -> dict[str, Any]:
    delivery = {"circuit_failures": 3, "circuit_probes": ["100ms"], "retry_schedule": ["50ms"]}
    document = config_with(
        {
            "crm": {"plugin": "switch", "delivery": {**delivery, "concurrency": 2}},
            "strict": {"plugin": "recording", "fail_times": 3, "fail_with": "permanent"},
            "ops": {"plugin": "recording"},
        },
        routes=[
            {"types": ["call.*"], "sinks": ["crm"]},
            {"types": ["refund.*"], "sinks": ["strict"]},
            # the operator's route names crm too, so "never to the sink it is about" shows
            {"sources": ["eventrouter"], "sinks": ["ops", "crm"]},
        ],
    )
    return {**document, "store": store}


def cli_config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f"[store]\n{store}\n[sinks.crm]\nplugin = 'switch'\n[sinks.strict]\n")
    return path


async def run_cli(config: Path, *args: str) -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["sinks", *args, "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    return result.output


def types_at(recorded: Recorder, sink: str) -> Counter[str]:
    return Counter(event.type for event in recorded.events.get(sink, []))


def dead_lettered_at_ops(recorded: Recorder) -> int:
    """How many dead letters the summaries at ``ops`` count together."""
    return sum(
        event.data.attributes["dead_lettered"]
        for event in recorded.events.get("ops", [])
        if event.type == "eventrouter.delivery.dead_lettered"
    )


async def play(routers: list[Any], switch: Switch, recorded: Recorder, cli_toml: Path) -> None:
    # dead letters summarised per second: the three refunds below fall in one window of each
    # process even when the shared machine stalls a worker for a few hundred ms
    for router in routers:
        router.client.app[DISPATCHER].operator.window = WINDOW
    router = routers[0]
    # the circuit opens, probes fail for a while, then it closes
    switch.down.add("crm")
    await post_many(router, 12, tag="operator")
    await recorded.wait_until(
        lambda: types_at(recorded, "ops")["eventrouter.sink.circuit_opened"] == 1,
        timeout=10,
        what="circuit_opened at ops",
    )
    await asyncio.sleep(0.5)  # several probes fail meanwhile: no more events
    switch.down.discard("crm")
    await wait_until(lambda: len(switch.received("crm")) == 12, timeout=10, what="recovery")
    await recorded.wait_until(
        lambda: types_at(recorded, "ops")["eventrouter.sink.circuit_closed"] == 1,
        timeout=5,
        what="circuit_closed at ops",
    )
    # an operator pauses the sink from another process, and resumes it
    assert "sink crm paused" in await run_cli(cli_toml, "pause", "crm", "--reason", "CRM upgrade")
    await recorded.wait_until(
        lambda: types_at(recorded, "ops")["eventrouter.sink.paused"] == 1,
        timeout=5,
        what="sink.paused at ops",
    )
    shown = await run_cli(cli_toml)
    assert "crm: paused since" in shown, shown
    assert "(CRM upgrade)" in shown, shown
    assert "sink crm resumed" in await run_cli(cli_toml, "resume", "crm")
    await recorded.wait_until(
        lambda: types_at(recorded, "ops")["eventrouter.sink.resumed"] == 1,
        timeout=5,
        what="sink.resumed at ops",
    )
    # three refunds refused for good: one summary of three dead letters
    for index in range(3):
        await router.post("demo", {"type": "refund.created", "n": index})
    await recorded.wait_until(
        lambda: dead_lettered_at_ops(recorded) == 3,
        timeout=10,
        what="the three dead letters summarised at ops",
    )
    summaries = types_at(recorded, "ops")["eventrouter.delivery.dead_lettered"]
    # the summaries are operator events routed to crm too: waited for, not assumed delivered
    # within a fixed sleep (a stalled worker on a shared machine may take longer)
    await wait_until(
        lambda: len(switch.received("crm")) >= 12 + summaries,
        timeout=10,
        what="the dead-letter summaries at crm",
    )
    await asyncio.sleep(WINDOW + 0.3)  # another window: nothing more to say
    seen = types_at(recorded, "ops")
    # each process summarises the dead letters it made: one summary per process at most
    assert seen.pop("eventrouter.delivery.dead_lettered") == summaries
    assert 1 <= summaries <= len(routers), summaries
    assert seen == {
        "eventrouter.sink.circuit_opened": 1,
        "eventrouter.sink.circuit_closed": 1,
        "eventrouter.sink.paused": 1,
        "eventrouter.sink.resumed": 1,
    }
    summarised = [
        event.data.attributes
        for event in recorded.events["ops"]
        if event.type == "eventrouter.delivery.dead_lettered"
    ]
    assert {dead["sink"] for dead in summarised} == {"strict"}
    assert sum(dead["dead_lettered"] for dead in summarised) == 3
    by_type = {event.type: event for event in recorded.events["ops"]}
    opened = by_type["eventrouter.sink.circuit_opened"]
    assert (opened.source, opened.subject) == ("eventrouter", "crm")
    attributes = opened.data.attributes
    assert (attributes["sink"], attributes["reason"], attributes["failures"]) == (
        "crm",
        "HTTP 503: down",
        3,
    )
    assert attributes["pending"] >= 1
    assert by_type["eventrouter.sink.paused"].data.attributes["reason"] == "CRM upgrade"
    dead = by_type["eventrouter.delivery.dead_lettered"].data.attributes
    assert dead["reason"].startswith("recording sink refused attempt")
    # the events about crm never went to crm; the one about strict did
    assert len(switch.received("crm")) == 12 + summaries
    stored = await router.store.list_events(source="eventrouter")
    assert len(stored) == 4 + summaries  # one dead-letter summary per process that made one
    for entry in stored:
        sinks = [d.sink for d in entry.deliveries]
        assert sinks == (["ops"] if entry.event.subject == "crm" else ["crm", "ops"]), entry


async def test_operator_events_arrive_once_per_state_change(
    make_router, config_with, switch: Switch, recorded: Recorder, tmp_path: Path
) -> None:
    store = {"path": str(tmp_path / "eventrouter.db")}
    router = await make_router(operator_config(config_with, store))
    await play([router], switch, recorded, cli_config(tmp_path, f"path = '{store['path']}'"))


@pytest.mark.redis
async def test_operator_events_arrive_once_per_state_change_with_two_workers_on_redis(
    redis_server: RedisServer,
    make_router,
    config_with,
    switch: Switch,
    recorded: Recorder,
    tmp_path: Path,
) -> None:
    store = {"backend": "redis", "url": redis_server.url, "key_prefix": "ops"}
    document = operator_config(config_with, store)
    routers = [await make_router(document), await make_router(document)]
    cli_store = f"backend = 'redis'\nurl = '{redis_server.url}'\nkey_prefix = 'ops'"
    await play(routers, switch, recorded, cli_config(tmp_path, cli_store))


def test_no_source_may_take_the_operator_source_name(config_with) -> None:
    from eventrouter.config import parse_config
    from eventrouter.errors import ConfigError
    from eventrouter.plugins import Registry, create_plugin_manager
    from tests.conftest import WHSEC

    document = config_with({"out": {"plugin": "csv", "directory": "out"}})
    document["sources"]["eventrouter"] = {"plugin": "standard-webhooks", "secrets": [WHSEC]}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, Registry.collect(create_plugin_manager()))
    assert caught.value.problems == [
        "sources.eventrouter: the name 'eventrouter' is eventrouter's own (its operator "
        "events); choose another"
    ]
