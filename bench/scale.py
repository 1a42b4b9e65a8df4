"""Scale-out on Redis: ingest throughput of 1 vs 2 nodes, delivery throughput of 1 vs 2 workers.

In one run, on this machine, with a redis-server of its own (appendonly yes, appendfsync
everysec, in a temporary directory, on a free loopback port):

- ingest: acknowledged requests/s and p50/p99 ack latency of one ``eventrouter serve`` on SQLite,
  one on Redis and two on Redis (requests split round-robin). Every server runs with
  ``--no-deliver`` so only ingest is measured; each event is stored with one queued delivery.
  The load comes from this process (the servers are separate processes), with requests signed
  before the clock starts and fresh message ids for every run;
- delivery: events/s drained from the Redis queues the ingest runs filled, by one
  ``eventrouter worker`` and then by two, through the built-in ``http`` sink to a fast receiver
  in another process. The workers start while Redis holds writes (CLIENT PAUSE WRITE), so the
  clock starts when every worker is ready and Redis lets them go.

    python bench/scale.py [--requests 10000] [--concurrency 64] [--rounds 2]
                          [--delivery-concurrency 16]

Prints the figures side by side and the ratios; asserts nothing about speed, but fails if an
acknowledged event is missing from the store or is not delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis
from ingest import SECRET, free_port, signed_requests, wait_ready

RECEIVER = textwrap.dedent(
    """
    import json, sys, time
    from aiohttp import web

    ids = set()
    state = {"count": 0, "first": None, "last": None}

    async def deliver(request):
        ids.add(json.loads(await request.read())["id"])
        now = time.time()
        if state["first"] is None:
            state["first"] = now
        state["last"] = now
        state["count"] += 1
        return web.Response(status=204)

    async def stats(request):
        return web.json_response({**state, "unique": len(ids)})

    async def reset(request):
        ids.clear()
        state.update(count=0, first=None, last=None)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/in", deliver)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)

Requests = list[tuple[bytes, dict[str, str]]]

#: a request not answered within this is a failure (the run stops and shows the server's log)
REQUEST_TIMEOUT = 30.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (from Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(n) for n in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    busy = sum(ticks[:7]) - ticks[3] - ticks[4]  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    # the children are AOF rewrites, which are part of what Redis persistence costs
    return sum(
        float(info[key])
        for key in (
            "used_cpu_user",
            "used_cpu_sys",
            "used_cpu_user_children",
            "used_cpu_sys_children",
        )
    )


class Processes:
    """Child processes, their stderr in files of ``directory``; all stopped by ``stop_all``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: Sequence[str]) -> subprocess.Popen[bytes]:
        with (self.directory / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        self.running.append((name, process))
        return process

    def eventrouter(self, name: str, command: str, config: Path, port: int, *args: str) -> None:
        self.start(
            name,
            [
                sys.executable,
                "-m",
                "eventrouter",
                command,
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "warning",
                *args,
            ],
        )

    def pids(self, *names: str) -> list[int]:
        return [process.pid for name, process in self.running if name in names]

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_named(self, *names: str) -> None:
        for name, process in list(self.running):
            if name in names:
                self.stop(process)

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in list(self.running):
            self.stop(process)

    def log_tail(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")


def start_redis(processes: Processes, directory: Path) -> redis.Redis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    data = directory / "redis"
    data.mkdir()
    processes.start(
        "redis-server",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
    )
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            processes.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not answer PING within 10s") from None
            time.sleep(0.05)


def write_config(path: Path, *, store: str, receiver_port: int, delivery_concurrency: int) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            shutdown_timeout = "5s"
            [store]
            {store}
            [sources.bench]
            plugin = "standard-webhooks"
            secrets = ["{SECRET}"]
            [sinks.out]
            plugin = "http"
            url = "http://127.0.0.1:{receiver_port}/in"
            delivery = {{concurrency = {delivery_concurrency}, timeout = "10s"}}
            [[routes]]
            sinks = ["out"]
            """
        )
    )
    return path


