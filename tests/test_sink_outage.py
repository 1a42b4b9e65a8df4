"""A sink's endpoint goes down (5xx, then hangs, then refuses connections) and comes back.

A real ``eventrouter serve`` process delivers through the built-in ``http`` sink to an aiohttp
app on 127.0.0.1 that the test controls. Every event is delivered once the endpoint recovers;
attempts follow the configured ``retry_schedule``; a healthy sink on the same router keeps
delivering promptly meanwhile; a sink that fails past its schedule dead-letters each event
with the reason, and ``eventrouter dlq retry`` (run as a separate process while the server
runs) gets them delivered once the endpoint is back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from attrs import define, field

from tests.processes import (
    EventRouterProcess,
    free_port,
    run_cli,
    signed_requests,
    wait_until,
    write_demo_config,
)

pytestmark = pytest.mark.slow

#: the flaky sink's schedule: distinct delays so each gap shows which entry was used
SCHEDULE = [0.4, 0.8, 1.2] + [0.3] * 12
TIMEOUT = 1.0


@define
class Attempt:
    event_id: str
    at: float
    mode: str


@define
class Endpoint:
    """An HTTP endpoint on a fixed loopback port whose behaviour the test switches.

    Modes: ``ok`` (204), ``error`` (503), ``reject`` (400), ``hang`` (never answers). ``stop()``
    closes the listener, so the sink gets connection refused; ``start()`` opens it again.
    """

    port: int = field(factory=free_port)
    modes: dict[str, str] = field(factory=dict)
    attempts: dict[str, list[Attempt]] = field(factory=lambda: defaultdict(list))
    delivered: dict[str, dict[str, float]] = field(factory=lambda: defaultdict(dict))
    runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.json()
        mode = self.modes.get(path, "ok")
        now = time.monotonic()
        self.attempts[path].append(Attempt(event_id=body["id"], at=now, mode=mode))
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "error":
            return web.json_response({"error": "down for maintenance"}, status=503)
        if mode == "reject":
            return web.json_response({"error": "schema mismatch"}, status=400)
        self.delivered[path].setdefault(body["id"], now)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def endpoint() -> Any:
    server = Endpoint()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other_endpoint() -> Any:
    """A second endpoint, with its own listener: it stays up while ``endpoint`` goes down."""
    server = Endpoint()
    await server.start()
    yield server
    await server.stop()


def write_config(directory: Path, sinks: str) -> Path:
    return write_demo_config(directory, sinks)


async def post_all(
    url: str, requests: list[tuple[bytes, dict[str, str]]]
) -> list[tuple[str, float]]:
    """Post each request; (event id, time of the 2xx) for each."""
    acked = []
    async with aiohttp.ClientSession() as session:
        for body, headers in requests:
            async with session.post(url, data=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
                acked.append(((await answer.json())["event_id"], time.monotonic()))
    return acked


_ATTEMPT = re.compile(r"sink flaky: attempt (\d+) for (evt_\w+) failed \((.*)\); retry in")


def failed_attempts(logs: str) -> dict[str, dict[int, str]]:
    """From the server's log: per event, each failed attempt's number and error."""
    found: dict[str, dict[int, str]] = defaultdict(dict)
    for number, event_id, error in _ATTEMPT.findall(logs):
        found[event_id][int(number)] = error
    return found


async def test_outage_of_one_sink_delays_only_that_sink_and_loses_nothing(
    endpoint: Endpoint, other_endpoint: Endpoint, tmp_path: Path
) -> None:
    schedule = ", ".join(f'"{int(s * 1000)}ms"' for s in SCHEDULE)
    config = write_config(
        tmp_path,
        f"""
[sinks.flaky]
plugin = "http"
url = "{endpoint.url("flaky")}"
delivery = {{ concurrency = 32, timeout = "{TIMEOUT:g}s", retry_schedule = [{schedule}], jitter = 0 }}

[sinks.healthy]
plugin = "http"
url = "{other_endpoint.url("healthy")}"

