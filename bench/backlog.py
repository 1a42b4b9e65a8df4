"""Memory with a backlog of 1,000,000 pending deliveries: the backlog lives on disk, not in RAM.

Fills an SQLite store with ``--deliveries`` pending deliveries (one event each, written straight
into the store's schema in big transactions), then runs ``eventrouter serve`` on it with an
``http`` sink whose endpoint refuses connections, so the backlog stays while the server claims,
fails and reschedules deliveries. Meanwhile a few thousand more webhooks are ingested. The
server's resident memory is sampled from /proc/PID/status (VmRSS, and VmHWM at the end).

The same server on an empty store, with the same sink, the same ingest and the same duration,
is the baseline, measured in the same run.

    python bench/backlog.py [--deliveries 1000000] [--seconds 30] [--ingest 5000]

Prints peak RSS for both and their ratio; no assertion on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from ingest import SECRET, free_port, serve_command, signed_requests, stop, wait_ready

from eventrouter.events import Event, EventData, new_event_id
from eventrouter.store.sqlite_schema import migrate

BATCH = 50_000


def fill(db: Path, deliveries: int, sink: str) -> float:
    """Write ``deliveries`` events, each with one pending delivery to ``sink``; seconds taken."""
    started = time.monotonic()
    now = datetime.now(UTC)
    template = Event(
        id="evt_TEMPLATE",
        source="bench",
        type="call.ended",
        time=now,
        received_at=now,
        provider="standard-webhooks",
        provider_type="call.ended",
        idempotency_key="msg_TEMPLATE",
        data=EventData(attributes={"phone": "+919876543210", "duration": 45}),
        raw={"type": "call.ended", "data": {"phone": "+919876543210", "duration": 45}},
    ).to_json()
    received = now.timestamp()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a fixture, not ingest: durability is not measured
    migrate(conn)  # the store's own schema, at its current version
    written = 0
    while written < deliveries:
        count = min(BATCH, deliveries - written)
        ids = [new_event_id() for _ in range(count)]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, source, type, received_at, body) VALUES (?, 'bench', 'call.ended', ?, ?)",
            (
                (eid, received, template.replace("evt_TEMPLATE", eid).replace("msg_TEMPLATE", eid))
                for eid in ids
            ),
        )
        conn.executemany(
            "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at, updated_at,"
            " received_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)",
            ((eid, sink, received + n * 1e-6, received, received) for n, eid in enumerate(ids)),
        )
        conn.execute("COMMIT")
        written += count
        print(f"  {written:,} / {deliveries:,} pending deliveries written", file=sys.stderr)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - started


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (Linux /proc)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


async def exercise(
    port: int, pid: int, *, seconds: float, ingest: int, tag: str
) -> tuple[list[dict[str, int]], int, str]:
    """Sample memory for ``seconds`` while ``ingest`` webhooks are posted; the samples, the
    number of 2xx answers and the final /metrics queue depth line of the sink."""
    base = f"http://127.0.0.1:{port}"
    await wait_ready(f"{base}/healthz", timeout=60)
    samples: list[dict[str, int]] = []
    accepted = 0
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(memory(pid))
            await asyncio.sleep(0.2)

    async def post_all() -> None:
        nonlocal accepted
        pending = iter(signed_requests(ingest, tag))
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                nonlocal accepted
                for body, headers in pending:
                    async with session.post(
                        f"{base}/hooks/bench", data=body, headers=headers
                    ) as answer:
                        await answer.read()
                        accepted += answer.status == 200
                    await asyncio.sleep(0.01)  # a steady trickle over the run, not one burst

            await asyncio.gather(*(client() for _ in range(8)))

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    await post_all()
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as answer:
        metrics = await answer.text()
    done.set()
    await sampler
    samples.append(memory(pid))
    depth = ", ".join(
        line.split("{", 1)[1]
        for line in metrics.splitlines()
        if line.startswith('eventrouter_queue_depth{sink="slow"')
    )
    return samples, accepted, depth


def run_server(directory: Path, *, seconds: float, ingest: int, tag: str) -> dict[str, object]:
    port = free_port()
    dead_port = free_port()  # nothing listens there: every delivery fails at once
    config = directory / "eventrouter.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [server]
            port = {port}
            [store]
            path = "eventrouter.db"
            [sources.bench]
            plugin = "standard-webhooks"
            secrets = ["{SECRET}"]
            [sinks.slow]
            plugin = "http"
            url = "http://127.0.0.1:{dead_port}/unreachable"
            delivery = {{ concurrency = 16, retry_schedule = ["2s", "5s", "30s", "60s", "120s"], circuit_failures = 0 }}
            [[routes]]
            sinks = ["slow"]
            """
        )
    )
    process = subprocess.Popen(
        serve_command(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        samples, accepted, depth = asyncio.run(
            exercise(port, process.pid, seconds=seconds, ingest=ingest, tag=tag)
        )
        high_water = memory(process.pid)["VmHWM"]
    finally:
        stop(process)
    with sqlite3.connect(directory / "eventrouter.db") as conn:
        attempted = conn.execute("SELECT COUNT(*) FROM deliveries WHERE attempts > 0").fetchone()[0]
    return {
        "attempted": attempted,
        "peak_rss": max(max(s["VmRSS"] for s in samples), high_water),
        "hwm": high_water,
        "final_rss": samples[-1]["VmRSS"],
        "accepted": accepted,
        "depth": depth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each server runs")
    parser.add_argument("--ingest", type=int, default=5000, help="webhooks posted during the run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        backlog_dir, empty_dir = Path(tmp) / "backlog", Path(tmp) / "empty"
        backlog_dir.mkdir()
        empty_dir.mkdir()
        print(f"filling a store with {args.deliveries:,} pending deliveries", file=sys.stderr)
        filled_in = fill(backlog_dir / "eventrouter.db", args.deliveries, "slow")
        size = (backlog_dir / "eventrouter.db").stat().st_size
        print("running the server on the empty store (baseline)", file=sys.stderr)
        baseline = run_server(empty_dir, seconds=args.seconds, ingest=args.ingest, tag="empty")
        print("running the server on the backlog", file=sys.stderr)
        backlog = run_server(backlog_dir, seconds=args.seconds, ingest=args.ingest, tag="backlog")

    print(
        f"\nbacklog benchmark: {args.deliveries:,} pending deliveries "
        f"({size / 2**20:.0f} MiB store, written in {filled_in:.0f}s); each server ran "
        f"{args.seconds:.0f}s with a sink that refuses every delivery and {args.ingest:,} "
        "webhooks ingested meanwhile"
    )
    print(f"machine: {os.cpu_count()} cores")
    print(
        f"{'store':<10}{'peak RSS MiB':>14}{'VmHWM MiB':>12}{'final RSS MiB':>15}{'2xx':>7}{'attempted':>11}  queue"
    )
    for name, row in (("empty", baseline), ("backlog", backlog)):
        print(
            f"{name:<10}{row['peak_rss'] / 1024:>14.1f}{row['hwm'] / 1024:>12.1f}"
            f"{row['final_rss'] / 1024:>15.1f}{row['accepted']:>7}{row['attempted']:>11}  {row['depth']}"
        )
    print(f"backlog / empty peak RSS: {backlog['peak_rss'] / baseline['peak_rss']:.2f}x")


if __name__ == "__main__":
    main()