async def load(
    urls: Sequence[str], requests: Requests, concurrency: int
) -> tuple[float, list[float], int]:
    """Post every request, request ``i`` to ``urls[i % len(urls)]``, ``concurrency`` in flight;
    return elapsed seconds, latencies and how many were not answered 200."""
    latencies: list[float] = []
    failures = 0
    queue = iter(enumerate(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal failures
            for index, (body, headers) in queue:
                started = time.perf_counter()
                url = urls[index % len(urls)]
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            failures += 1
                except (aiohttp.ClientError, TimeoutError):
                    failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def measure(
    name: str,
    urls: Sequence[str],
    requests: Requests,
    concurrency: int,
    *,
    server_pids: Sequence[int],
    client: redis.Redis,
    processes: Processes,
) -> dict[str, float]:
    """Load ``urls``; requests/s, ack latency percentiles and CPU ms per request by role."""

    def snapshot() -> tuple[float, ...]:
        return (
            sum(map(cpu_seconds, server_pids)),
            redis_cpu_seconds(client),
            own_cpu_seconds(),
            machine_cpu_seconds(),
        )

    cpu = snapshot()
    elapsed, latencies, failures = asyncio.run(load(urls, requests, concurrency))
    after = snapshot()
    if failures:
        logs = "\n".join(
            f"--- {n}:\n{processes.log_tail(n)}"
            for n, p in processes.running
            if p.pid in server_pids
        )
        raise SystemExit(f"{name}: {failures} requests were not answered 200\n{logs}")
    latencies.sort()
    per_request = [(b - a) * 1000 / len(requests) for a, b in zip(cpu, after, strict=True)]
    return {
        "rps": len(requests) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "cpu_server": per_request[0],
        "cpu_redis": per_request[1],
        "cpu_client": per_request[2],
        "cpu_other": max(0.0, per_request[3] - sum(per_request[:3])),
    }


async def receiver_call(port: int, method: str, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}") as response,
    ):
        return await response.json()


def drain(
    processes: Processes,
    client: redis.Redis,
    *,
    label: str,
    config: Path,
    workers: int,
    expected: int,
    receiver_port: int,
) -> dict[str, float]:
    """Start ``workers`` workers on a paused Redis, release them, wait for ``expected`` events."""
    asyncio.run(receiver_call(receiver_port, "POST", "/reset"))
    names = [f"{label}-worker-{n}" for n in range(workers)]
    ports = [free_port() for _ in names]
    client.client_pause(60_000, all=False)  # writes (and scripts) wait: no worker claims yet
    try:
        for name, port in zip(names, ports, strict=True):
            processes.eventrouter(name, "worker", config, port)
        for port in ports:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}/healthz"))
        worker_pids = processes.pids(*names)
        receiver_pid = processes.pids("receiver")[0]
        cpu = (
            sum(map(cpu_seconds, worker_pids)),
            redis_cpu_seconds(client),
            cpu_seconds(receiver_pid),
            own_cpu_seconds(),
            machine_cpu_seconds(),
        )
    finally:
        released = time.time()
        client.client_unpause()
    deadline = time.monotonic() + 60 + expected / 100
    while True:
        stats = asyncio.run(receiver_call(receiver_port, "GET", "/stats"))
        if stats["unique"] >= expected:
            break
        processes.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: only {stats['unique']} of {expected} events delivered")
        time.sleep(0.2)
    after = (
        sum(map(cpu_seconds, worker_pids)),
        redis_cpu_seconds(client),
        cpu_seconds(receiver_pid),
        own_cpu_seconds(),
        machine_cpu_seconds(),
    )
    time.sleep(1.0)  # anything delivered twice would arrive now
    stats = asyncio.run(receiver_call(receiver_port, "GET", "/stats"))
    processes.stop_named(*names)
    elapsed = stats["last"] - released
    per_event = [(b - a) * 1000 / stats["unique"] for a, b in zip(cpu, after, strict=True)]
    return {
        "events": stats["unique"],
        "rate": stats["unique"] / elapsed,
        "seconds": elapsed,
        "duplicates": stats["count"] - stats["unique"],
        "cpu_workers": per_event[0],
        "cpu_redis": per_event[1],
        "cpu_receiver": per_event[2],
        "cpu_other": max(0.0, per_event[4] - sum(per_event[:4])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10000, help="per setup and round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best of each is kept"
    )
    parser.add_argument(
        "--delivery-concurrency", type=int, default=16, help="each worker's sink concurrency"
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores

    with tempfile.TemporaryDirectory(prefix="eventrouter-scale-") as tmp:
        directory = Path(tmp)
        processes = Processes(directory)
        try:
            client = start_redis(processes, directory)
            receiver_port = free_port()
            processes.start("receiver", [sys.executable, "-c", RECEIVER, str(receiver_port)])
            redis_url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"

            def config(name: str, store: str) -> Path:
                return write_config(
                    directory / f"{name}.toml",
                    store=store,
                    receiver_port=receiver_port,
                    delivery_concurrency=args.delivery_concurrency,
                )

            configs = {
                "sqlite": config("sqlite", 'path = "bench.db"'),
                "redis-1": config(
                    "redis-1", f'backend = "redis"\nurl = "{redis_url}"\nkey_prefix = "one"'
                ),
                "redis-2": config(
                    "redis-2", f'backend = "redis"\nurl = "{redis_url}"\nkey_prefix = "two"'
                ),
            }
            setups = {
                "1 x serve, SQLite": ("sqlite", 1),
                "1 x serve, Redis": ("redis-1", 1),
                "2 x serve, Redis": ("redis-2", 2),
            }
            urls: dict[str, list[str]] = {}
            server_pids: dict[str, list[int]] = {}
            for setup, (name, nodes) in setups.items():
                urls[setup] = []
                for node in range(nodes):
                    port = free_port()
                    processes.eventrouter(
                        f"{name}-ingest-{node}", "serve", configs[name], port, "--no-deliver"
                    )
                    urls[setup].append(f"http://127.0.0.1:{port}/hooks/bench")
                server_pids[setup] = processes.pids(*(f"{name}-ingest-{n}" for n in range(nodes)))
            for setup_urls in urls.values():
                for url in setup_urls:
                    asyncio.run(wait_ready(url.replace("/hooks/bench", "/healthz")))
            asyncio.run(wait_ready(f"http://127.0.0.1:{receiver_port}/stats"))

            # every request signed before any clock starts; fresh message ids for every run
            batches = {
                (setup, round_): signed_requests(args.requests, f"{os.getpid()}_{index}_{round_}")
                for round_ in range(args.rounds)
                for index, setup in enumerate(setups)
            }
            results: dict[str, list[dict[str, float]]] = {setup: [] for setup in setups}
            for round_ in range(args.rounds):
                for setup in setups:
                    results[setup].append(
                        measure(
                            setup,
                            urls[setup],
                            batches[setup, round_],
                            args.concurrency,
                            server_pids=server_pids[setup],
                            client=client,
                            processes=processes,
                        )
                    )
                    processes.check_alive()
                print(f"ingest round {round_ + 1}/{args.rounds} done", file=sys.stderr)
            acknowledged = args.requests * args.rounds

            processes.stop_named(*[n for n, _ in processes.running if "-ingest-" in n])
            with sqlite3.connect(directory / "bench.db") as conn:
                stored = {"sqlite": conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]}
            for name, prefix in (("redis-1", "one"), ("redis-2", "two")):
                stored[name] = client.xlen(f"{prefix}:events")
                queued = client.xlen(f"{prefix}:queue:out")
                if queued != acknowledged:
                    raise SystemExit(
                        f"{name}: {queued} deliveries queued for {acknowledged} events"
                    )
            for name, count in stored.items():
                if count != acknowledged:
                    raise SystemExit(
                        f"{name}: {count} events stored of {acknowledged} acknowledged"
                    )
            memory = client.info("memory")["used_memory"]
            aof = sum(f.stat().st_size for f in (directory / "redis").rglob("*.aof"))

            delivery = {
                "1 x worker, Redis": drain(
                    processes,
                    client,
                    label="one",
                    config=configs["redis-1"],
                    workers=1,
                    expected=acknowledged,
                    receiver_port=receiver_port,
                ),
                "2 x worker, Redis": drain(
                    processes,
                    client,
                    label="two",
                    config=configs["redis-2"],
                    workers=2,
                    expected=acknowledged,
                    receiver_port=receiver_port,
                ),
            }
            left = client.xlen("one:queue:out") + client.xlen("two:queue:out")
            client.close()
        finally:
            processes.stop_all()

    best = {setup: max(rows, key=lambda r: r["rps"]) for setup, rows in results.items()}
    base = best["1 x serve, SQLite"]["rps"]
    print(
        f"\nscale-out benchmark on {cores} CPU cores ({usable} usable): the load client, every "
        "eventrouter process, redis-server and the receiver share them,\nso two processes cannot "
        "use twice the CPU one has; the ratios show what this machine allows, not a ceiling.\n"
        "redis-server: appendonly yes, appendfsync everysec. SQLite: WAL with a full fsync per "
        "group commit (synchronous = FULL)."
    )
    print(
        f"\ningest: {args.requests} signed requests x {args.rounds} rounds per setup, "
        f"concurrency {args.concurrency}, best round kept;\nevery server runs --no-deliver and "
        "stores each event with one queued delivery"
    )
    print(f"{'':<57}CPU ms per request")
    print(
        f"{'setup':<18}{'requests/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'vs SQLite':>10}"
        f"{'eventrouter':>13}{'redis':>7}{'client':>8}{'other':>7}"
    )
    for setup, row in best.items():
        print(
            f"{setup:<18}{row['rps']:>11.0f}{row['p50']:>8.1f}{row['p99']:>8.1f}"
            f"{row['rps'] / base:>9.2f}x{row['cpu_server']:>13.2f}{row['cpu_redis']:>7.2f}"
            f"{row['cpu_client']:>8.2f}{row['cpu_other']:>7.2f}"
        )
    one, two = best["1 x serve, Redis"]["rps"], best["2 x serve, Redis"]["rps"]
    print(f"2 ingest nodes / 1 on Redis: {two / one:.2f}x")
    print(
        f"stored: {', '.join(f'{n} {c}' for n, c in stored.items())} of {acknowledged} "
        f"acknowledged each; Redis used_memory {memory / 2**20:.1f} MiB for "
        f"{2 * acknowledged} events ({memory / (2 * acknowledged) / 1024:.1f} KiB each), "
        f"AOF {aof / 2**20:.1f} MiB"
    )
    print(
        f"\ndelivery: {acknowledged} queued events drained through the http sink to a local "
        f"receiver, sink concurrency {args.delivery_concurrency} per worker"
    )
    print(f"{'':<56}CPU ms per event")
    print(
        f"{'setup':<18}{'events':>8}{'events/s':>10}{'seconds':>9}{'duplicates':>11}"
        f"{'workers':>10}{'redis':>7}{'receiver':>10}{'other':>7}"
    )
    for setup, row in delivery.items():
        print(
            f"{setup:<18}{row['events']:>8.0f}{row['rate']:>10.0f}{row['seconds']:>9.1f}"
            f"{row['duplicates']:>11.0f}{row['cpu_workers']:>10.2f}{row['cpu_redis']:>7.2f}"
            f"{row['cpu_receiver']:>10.2f}{row['cpu_other']:>7.2f}"
        )
    print(
        "'other': CPU used meanwhile by everything else on the machine (kernel networking and "
        "other programs);\nwell above zero means the figures were disturbed: run again on a "
        "quiet machine."
    )
    ratio = delivery["2 x worker, Redis"]["rate"] / delivery["1 x worker, Redis"]["rate"]
    print(f"2 workers / 1 worker: {ratio:.2f}x; deliveries left in the queues: {left}")


if __name__ == "__main__":
    main()
