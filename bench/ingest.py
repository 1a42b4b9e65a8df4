"""Ingest throughput and ack latency: eventrouter (durable SQLite store) vs a bare aiohttp app.

Both servers run as separate processes on 127.0.0.1 and are loaded, one after the other, by the
same client process with the same pre-signed Standard Webhooks requests, so the ratio is measured
on one machine in one run. The bare app answers 200 to every POST without looking at it.

    python bench/ingest.py [--requests 20000] [--concurrency 64] [--rounds 3] [--deliver]

Prints requests/s and p50/p99 ack latency for each, and eventrouter's share of the bare app's
throughput (target: >= 0.6x). With ``--deliver`` every event is also routed to an ``http`` sink
that posts it to the bare app, so the store writes a delivery record per event and delivery
runs in the same process while ingest is measured: the whole job, not ingest alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import standardwebhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

BARE_APP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def ok(request):
        await request.read()
        return web.json_response({"status": "accepted"})

    app = web.Application()
    app.router.add_post("/hooks/bench", ok)
    app.router.add_post("/deliveries", ok)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(config: Path, *, log_level: str = "warning") -> list[str]:
    """``eventrouter serve`` on ``config``, as every benchmark runs it (warnings only unless
    ``log_level`` says otherwise)."""
    config_args = ["--config", str(config), "--log-level", log_level]
    return [sys.executable, "-m", "eventrouter", "serve", *config_args]


def write_config(
    directory: Path,
    port: int,
    bare_port: int = 0,
    *,
    deliver: bool = False,
    source: str | None = None,
    sink: str | None = None,
) -> Path:
    """The benchmark's eventrouter.toml: one source ``bench`` on a SQLite store, a Standard
    Webhooks source unless ``source`` gives the table's lines; with ``deliver`` an ``http`` sink
    posting every event to the bare app on ``bare_port``, or the sink whose lines ``sink`` gives."""
    source = source or f'plugin = "standard-webhooks"\nsecrets = ["{SECRET}"]'
    if deliver and sink is None:
        url = f"http://127.0.0.1:{bare_port}/deliveries"
        sink = f'plugin = "http"\nurl = "{url}"\ndelivery = {{ concurrency = 16 }}'
    text = f'[server]\nport = {port}\n[store]\npath = "bench.db"\n[sources.bench]\n{source}\n'
    if sink is not None:
        text += f'[sinks.forward]\n{sink}\n[[routes]]\nsinks = ["forward"]\n'
    config = directory / "bench.toml"
    config.write_text(text)
    return config


def signed_requests(count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    webhook = standardwebhooks.Webhook(SECRET)
    now = datetime.now(UTC)
    requests = []
    for n in range(count):
        body = json.dumps(
            {
                "type": "call.ended",
                "timestamp": now.isoformat(),
                "data": {"n": n, "phone": "+919876543210", "duration": 45},
            }
        )
        msg_id = f"msg_bench_{tag}_{n}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(msg_id, now, body),
        }
        requests.append((body.encode(), headers))
    return requests


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start within {timeout}s")


async def load(
    url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], int]:
    """Send every request with ``concurrency`` in flight; return elapsed seconds, latencies, failures."""
    latencies: list[float] = []
    failures = 0
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def start(cmd: list[str], **kwargs) -> subprocess.Popen:
    # stderr is the bench's own: a pipe nobody reads would stall a server that logs a lot
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **kwargs)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, url: str, requests, concurrency: int, pid: int) -> dict[str, float]:
    cpu_before = cpu_seconds(pid)
    elapsed, latencies, failures = asyncio.run(load(url, requests, concurrency))
    cpu = cpu_seconds(pid) - cpu_before
    if failures:
        raise SystemExit(f"{name}: {failures} requests were not answered 200")
    latencies.sort()
    return {
        "rps": len(requests) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "cpu_us": cpu / len(requests) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; the best of each is kept"
    )
    parser.add_argument(
        "--deliver",
        action="store_true",
        help="also route every event to an http sink (posting to the bare app) while measuring",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        er_port, bare_port = free_port(), free_port()
        config = write_config(Path(tmp), er_port, bare_port, deliver=args.deliver)
        eventrouter = start(serve_command(config))
        bare = start([sys.executable, "-c", BARE_APP, str(bare_port)])
        try:
            er_url = f"http://127.0.0.1:{er_port}/hooks/bench"
            bare_url = f"http://127.0.0.1:{bare_port}/hooks/bench"
            asyncio.run(wait_ready(f"http://127.0.0.1:{er_port}/healthz"))
            asyncio.run(wait_ready(f"http://127.0.0.1:{bare_port}/"))
            results: dict[str, list[dict[str, float]]] = {"bare aiohttp": [], "eventrouter": []}
            for round_ in range(args.rounds):
                # fresh message ids every round, or eventrouter would answer "duplicate"
                requests = signed_requests(args.requests, f"{os.getpid()}_{round_}")
                results["bare aiohttp"].append(
                    measure("bare", bare_url, requests, args.concurrency, bare.pid)
                )
                results["eventrouter"].append(
                    measure("eventrouter", er_url, requests, args.concurrency, eventrouter.pid)
                )
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            stop(eventrouter)
            stop(bare)
        db = Path(tmp) / "bench.db"
        import sqlite3

        with sqlite3.connect(db) as conn:
            count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            states = dict(
                conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
            )

    best = {name: max(rows, key=lambda r: r["rps"]) for name, rows in results.items()}
    print(
        f"\ningest benchmark: {args.requests} signed requests x {args.rounds} rounds, concurrency {args.concurrency}"
        + (", every event also delivered through an http sink" if args.deliver else "")
    )
    print(f"machine: {os.cpu_count()} cores shared by the load client and the server under test")
    print(
        f"{'server':<14}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'server CPU µs/request':>24}"
    )
    for name, row in best.items():
        print(
            f"{name:<14}{row['rps']:>12.0f}{row['p50']:>10.2f}{row['p99']:>10.2f}{row['cpu_us']:>24.0f}"
        )
    ratio = best["eventrouter"]["rps"] / best["bare aiohttp"]["rps"]
    print(f"eventrouter / bare aiohttp throughput: {ratio:.2f}x (target >= 0.60x)")
    print(f"events durably stored: {count} of {args.requests * args.rounds} acknowledged")
    if args.deliver:
        print(f"deliveries by state at the end: {states}")
    if count != args.requests * args.rounds:
        raise SystemExit("not every acknowledged event is in the store")


if __name__ == "__main__":
    main()