[[routes]]
sinks = ["flaky", "healthy"]
""",
    )
    server = EventRouterProcess(config=config).start()
    source_url = f"{server.url}/hooks/demo"
    try:
        # 1. the endpoint answers 503: two failed attempts per event
        endpoint.modes["flaky"] = "error"
        first = await post_all(source_url, signed_requests(10, tag="outage-a"))
        ids = {event_id for event_id, _ in first}

        def seen(count: int) -> bool:
            per_event = defaultdict(int)
            for attempt in endpoint.attempts["flaky"]:
                per_event[attempt.event_id] += 1
            return set(per_event) == ids and min(per_event.values()) >= count

        await wait_until(lambda: seen(2), timeout=5, what="two 503 answers per event")
        # 2. it hangs: the third attempts time out
        endpoint.modes["flaky"] = "hang"
        await wait_until(lambda: seen(3), timeout=5, what="a third attempt per event")
        await asyncio.sleep(TIMEOUT + 0.3)
        # 3. it is gone: connections are refused for a while
        await endpoint.stop()
        down = time.monotonic()
        during = await post_all(source_url, signed_requests(10, tag="outage-b"))
        ids |= {event_id for event_id, _ in during}
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down)))
        # 4. it is back
        endpoint.modes["flaky"] = "ok"
        await endpoint.start()
        await wait_until(
            lambda: set(endpoint.delivered["flaky"]) == ids,
            timeout=10,
            what="every event delivered to the recovered sink",
        )
        await wait_until(
            lambda: set(other_endpoint.delivered["healthy"]) == ids,
            timeout=5,
            what="every event delivered to the healthy sink",
        )
        logs = server.logs()
    finally:
        server.stop()

    # the healthy sink was not held up: each event arrived promptly after it was acknowledged,
    # also while the flaky sink's 32 slots were busy with hanging requests
    lags = [other_endpoint.delivered["healthy"][eid] - acked for eid, acked in first + during]
    assert max(lags) < 1.0, sorted(lags)[-3:]
    assert len(other_endpoint.attempts["healthy"]) == len(ids)

    # attempts follow the schedule: after failed attempt n, attempt n + 1 starts schedule[n-1]
    # seconds after it ended (a hanging attempt ends at the timeout)
    for event_id, _ in first:
        seen_attempts = [a for a in endpoint.attempts["flaky"] if a.event_id == event_id]
        assert [a.mode for a in seen_attempts[:3]] == ["error", "error", "hang"]
        for number, (before, after) in enumerate(itertools.pairwise(seen_attempts[:3]), 1):
            expected = SCHEDULE[number - 1] + (TIMEOUT if before.mode == "hang" else 0.0)
            gap = after.at - before.at
            assert expected - 0.05 <= gap <= expected + 0.6, (event_id, number, gap, expected)
        hang, following = seen_attempts[2], seen_attempts[3]
        # attempts 4, 5, ... met a closed port (the log says so) before one got through
        failures = failed_attempts(logs)[event_id]
        assert failures[1].startswith("HTTP 503")
        assert failures[2].startswith("HTTP 503")
        assert failures[3] == f"timed out after {TIMEOUT:g}s"
        refused = [n for n, error in failures.items() if "Cannot connect" in error]
        assert refused, failures
        assert min(refused) == 4, failures
        assert sorted(failures) == list(range(1, max(failures) + 1))
        assert following.mode == "ok"
        assert following.at - hang.at >= TIMEOUT + SCHEDULE[2] + SCHEDULE[3] * len(refused) - 0.1
    for event_id, _ in during:
        failures = failed_attempts(logs)[event_id]
        assert failures
        assert all("Cannot connect" in error for error in failures.values())
    # nothing was dead-lettered: the schedule outlasted the outage
    assert "dead-lettered" not in logs
    print(
        f"outage: {len(ids)} events all delivered; flaky endpoint saw "
        f"{len(endpoint.attempts['flaky'])} attempts, the log {sum(map(len, failed_attempts(logs).values()))} "
        f"failures; healthy sink lag max {max(lags) * 1000:.0f} ms"
    )


async def test_dead_letters_keep_their_reason_and_dlq_retry_delivers_them(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        f"""
[sinks.fragile]
plugin = "http"
url = "{endpoint.url("fragile")}"
delivery = {{ retry_schedule = ["100ms", "200ms"], jitter = 0, timeout = "2s" }}

