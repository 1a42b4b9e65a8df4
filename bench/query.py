"""The query layer on a big SQLite store: pages stay fast, ingest stays as fast as before.

Builds a store of ``--events`` events (default 1,000,000) through the store's own write path
(``eventrouter.store.sqlite.ingest_write``, the statements ``ingest`` runs) in large
transactions, with contacts, calls and campaigns spread over them and some deliveries
dead-lettered and attempted, then times through ``eventrouter.query``:

- the first page (50 events, newest first), and the page after it;
- a page filtered by contact phone (given in a local format), by campaign, by state=dead;
- one event with its attempts;

each the median of ``--repeat`` runs, in ms (target: under 50 ms each). Then ingest throughput
with today's schema, statements and event ids, and with those before the query indexes
(874c93e, version 0, random event ids), in the same run, the same way (``--ingest`` events in
transactions of 512, as the group commit batches them, fsync on): events/s and their ratio
(target: within 10%), into new stores, then into stores already holding ``--filled`` events
(where the indexes no longer fit SQLite's page cache, as in a store that has run a while).

    python bench/query.py [--events 1000000] [--ingest 20000] [--filled 200000] [--repeat 7]
                          [--keep DIR]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen

from eventrouter import query
from eventrouter.events import Call, Campaign, Contact, Event, EventData, new_event_id
from eventrouter.query import EventFilter, PageRequest
from eventrouter.store import Attempt, AttemptOutcome, DeliveryState, Trigger
from eventrouter.store.sqlite import SQLiteStore, ingest_write
from eventrouter.store.sqlite_schema import BASE_SCHEMA, migrate

TRANSACTION = 50_000
PHONES = 100_000
CAMPAIGNS = 1_000
SOURCES = ("altur", "exotel", "pelcro")


def random_event_id() -> str:
    """An event id as ``new_event_id`` made them before they began with the time: 128 random
    bits (the baseline's ids: today's ingest before the query indexes)."""
    return f"evt_{random.getrandbits(128):032x}"


def events(
    count: int,
    *,
    seed: int = 13,
    make_id: Callable[[], str] = new_event_id,
    days_ago: float = 30,
    tag: str = "",
) -> Iterator[Event]:
    """``count`` call events over 30 days up to ``days_ago`` ago, oldest first (``tag`` starts
    their idempotency keys: events of another batch are not duplicates)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=days_ago)
    step = timedelta(days=30) / count
    for n in range(count):
        received = start + step * n
        source = SOURCES[n % 3]
        phone = f"+5255{rng.randrange(PHONES):08d}"
        yield Event(
            id=make_id(),
            source=source,
            type="call.ended" if n % 5 else "campaign.cycle_completed",
            time=received,
            provider=source,
            provider_type="call.completed",
            idempotency_key=f"{tag}{source}-{n}",
            received_at=received,
            data=EventData(
                contact=Contact(phone=phone, email=f"c{rng.randrange(PHONES)}@example.com"),
                call=Call(id=f"call-{n}"),
                campaign=Campaign(id=f"camp-{rng.randrange(CAMPAIGNS)}"),
            ),
            raw={"call_id": f"call-{n}", "to": phone, "status": "completed", "duration": 42},
        )


def build(path: Path, count: int, *, indexed: bool = True, days_ago: float = 30) -> float:
    """A store of ``count`` events with one delivery each; seconds taken. ``indexed``: today's
    schema and ingest statements (and ids); else those before the query indexes (random ids)."""
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a fixture: the ingest figure below keeps fsync
    if indexed:
        migrate(conn)
    else:
        conn.executescript(BASE_SCHEMA)
    make_id = new_event_id if indexed else random_event_id
    conn.execute("BEGIN")
    for n, event in enumerate(events(count, make_id=make_id, days_ago=days_ago), 1):
        if indexed:
            ingest_write(event, ["crm"], window=3 * 86400)(conn)
        else:
            old_ingest(conn, event, ["crm"], 3 * 86400)
        if n % TRANSACTION == 0:
            conn.execute("COMMIT")
            print(f"  {n:,} / {count:,} events", file=sys.stderr)
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - started


