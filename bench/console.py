"""The console on a big store: each page's server time, and ingest with a live tail open.

1. A SQLite store of ``--events`` events (default 1,000,000: Altur-like calls with contacts and
   campaigns; their deliveries done but for 5,000 pending and 5,000 dead letters), built
   through the store's own write path (its group-committed ingest, many events per
   transaction; claims and acks in batches), then every console page and its
   ``/api`` twin requested ``--repeat`` times on loopback; the median server time of each is
   printed (target: under 100 ms).
2. ``eventrouter serve`` with its console, loaded with ``--requests`` signed webhooks per round,
   alternately without and with a browser-like client on the events page's live tail (the
   server-sent-events stream); the best round of each and their ratio are printed (target:
   within 5%).

    python bench/console.py [--events 1000000] [--repeat 10] [--requests 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    free_port,
    load,
    serve_command,
    signed_requests,
    start,
    stop,
    wait_ready,
)
from ingest import write_config as write_ingest_config

from eventrouter.config import load_config
from eventrouter.console import create_console_app
from eventrouter.events import Call, Campaign, Contact, Event, EventData
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.store import create_store
from eventrouter.store.base import Store

TOKEN = "bench-console-token-0123456789"
SOURCES = ("altur", "exotel", "pelcro")


def write_config(directory: Path, *, port: int, console_port: int) -> Path:
    """The ingest benchmark's config (a Standard Webhooks source on SQLite), plus a CSV sink
    every event is routed to and the console, reached with :data:`TOKEN`."""
    config = write_ingest_config(directory, port, 0, deliver=False)
    extra = f"""
