"""Scale-out on one Redis: ingest nodes (``serve --no-deliver``) and ``worker`` processes.

Everything is real: a ``redis-server``, ``eventrouter`` processes, signed Standard Webhooks
requests and the built-in ``http`` sink posting structured CloudEvents to a receiver in this
test process, which records each event id, which worker sent it (an ``X-Worker`` header taken
from the worker's environment) and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_client
from aiohttp import web
from attrs import define, field, frozen
from prometheus_client.parser import text_string_to_metric_families

from eventrouter.dispatch import LEASE_MARGIN
from tests.processes import WHSEC, EventRouterProcess, fire, free_port, run_cli, signed_requests
from tests.redis_server import (  # noqa: F401 - redis_server_fixture registers the fixture
    RedisServer,
    redis_server_fixture,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

#: the sink's delivery.timeout; a dead worker's deliveries are taken over after it + LEASE_MARGIN
SINK_TIMEOUT = 2.0
LEASE = SINK_TIMEOUT + LEASE_MARGIN
#: delivery.concurrency of each worker: the most deliveries one worker can hold when it dies
CONCURRENCY = 8
SINK = "out"
GROUP = "workers"

Launch = Callable[..., Awaitable[None]]


@frozen
class Received:
    event_id: str
    worker: str
    at: float  # time.time() on arrival
    body: dict[str, Any]


@define
class Receiver:
    """The ``http`` sink's target: records every delivery, answers ``status``."""

    url: str = ""
    received: list[Received] = field(factory=list)
    status: int = 200
    delay: float = 0.0
    on_receive: Callable[[Received], None] | None = None
    changed: asyncio.Event = field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        item = Received(
            event_id=body["id"],
            worker=request.headers.get("X-Worker", ""),
            at=time.time(),
            body=body,
        )
        self.received.append(item)
        if self.on_receive is not None:
            self.on_receive(item)
        self.changed.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.status
        return web.json_response({"status": status}, status=status)

    def ids(self) -> Counter[str]:
        return Counter(r.event_id for r in self.received)

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self.changed.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/in", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/in"
    yield rec
    await runner.cleanup()


@pytest.fixture
def launch() -> Iterator[Launch]:
    """``await launch(*processes)``: start them side by side; SIGTERM them all after the test."""
    started: list[EventRouterProcess] = []

    async def start(*processes: EventRouterProcess) -> None:
        started.extend(processes)
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))

    yield start
    for process in started:
        process.signal(signal.SIGTERM)
    for process in started:
        if process.process is None:
            continue
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.process.kill()
            process.wait(timeout=10)


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis_client.Redis]:
    client = redis_client.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    yield client
    await client.aclose()


def write_config(
    directory: Path,
    redis_server: RedisServer,
    receiver: Receiver,
    *,
    prefix: str,
    concurrency: int = CONCURRENCY,
) -> Path:
    """One configuration for every process: each worker tells who it is through ER_WORKER."""
    path = directory / f"{prefix}.toml"
    path.write_text(
        f"""
[server]
shutdown_timeout = "2s"

[store]
backend = "redis"
url = "{redis_server.url}"
key_prefix = "{prefix}"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]

[sinks.{SINK}]
plugin = "http"
url = "{receiver.url}"
headers = {{X-Worker = "${{ER_WORKER:-none}}"}}
delivery = {{timeout = "{SINK_TIMEOUT:g}s", concurrency = {concurrency}, retry_schedule = ["100ms"], jitter = 0}}

[[routes]]
sinks = ["{SINK}"]
""",
        encoding="utf-8",
    )
    return path


def hook_url(process: EventRouterProcess) -> str:
    return f"{process.url}/hooks/demo"