async def dead_letter_some(store: SQLiteStore, count: int) -> str:
    """Dead-letter ``count`` deliveries (the oldest due), each after one recorded attempt; the
    id of the last one."""
    last = ""
    while count > 0:
        claimed = await store.claim("crm", limit=min(count, 500), lease=30)
        for delivery in claimed:
            attempt = Attempt(
                sink="crm",
                number=1,
                started_at=datetime.now(UTC),
                duration=0.12,
                outcome=AttemptOutcome.DEAD,
                trigger=Trigger.FIRST,
                status=400,
                error="HTTP 400: invalid",
                response_excerpt='{"message": "invalid"}',
            )
            await store.dead_letter(delivery, error="HTTP 400: invalid", attempt=attempt)
            last = delivery.event.id
        count -= len(claimed)
    return last


async def timed(repeat: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """The median of ``repeat`` runs in ms, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def measure_queries(path: Path, repeat: int) -> list[tuple[str, float, int]]:
    store = SQLiteStore(path)
    await store.open()
    try:
        dead_id = await dead_letter_some(store, 2_000)
        sample = await store.get_event(dead_id)
        assert sample is not None
        assert sample.event.data.contact is not None
        assert sample.event.data.campaign is not None
        phone = sample.event.data.contact.phone
        assert phone is not None
        local = f"+52 {phone[3:5]} {phone[5:9]} {phone[9:]}"  # as an operator types it
        campaign = sample.event.data.campaign.id
        first = await query.find_events(store, EventFilter(), PageRequest(limit=50))
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("first page", lambda: query.find_events(store, EventFilter(), PageRequest(limit=50))),
            (
                "second page",
                lambda: query.find_events(
                    store, EventFilter(), PageRequest(limit=50, cursor=first.next_cursor)
                ),
            ),
            (
                f"contact {local}",
                lambda: query.find_events(store, EventFilter.build(contact=local)),
            ),
            (
                f"campaign {campaign}",
                lambda: query.find_events(store, EventFilter.build(campaign_id=campaign)),
            ),
            (
                "state=dead",
                lambda: query.find_events(store, EventFilter(state=DeliveryState.DEAD)),
            ),
            ("event + attempts", lambda: query.event_with_attempts(store, dead_id)),
        ]
        figures = []
        for name, run in cases:
            ms, result = await timed(repeat, run)
            found = len(result.events) if isinstance(result, query.EventPage) else len(result[1])
            figures.append((name, ms, found))
        return figures
    finally:
        await store.close()


def old_ingest(conn: sqlite3.Connection, event: Event, sinks: list[str], window: float) -> None:
    """The ingest statements of 874c93e (schema version 0), for the baseline."""
    now = time.time()
    key = f"{event.source}\x1f{event.idempotency_key}"
    claimed = conn.execute(
        "INSERT INTO dedupe (key, event_id, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
        " SET event_id = excluded.event_id, expires_at = excluded.expires_at WHERE dedupe.expires_at <= ?",
        (key, event.id, now + window, now),
    ).rowcount
    if not claimed:
        return
    conn.execute(
        "INSERT INTO events (id, source, type, received_at, body) VALUES (?, ?, ?, ?, ?)",
        (event.id, event.source, event.type, event.received_at.timestamp(), event.to_json()),
    )
    conn.executemany(
        "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at, updated_at)"
        " VALUES (?, ?, 'pending', 0, ?, ?)",
        [(event.id, sink, now, now) for sink in sinks],
    )


@frozen
class Ingested:
    """One ingest run: events per second (wall clock), CPU microseconds and KiB written (to the
    log and, at checkpoints, the database: /proc/self/io) per event. The last two hardly move
    with the machine's load; the first does."""

    rate: float
    cpu_us: float
    written_kib: float


def _written() -> int:
    """Bytes this process has written so far (0 where /proc/self/io is missing)."""
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return 0
    return next(int(line.split()[1]) for line in lines if line.startswith("wchar:"))


def ingest_rate(path: Path, count: int, *, indexed: bool, filled: Path | None = None) -> Ingested:
    """Store ``count`` events in transactions of 512 with fsync, as the group commit does, into
    a new store or a copy of ``filled`` (a store already holding events)."""
    if filled is not None:
        shutil.copyfile(filled, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    if indexed:
        migrate(conn)
    else:
        conn.executescript(BASE_SCHEMA)
    # the newest events (received now), with the ids each version makes
    make_id = new_event_id if indexed else random_event_id
    batch = list(events(count, seed=7, make_id=make_id, days_ago=0, tag="new-"))
    written, cpu, started = _written(), time.process_time(), time.perf_counter()
    for first in range(0, count, 512):
        conn.execute("BEGIN IMMEDIATE")
        for event in batch[first : first + 512]:
            if indexed:
                ingest_write(event, ["crm", "slack"], window=3 * 86400)(conn)
            else:
                old_ingest(conn, event, ["crm", "slack"], 3 * 86400)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    written = _written() - written
    conn.close()
    return Ingested(count / elapsed, cpu / count * 1e6, written / count / 1024)


def compare_ingest(args: argparse.Namespace, tmp: Path, filled: dict[bool, Path | None]) -> None:
    """Ingest with and without the query indexes, alternating ``--rounds`` times so a busy
    machine weighs on both alike; the best round of each."""
    runs: dict[bool, list[Ingested]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for indexed in (False, True):
            path = tmp / f"ingest-{indexed}-{round_}.db"
            runs[indexed].append(
                ingest_rate(path, args.ingest, indexed=indexed, filled=filled[indexed])
            )
            path.unlink()
    best = {
        indexed: Ingested(
            max(r.rate for r in found),
            min(r.cpu_us for r in found),
            min(r.written_kib for r in found),
        )
        for indexed, found in runs.items()
    }
    before, after = best[False], best[True]
    print(f"  {'':<30}{'events/s':>10}{'CPU µs/event':>14}{'KiB written/event':>19}")
    for name, run in (("schema before the indexes", before), ("with the query indexes", after)):
        print(f"  {name:<30}{run.rate:>10,.0f}{run.cpu_us:>14.1f}{run.written_kib:>19.1f}")
    print(
        f"  {'ratio (indexed / before)':<30}{after.rate / before.rate:>10.3f}"
        f"{after.cpu_us / before.cpu_us:>14.3f}{after.written_kib / before.written_kib:>19.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="ingest runs of each schema")
    parser.add_argument(
        "--filled",
        type=int,
        default=200_000,
        help="also ingest into stores already holding this many events (0: only new stores)",
    )
    parser.add_argument(
        "--keep", type=Path, help="build (or reuse) the big store in this directory"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="eventrouter-bench-query-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        big = folder / f"query-{args.events}.db"
        if not big.exists():
            seconds = build(big, args.events)
            print(f"built a store of {args.events:,} events in {seconds:.0f} s")
        for name, ms, found in asyncio.run(measure_queries(big, args.repeat)):
            verdict = "ok" if ms < 50 else "OVER 50 ms"
            print(f"{name:<32} {ms:8.2f} ms  ({found} rows)  {verdict}")
        filled: dict[bool, Path | None] = {True: None, False: None}
        if args.filled:
            for indexed in (False, True):
                path = filled[indexed] = Path(tmp) / f"filled-{indexed}.db"
                build(path, args.filled, indexed=indexed, days_ago=31)
        print(f"ingest of {args.ingest:,} events into a new store:")
        compare_ingest(args, Path(tmp), {True: None, False: None})
        if args.filled:
            print(f"ingest of {args.ingest:,} events into a store of {args.filled:,} events:")
            compare_ingest(args, Path(tmp), filled)


if __name__ == "__main__":
    main()