[sinks.strict]
plugin = "http"
url = "{endpoint.url("strict")}"

[[routes]]
types = ["call.ended"]
sinks = ["fragile"]

[[routes]]
types = ["call.rejected"]
sinks = ["strict"]
""",
    )
    endpoint.modes["fragile"] = "error"
    endpoint.modes["strict"] = "reject"
    server = EventRouterProcess(config=config).start()
    source_url = f"{server.url}/hooks/demo"
    try:
        retried = dict(await post_all(source_url, signed_requests(5, tag="dlq-a")))
        refused = dict(
            await post_all(source_url, signed_requests(3, tag="dlq-b", event_type="call.rejected"))
        )

        async def dead_letters() -> list[dict[str, Any]]:
            result = await asyncio.to_thread(run_cli, config, "dlq", "list", "--json")
            assert result.returncode == 0, result.stderr
            return [json.loads(line) for line in result.stdout.splitlines()]

        deadline = time.monotonic() + 15
        letters: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            letters = await dead_letters()
            if len(letters) == 8:
                break
            await asyncio.sleep(0.3)
        by_id = {letter["event_id"]: letter for letter in letters}
        assert set(by_id) == set(retried) | set(refused), letters
        for event_id in retried:
            letter = by_id[event_id]
            assert (letter["sink"], letter["type"], letter["source"]) == (
                "fragile",
                "call.ended",
                "demo",
            )
            assert letter["attempts"] == 3
            assert letter["reason"] == (
                'gave up after 3 attempts: HTTP 503: {"error": "down for maintenance"}'
            )
        for event_id in refused:
            letter = by_id[event_id]
            assert (letter["sink"], letter["attempts"]) == ("strict", 1)
            # a 4xx can never succeed as it is: dead-lettered at once, with the endpoint's words
            assert letter["reason"] == 'HTTP 400: {"error": "schema mismatch"}'
        assert len(endpoint.attempts["fragile"]) == 15
        assert len(endpoint.attempts["strict"]) == 3
        assert not endpoint.delivered

        # the endpoint is fixed; an operator retries the dead letters from another process
        endpoint.modes["fragile"] = endpoint.modes["strict"] = "ok"
        result = await asyncio.to_thread(
            run_cli, config, "dlq", "retry", "--sink", "fragile", "--yes"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "5 dead letters queued for delivery again"
        await wait_until(
            lambda: set(endpoint.delivered["fragile"]) == set(retried),
            timeout=5,
            what="the retried dead letters delivered",
        )
        letters = await dead_letters()
        assert {letter["event_id"] for letter in letters} == set(refused)
        result = await asyncio.to_thread(run_cli, config, "dlq", "retry", "--yes")
        assert result.stdout.strip() == "3 dead letters queued for delivery again"
        await wait_until(
            lambda: set(endpoint.delivered["strict"]) == set(refused),
            timeout=5,
            what="the rest delivered",
        )
        assert await dead_letters() == []
        shown = await asyncio.to_thread(run_cli, config, "events", "--json", "--limit", "20")
        states = {
            entry["event"]["id"]: [(d["sink"], d["state"]) for d in entry["deliveries"]]
            for entry in map(json.loads, shown.stdout.splitlines())
        }
        assert states == {
            **{eid: [("fragile", "done")] for eid in retried},
            **{eid: [("strict", "done")] for eid in refused},
        }
    finally:
        server.stop()
    assert server.wait(timeout=5) == 0
