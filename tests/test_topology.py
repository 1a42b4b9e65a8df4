"""Ingest and delivery apart on the embedded SQLite store: ``serve --no-deliver`` only receives,
``eventrouter worker`` only delivers, both on one database file (the Redis topology is tested in
tests/test_scale_redis.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.processes import (
    EventRouterProcess,
    fire,
    free_port,
    run_cli,
    signed_requests,
    write_demo_config,
)

pytestmark = pytest.mark.slow

EVENTS = 50


class Receiver:
    """The http sink's endpoint: counts what arrives, by CloudEvent id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.seen[(await request.json())["id"]] += 1
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/events", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def forward_config(directory: Path, receiver: Receiver) -> Path:
    """The demo source routed to the http sink ``forward``, which posts to ``receiver``."""
    return write_demo_config(
        directory,
        f"""
[sinks.forward]
plugin = "http"
url = "http://127.0.0.1:{receiver.port}/events"

[[routes]]
sinks = ["forward"]
""",
    )


async def metric(url: str, name: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as answer:
        text = await answer.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_serve_no_deliver_and_a_worker_share_one_sqlite_store(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        config = forward_config(tmp_path, receiver)
        ingest = EventRouterProcess(config=config, args=["--no-deliver"]).start()
        worker = None
        try:
            burst = await fire(
                f"{ingest.url}/hooks/demo", signed_requests(EVENTS, tag="apart"), concurrency=8
            )
            assert burst.statuses == [200] * EVENTS
            accepted = burst.accepted_ids
            await asyncio.sleep(1.5)  # longer than a worker's poll: nothing delivers them yet
            assert not receiver.seen
            assert 'state="pending"} 50.0' in await metric(ingest.url, "eventrouter_queue_depth")

            worker = EventRouterProcess(config=config, command="worker").start()
            deadline = time.monotonic() + 20
            while set(receiver.seen) != accepted:
                assert time.monotonic() < deadline, f"{len(receiver.seen)} of {EVENTS} delivered"
                await asyncio.sleep(0.05)
            assert max(receiver.seen.values()) == 1
            # the worker receives nothing: no source is mounted on it
            [(body, headers)] = signed_requests(1, tag="to-the-worker")
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{worker.url}/hooks/demo", data=body, headers=headers) as answer,
            ):
                assert answer.status == 404
            delivered = await metric(worker.url, "eventrouter_deliveries_total")
            assert 'outcome="delivered",sink="forward"} 50.0' in delivered
            assert "eventrouter_deliveries_total{" not in await metric(
                ingest.url, "eventrouter_deliveries_total"
            )
        finally:
            ingest.stop()
            if worker is not None:
                worker.stop()
        assert ingest.wait(timeout=5) == 0
        assert worker.wait(timeout=5) == 0


#: the worker's polls in the test below, set by a sitecustomize module: so rare that only the
#: store's watch can explain a delivery within WOKEN_WITHIN
SLOW_POLLS = """
from eventrouter import circuit, dispatch

dispatch.POLL_INTERVAL = dispatch.WATCHED_POLL_INTERVAL = circuit.CONTROL_POLL = 30.0
"""
WOKEN_WITHIN = 10


async def test_a_worker_process_is_woken_by_another_process_s_ingest_and_replay(
    tmp_path: Path,
) -> None:
    async with Receiver() as receiver:
        config = forward_config(tmp_path, receiver)
        patch = tmp_path / "slow-polls"
        patch.mkdir()
        (patch / "sitecustomize.py").write_text(SLOW_POLLS)
        ingest = EventRouterProcess(config=config, args=["--no-deliver"]).start()
        worker = EventRouterProcess(
            config=config, command="worker", env={"PYTHONPATH": str(patch)}
        ).start()
        try:
            await asyncio.sleep(1.0)  # the worker's first claims: it has gone to sleep
            took = []
            for n, request in enumerate(signed_requests(3, tag="woken")):
                begun = time.monotonic()
                burst = await fire(f"{ingest.url}/hooks/demo", [request])
                assert burst.statuses == [200]
                deadline = begun + WOKEN_WITHIN
                while len(receiver.seen) <= n:
                    assert time.monotonic() < deadline, f"event {n} not delivered"
                    await asyncio.sleep(0.005)
                took.append(time.monotonic() - begun)
            [event_id, *_] = burst.accepted_ids

            # `eventrouter replay` from the command line: the worker delivers it again
            replayed = await asyncio.to_thread(run_cli, config, "replay", event_id)
            assert replayed.returncode == 0, replayed.stderr
            deadline = time.monotonic() + WOKEN_WITHIN
            while receiver.seen[event_id] < 2:
                assert time.monotonic() < deadline, "the replay was not delivered"
                await asyncio.sleep(0.005)
            print(f"\ningest to delivery in another process: {[round(t * 1000) for t in took]} ms")
        finally:
            ingest.stop()
            worker.stop()
        assert ingest.wait(timeout=5) == 0
        assert worker.wait(timeout=5) == 0