[sinks.archive]
plugin = "csv"
directory = "archive"
[[routes]]
sinks = ["archive"]
[console]
port = {console_port}
tokens = ["{TOKEN}"]
"""
    config.write_text(config.read_text() + extra)
    return config


def bench_event(n: int, start: datetime) -> Event:
    """The n-th event: one of 50,000 contacts, 200 campaigns, three sources, a second apart."""
    received = start + timedelta(seconds=n)
    phone = f"+5255{n % 50_000:08d}"
    raw = {"id": f"cll_{n}", "phone": phone, "campaign": n % 200, "note": f"bench event {n}"}
    return Event(
        id=f"evt_bench_{n:08d}",
        source=SOURCES[n % 3],
        type="call.ended" if n % 4 else "campaign.cycle_completed",
        time=received,
        provider=SOURCES[n % 3],
        provider_type="on_call_end",
        idempotency_key=f"bench-{n}",
        received_at=received,
        data=EventData(
            contact=Contact(phone=phone),
            call=Call(id=f"cll_{n}"),
            campaign=Campaign(id=str(n % 200)),
        ),
        raw=raw,
    )


async def build_store(store: Store, count: int, *, dead: int, pending: int) -> float:
    """``count`` events through ``store.ingest`` (batched by the store's group commit), every one
    routed to the archive sink; then, as in a store that has been running, all but ``pending``
    of those deliveries done (claimed and acknowledged) and ``dead`` of them dead-lettered.
    Returns the seconds it took."""
    started = time.perf_counter()
    first = datetime.now(UTC) - timedelta(seconds=count + 60)
    batch = 2000
    for offset in range(0, count, batch):
        await asyncio.gather(
            *(
                store.ingest(bench_event(n, first), ["archive"])
                for n in range(offset, min(offset + batch, count))
            )
        )
        if offset and offset % 100_000 == 0:
            print(f"  {offset} events stored", file=sys.stderr)
    left = count - pending
    while left > 0:
        claimed = await store.claim("archive", limit=min(left, 1000), lease=600)
        if not claimed:
            break
        if dead > 0:
            await asyncio.gather(
                *(store.dead_letter(d, error="HTTP 410 from archive") for d in claimed)
            )
            dead -= len(claimed)
        else:
            await asyncio.gather(*(store.ack(d) for d in claimed))
        left -= len(claimed)
        if left % 100_000 < 1000:
            print(f"  {count - pending - left} deliveries done", file=sys.stderr)
    return time.perf_counter() - started


async def page_times(config_path: Path, events: int, repeat: int) -> list[tuple[str, float, int]]:
    config = load_config(config_path, Registry.collect(create_plugin_manager()))
    store = create_store(config.store, base_dir=config.base_dir)
    await store.open()
    print(f"building a store of {events} events ...", file=sys.stderr)
    built = await build_store(
        store, events, dead=min(5000, events // 10), pending=min(5000, events // 10)
    )
    print(f"  built in {built:.0f} s", file=sys.stderr)
    runner = web.AppRunner(create_console_app(config, store=store))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    some = bench_event(events // 2, datetime.now(UTC))
    pages = [
        "/",
        "/events",
        "/events?limit=50&cursor=",  # filled in below with a real second page
        f"/events?contact={some.data.contact.phone.replace('+', '%2B')}",  # type: ignore[union-attr]
        "/events?campaign_id=42",
        "/events?state=dead",
        "/events?source=exotel&type=campaign.*",
        f"/events/{some.id}",
        "/dead-letters",
        f"/timeline?contact={some.data.contact.phone.replace('+', '%2B')}",  # type: ignore[union-attr]
        "/timeline?campaign=42",
        "/config",
    ]
    results = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as client:
            async with client.get("/api/events") as answer:
                pages[2] += (await answer.json())["next_cursor"]
            for page in pages:
                for path in (
                    page,
                    page.replace("/", "/api/", 1) if page != "/" else "/api/overview",
                ):
                    if path.startswith("/api/config"):
                        path = "/api/sinks"
                    times, status = [], 0
                    for _ in range(repeat + 1):  # the first one warms caches up, not counted
                        started = time.perf_counter()
                        async with client.get(path) as answer:
                            await answer.read()
                            status = answer.status
                        times.append(time.perf_counter() - started)
                    results.append((path, statistics.median(times[1:]) * 1000, status))
    finally:
        await runner.cleanup()
        await store.close()
    return results


async def tail(url: str, seen: list[int], stop_reading: asyncio.Event) -> None:
    """A browser tab on the events page: reads the live tail until told to stop."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as stream:
        while not stop_reading.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    line = await stream.content.readline()
                    if line.startswith(b"data:"):
                        seen[0] += 1


async def ingest_round(
    hook_url: str, tail_url: str | None, requests: list[Any], concurrency: int
) -> tuple[float, int]:
    seen = [0]
    stop_reading = asyncio.Event()
    reader = asyncio.create_task(tail(tail_url, seen, stop_reading)) if tail_url else None
    await asyncio.sleep(0.5)
    elapsed, _, failures = await load(hook_url, requests, concurrency)
    if failures:
        raise SystemExit(f"{failures} webhooks were not answered 200")
    if reader is not None:
        await asyncio.sleep(1.5)  # the tail's next look at the store shows the last ones
        stop_reading.set()
        await reader
    return len(requests) / elapsed, seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        port, console_port = free_port(), free_port()
        config = write_config(Path(tmp), port=port, console_port=console_port)
        times = asyncio.run(page_times(config, args.events, args.repeat))
        (Path(tmp) / "bench.db").unlink()
        for suffix in ("-wal", "-shm"):
            Path(tmp, f"bench.db{suffix}").unlink(missing_ok=True)

        server = start(serve_command(config))
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}/healthz"))
            asyncio.run(wait_ready(f"http://127.0.0.1:{console_port}/login"))
            hook = f"http://127.0.0.1:{port}/hooks/bench"
            stream = f"http://127.0.0.1:{console_port}/events/stream"
            rates: dict[str, list[float]] = {"without console": [], "live tail open": []}
            shown = 0
            for round_ in range(args.rounds):
                for name, tail_url in (("without console", None), ("live tail open", stream)):
                    requests = signed_requests(args.requests, f"{os.getpid()}_{round_}_{len(name)}")
                    rate, seen = asyncio.run(
                        ingest_round(hook, tail_url, requests, args.concurrency)
                    )
                    rates[name].append(rate)
                    shown += seen
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            stop(server)

    print(
        f"\nconsole pages on a SQLite store of {args.events} events (median of {args.repeat}, ms):"
    )
    for path, ms, status in times:
        flag = "" if ms < 100 else "  (over the 100 ms target)"
        print(f"  {ms:8.1f}  {status}  {path}{flag}")
    best = {name: max(values) for name, values in rates.items()}
    ratio = best["live tail open"] / best["without console"]
    print(
        f"\ningest, {args.requests} signed webhooks a round, concurrency {args.concurrency}, "
        f"best of {args.rounds} alternating rounds:"
    )
    for name, rate in best.items():
        print(f"  {name:<16} {rate:8.0f} requests/s")
    print(f"  with a live tail / without: {ratio:.3f}x (target >= 0.95x)")
    print(f"  events the tail showed: {shown} (the newest page each second, up to 50 at a time)")


if __name__ == "__main__":
    main()