async def scrape(
    process: EventRouterProcess,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    async with aiohttp.ClientSession() as session, session.get(f"{process.url}/metrics") as answer:
        assert answer.status == 200
        text = await answer.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def depth(metrics: dict[Any, float], state: str) -> float:
    return metrics[("eventrouter_queue_depth", (("sink", SINK), ("state", state)))]


def requests_counted(metrics: dict[Any, float], outcome: str) -> float:
    return metrics.get(
        ("eventrouter_requests_total", (("outcome", outcome), ("source", "demo"))), 0.0
    )


def deliveries_counted(metrics: dict[Any, float], outcome: str) -> float:
    return metrics.get(
        ("eventrouter_deliveries_total", (("outcome", outcome), ("sink", SINK))), 0.0
    )


async def wait_drained(worker: EventRouterProcess, *, timeout: float = 10.0) -> dict[Any, float]:
    """Poll the worker's /metrics until nothing is pending or in flight; return the metrics."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = await scrape(worker)
        if depth(metrics, "pending") == 0 and depth(metrics, "inflight") == 0:
            return metrics
        assert time.monotonic() < deadline, {
            s: depth(metrics, s) for s in ("pending", "inflight", "dead")
        }
        await asyncio.sleep(0.2)


async def held_by(admin: redis_client.Redis, stream: str, pid: int) -> dict[str, float]:
    """The deliveries the consumer of process ``pid`` holds: event id -> when it claimed it."""
    consumers = [
        c["name"] for c in await admin.xinfo_consumers(stream, GROUP) if f":{pid}:" in c["name"]
    ]
    assert len(consumers) == 1, consumers
    seconds, micros = await admin.time()
    now = seconds + micros / 1e6
    entries = await admin.xpending_range(
        stream, GROUP, min="-", max="+", count=1000, consumername=consumers[0]
    )
    held = {}
    for entry in entries:
        [(_, fields)] = await admin.xrange(stream, min=entry["message_id"], max=entry["message_id"])
        held[fields["event"]] = now - entry["time_since_delivered"] / 1000
    return held


async def test_two_ingest_nodes_and_two_workers_survive_a_worker_killed_mid_burst(
    redis_server, receiver, launch, admin, tmp_path
):
    burst_size, kill_after = 3000, 100
    config = write_config(tmp_path, redis_server, receiver, prefix="scale")
    ingest = [EventRouterProcess(config, args=["--no-deliver"]) for _ in range(2)]
    doomed = EventRouterProcess(config, command="worker", env={"ER_WORKER": "w1"})
    survivor = EventRouterProcess(config, command="worker", env={"ER_WORKER": "w2"})
    await launch(*ingest, doomed, survivor)
    stream = f"scale:queue:{SINK}"

    kill: dict[str, Any] = {}

    def kill_doomed_mid_delivery(item: Received) -> None:
        # called inside the receiver's handler: w1's attempt for ``item`` is unanswered
        if kill or item.worker != "w1":
            return
        so_far = Counter(r.worker for r in receiver.received)
        if so_far["w1"] >= kill_after and so_far["w2"] > 0:
            assert doomed.process is not None
            doomed.process.kill()
            kill.update(
                at=time.time(),
                before=so_far,
                current=item.event_id,
                held=asyncio.ensure_future(held_by(admin, stream, doomed.process.pid)),
            )

    receiver.on_receive = kill_doomed_mid_delivery
    requests = signed_requests(burst_size, tag="scale")
    half = burst_size // 2
    started = time.monotonic()
    first, second = await asyncio.gather(
        fire(hook_url(ingest[0]), requests[:half], concurrency=16),
        fire(hook_url(ingest[1]), requests[half:], concurrency=16),
    )
    burst_seconds = time.monotonic() - started
    burst_done = time.time()

    # every request was acknowledged, half by each ingest node
    assert Counter(first.statuses) == {200: half}
    assert Counter(second.statuses) == {200: burst_size - half}
    accepted = first.accepted_ids | second.accepted_ids
    assert len(accepted) == burst_size
    assert {a["status"] for a in first.answers + second.answers} == {"accepted"}
    # w1 died mid-burst, holding the delivery in flight and at most its concurrency
    assert kill, "w1 never delivered enough to be killed"
    assert kill["at"] < burst_done
    assert doomed.wait(timeout=10) == -signal.SIGKILL
    held: dict[str, float] = await kill["held"]
    assert kill["current"] in held
    assert 1 <= len(held) <= CONCURRENCY
    # both workers shared the work before the kill
    before = kill["before"]
    assert before["w1"] >= kill_after
    assert before["w2"] >= 0.1 * (before["w1"] + before["w2"]), before

    def taken_over() -> set[str]:
        return {r.event_id for r in receiver.received if r.worker == "w2"} & set(held)

    # w1 may have sent every delivery it held before it died: the test waits until w2 has
    # delivered each one again, which it may do only once their lease has run out
    await receiver.wait_until(
        lambda: accepted <= set(receiver.ids()) and taken_over() == set(held),
        timeout=LEASE + 30,
        what=f"all {burst_size} events delivered and w1's {len(held)} taken over by w2",
    )
    recovered_seconds = time.time() - kill["at"]
    metrics = await wait_drained(survivor)
    await asyncio.sleep(0.5)  # a late duplicate would arrive now

    counts = receiver.ids()
    assert set(counts) == accepted
    duplicated = {eid for eid, n in counts.items() if n > 1}
    assert max(counts.values()) == 2
    # only what w1 held when it died went out twice, including the attempt it died in
    assert kill["current"] in duplicated
    assert duplicated <= set(held)
    late_w1 = {r.event_id for r in receiver.received if r.worker == "w1" and r.at > kill["at"]}
    assert late_w1 <= set(held)
    # w2 took each over only once its lease had run out, and delivered it
    for event_id, claimed_at in held.items():
        taken = [r for r in receiver.received if r.event_id == event_id and r.worker == "w2"]
        assert len(taken) == 1, (event_id, taken)
        assert taken[0].at >= claimed_at + LEASE - 0.5, (event_id, taken[0].at - claimed_at)
    assert {r.worker for r in receiver.received} == {"w1", "w2"}
    # nothing left in Redis: no pending, in-flight or dead delivery, and w2's counters agree
    assert depth(metrics, "pending") == depth(metrics, "inflight") == depth(metrics, "dead") == 0
    w2_count = sum(1 for r in receiver.received if r.worker == "w2")
    assert deliveries_counted(metrics, "delivered") == w2_count
    assert await admin.xlen(stream) == 0
    assert await admin.zcard(f"scale:lease:{SINK}") == 0
    # and w2 is idle again (no polling loop hammering Redis): a few claims a second
    commands = (await admin.info("stats"))["total_commands_processed"]
    await asyncio.sleep(1.0)
    idle_commands = (await admin.info("stats"))["total_commands_processed"] - commands - 1
    assert idle_commands < 50, idle_commands  # a busy loop (10 ms sleeps) would make 200+
    for node, burst in zip(ingest, (first, second), strict=True):
        assert requests_counted(await scrape(node), "accepted") == len(burst.statuses)

    print(
        f"\nscale: {burst_size} requests over 2 ingest nodes in {burst_seconds:.1f}s; "
        f"w1 killed after {before['w1']} deliveries (w2 {before['w2']}); w1 held {len(held)}; "
        f"{len(duplicated)} delivered twice; all delivered {recovered_seconds:.1f}s after the kill "
        f"(lease {LEASE:g}s)"
    )


async def test_the_same_request_to_both_ingest_nodes_is_accepted_once(
    redis_server, receiver, launch, admin, tmp_path
):
    count = 150
    config = write_config(tmp_path, redis_server, receiver, prefix="dedupe")
    nodes = [EventRouterProcess(config, args=["--no-deliver"]) for _ in range(2)]
    await launch(*nodes)
    urls = [hook_url(node) for node in nodes]
    requests = signed_requests(count, tag="dedupe")
    slots = asyncio.Semaphore(8)

    async with aiohttp.ClientSession() as session:

        async def post(node: int, request: tuple[bytes, dict[str, str]]) -> dict[str, Any]:
            body, headers = request
            async with session.post(urls[node], data=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
                return await answer.json()

        async def both(index: int, request: tuple[bytes, dict[str, str]]) -> list[dict[str, Any]]:
            # a third to node 1 then node 2, a third the other way round, a third to both at once
            async with slots:
                if index % 3 == 0:
                    return [await post(0, request), await post(1, request)]
                if index % 3 == 1:
                    second = await post(1, request)
                    return [await post(0, request), second]
                return list(await asyncio.gather(post(0, request), post(1, request)))

        answers = await asyncio.gather(*(both(i, r) for i, r in enumerate(requests)))

    accepted_by = [0, 0]
    for index, (one, other) in enumerate(answers):
        assert one["event_id"] == other["event_id"]
        statuses = [one["status"], other["status"]]
        if index % 3 == 0:
            assert statuses == ["accepted", "duplicate"]
        elif index % 3 == 1:
            assert statuses == ["duplicate", "accepted"]
        else:
            assert sorted(statuses) == ["accepted", "duplicate"]
        accepted_by[statuses.index("accepted")] += 1
    assert (await admin.xlen("dedupe:events"), await admin.xlen(f"dedupe:queue:{SINK}")) == (
        count,
        count,
    )
    for node, accepted in zip(nodes, accepted_by, strict=True):
        metrics = await scrape(node)
        assert requests_counted(metrics, "accepted") == accepted
        assert requests_counted(metrics, "duplicate") == count - accepted
    assert receiver.received == []  # ingest nodes deliver nothing
    print(f"\ndedupe: {count} requests sent to both nodes; accepted by node 1, 2: {accepted_by}")


async def test_dead_letters_are_shared_and_operated_from_the_command_line(
    redis_server, receiver, launch, admin, tmp_path
):
    count = 60
    config = write_config(tmp_path, redis_server, receiver, prefix="dlq", concurrency=2)
    node = EventRouterProcess(config, args=["--no-deliver"])
    workers = [
        EventRouterProcess(config, command="worker", env={"ER_WORKER": name})
        for name in ("w1", "w2")
    ]
    await launch(node, *workers)
    # 404 is permanent: dead-lettered at the first attempt. 50 ms each, two at a time, keeps one
    # worker busy longer than the other's poll interval, so both take part
    receiver.status, receiver.delay = 404, 0.05

    burst = await fire(hook_url(node), signed_requests(count, tag="dlq"), concurrency=8)

    assert Counter(burst.statuses) == {200: count}
    accepted = burst.accepted_ids
    await receiver.wait_until(
        lambda: len(receiver.received) >= count, timeout=20, what="every event attempted"
    )
    assert sorted(receiver.ids().values()) == [1] * count
    by_worker = Counter(r.worker for r in receiver.received)
    assert set(by_worker) == {"w1", "w2"}, by_worker  # whichever worker tried, it dead-lettered

    async def cli(*args: str) -> str:
        result = await asyncio.to_thread(run_cli, config, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    async def settled(key: str, n: int) -> None:
        deadline = time.monotonic() + 10
        while await admin.xlen(key) != n:
            assert time.monotonic() < deadline, (key, await admin.xlen(key), n)
            await asyncio.sleep(0.1)

    await settled(f"dlq:dead:{SINK}", count)
    letters_out, events_out = await asyncio.gather(
        cli("dlq", "list", "--json"), cli("events", "--json", "--limit", "500")
    )
    letters = [json.loads(line) for line in letters_out.splitlines()]
    assert {letter["event_id"] for letter in letters} == accepted
    for letter in letters:
        assert letter["sink"] == SINK
        assert letter["source"] == "demo"
        assert letter["type"] == "call.ended"
        assert letter["attempts"] == 1
        assert letter["reason"] == 'HTTP 404: {"status": 404}'
    listed = [json.loads(line) for line in events_out.splitlines()]
    assert {e["event"]["id"] for e in listed} == accepted
    for entry in listed:
        assert entry["deliveries"] == [
            {
                "sink": SINK,
                "state": "dead",
                "attempts": 1,
                "next_attempt_at": None,
                "last_error": 'HTTP 404: {"status": 404}',
            }
        ]

    receiver.status, receiver.delay = 200, 0.0
    assert (
        await cli("dlq", "retry", "--yes")
    ).strip() == f"{count} dead letters queued for delivery again"
    await receiver.wait_until(
        lambda: all(receiver.ids()[eid] == 2 for eid in accepted),
        timeout=20,
        what="every dead letter delivered after the retry",
    )
    chosen = sorted(accepted)[0]
    listed_again, replayed = await asyncio.gather(cli("dlq", "list"), cli("replay", chosen))
    assert listed_again.strip() == "no dead letters"
    assert replayed.strip() == f"event {chosen} queued for 1 sinks"
    await receiver.wait_until(
        lambda: receiver.ids()[chosen] == 3, timeout=10, what="the replayed event delivered"
    )
    await settled(f"dlq:queue:{SINK}", 0)
    shown = await cli("events", chosen)
    assert shown.splitlines()[1:3] == ["    out: done, 1 attempts", "  attempts:"]
    # every attempt, with what triggered it and the status the sink reported
    history = [line.split() for line in shown.splitlines()[3:]]
    assert [(line[0], line[6], line[7]) for line in history] == [
        ("#1", "dead", "(first)"),
        ("#1", "done", "(dlq_retry)"),
        ("#1", "done", "(replay)"),
    ]
    assert history[0][8:10] == ["HTTP", "404"]
    assert shown.splitlines()[0].split()[2:5] == [chosen, "demo", "call.ended"]
    assert sorted(receiver.ids().values()) == [2] * (count - 1) + [3]


async def test_a_single_serve_process_on_redis_receives_and_delivers(
    redis_server, receiver, launch, admin, tmp_path
):
    count = 300
    config = write_config(tmp_path, redis_server, receiver, prefix="single")
    router = EventRouterProcess(config, env={"ER_WORKER": "serve"})
    await launch(router)
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/readyz") as answer:
        assert (answer.status, await answer.json()) == (200, {"status": "ready"})
    requests = signed_requests(count, tag="single")

    burst = await fire(hook_url(router), requests, concurrency=16)

    assert Counter(burst.statuses) == {200: count}
    await receiver.wait_until(
        lambda: len(receiver.received) >= count, timeout=20, what=f"{count} deliveries"
    )
    metrics = await wait_drained(router)
    await asyncio.sleep(0.3)
    assert receiver.ids() == Counter(dict.fromkeys(burst.accepted_ids, 1))
    assert {r.worker for r in receiver.received} == {"serve"}
    by_id = {r.event_id: r.body for r in receiver.received}
    for answer in burst.answers:
        body = by_id[answer["event_id"]]
        assert answer["sinks"] == [SINK]
        assert body["source"] == "demo"
        assert body["type"] == "call.ended"
        assert body["specversion"] == "1.0"
        assert body["idempotencykey"].startswith("msg_single_")
        assert body["data"]["data"]["attributes"]["tag"] == "single"
    assert requests_counted(metrics, "accepted") == count
    assert deliveries_counted(metrics, "delivered") == count
    assert depth(metrics, "dead") == 0
    assert await admin.xlen(f"single:queue:{SINK}") == 0
