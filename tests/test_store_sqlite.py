"""SQLite specifics beyond the shared store contract (tests/test_store_contract.py runs that)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from eventrouter.errors import StoreUnavailable
from eventrouter.events import Event, utcnow
from eventrouter.store.sqlite import SQLiteStore, _Checkpointer, _connect
from eventrouter.store.sqlite_schema import BASE_SCHEMA


def event(n: int) -> Event:
    now = utcnow()
    return Event(
        id=f"evt_{n}",
        source="demo",
        type="t",
        time=now,
        provider="p",
        provider_type="t",
        idempotency_key=f"k{n}",
        received_at=now,
    )


@pytest.fixture
async def store(tmp_path):
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    yield store
    await store.close()


async def test_concurrent_writes_share_commits(store):
    results = await asyncio.gather(*(store.ingest(event(n), ["a"]) for n in range(200)))
    assert all(result.accepted for result in results)
    assert store._writer.batches < 20  # group commit: far fewer commits than writes


async def test_an_unexpected_failure_answers_every_waiting_write_and_the_store_recovers(
    store, monkeypatch
):
    async def broken(loop):
        raise RuntimeError("bug")

    monkeypatch.setattr(store._writer, "_begin", broken)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(store.ingest(event(n), ["a"]) for n in range(5)), return_exceptions=True),
        timeout=5,
    )
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    monkeypatch.undo()
    assert (await store.ingest(event(99), ["a"])).accepted
    assert [e.event.id for e in await store.list_events()] == ["evt_99"]


async def test_a_job_error_undoes_only_that_job(store):
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO dedupe (key, event_id, expires_at) VALUES ('x', 'y', 0)")
        raise ValueError("job bug")

    ok, bad = await asyncio.gather(
        store.ingest(event(1), ["a"]), store._write(failing), return_exceptions=True
    )
    assert ok.accepted
    assert isinstance(bad, ValueError)
    rows = await store._read(
        lambda conn: conn.execute("SELECT key FROM dedupe ORDER BY key").fetchall()
    )
    assert rows == [("demo\x1fk1",)]


async def test_two_stores_on_one_file_wait_for_each_others_lock(tmp_path):
    first, second = SQLiteStore(tmp_path / "events.db"), SQLiteStore(tmp_path / "events.db")
    await first.open()
    await second.open()
    try:
        results = await asyncio.gather(
            *(
                store.ingest(event(n), ["a"])
                for n in range(100)
                for store in (first, second)
                if n % 2 == (store is second)
            )
        )
        assert sum(result.accepted for result in results) == 100
        assert len(await first.list_events(limit=1000)) == 100
    finally:
        await first.close()
        await second.close()


async def test_disk_full_is_store_unavailable_and_nothing_half_written(tmp_path):
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    try:
        pages = await store._read(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        store._writer.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # a full disk, for real
        big = [event(n).evolve(raw={"pad": "x" * 4000}) for n in range(50)]
        outcomes = await asyncio.gather(
            *(store.ingest(e, ["a"]) for e in big), return_exceptions=True
        )
        assert any(isinstance(o, StoreUnavailable) for o in outcomes)
        stored = {e.event.id for e in await store.list_events(limit=100)}
        accepted = {
            e.id for e, o in zip(big, outcomes, strict=True) if not isinstance(o, Exception)
        }
        assert stored == accepted  # every acknowledged write is there, no refused one is
        store._writer.conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
        assert (await store.ingest(event(500), ["a"])).accepted
    finally:
        await store.close()


async def test_a_store_written_before_lost_attempts_were_counted_opens_and_counts_them(tmp_path):
    path = tmp_path / "events.db"
    old_schema = BASE_SCHEMA.replace(
        "    -- how many of the attempts ended with their worker lost (taken over after the lease)\n"
        "    lost INTEGER NOT NULL DEFAULT 0,\n",
        "",
    )
    assert "lost" not in old_schema.split("CREATE TABLE IF NOT EXISTS deliveries")[1].split(")")[0]
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.execute(
        "INSERT INTO events (id, source, type, received_at, body) VALUES (?, 'demo', 't', 0, ?)",
        ("evt_1", event(1).to_json()),
    )
    conn.execute(
        "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at, updated_at)"
        " VALUES ('evt_1', 'a', 'inflight', 2, 0, 0)"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        [taken] = await store.claim("a", limit=5, lease=30)
        assert (taken.attempts, taken.lost) == (3, 1)
        await store.ack(taken)
        [stored] = await store.list_events()
        assert (stored.deliveries[0].state, stored.deliveries[0].attempts) == ("done", 4)
    finally:
        await store.close()


async def test_a_write_given_up_before_its_commit_began_is_not_made(store):
    """ingest cancelled (its deadline passed) while waiting for the commit: nothing is kept."""
    abandoned = asyncio.create_task(store.ingest(event(1), ["a"]))
    await asyncio.sleep(0)  # it has queued its write; the commit has not started
    abandoned.cancel()
    kept = await store.ingest(event(2), ["a"])

    assert kept.accepted
    assert abandoned.cancelled()
    assert [e.event.id for e in await store.list_events()] == ["evt_2"]
    assert store.pending_writes == 0


async def test_only_bookkeeping_commits_without_its_own_fsync(store, monkeypatch):
    """Ingest (and anything an operator does) is fsynced before the caller hears back; a batch
    of claims and delivery outcomes alone is not (a power cut makes them claimable again)."""
    seen: list[int] = []
    execute = store._writer._execute

    def spy(batch):
        seen.append(store._writer.conn.execute("PRAGMA synchronous").fetchone()[0])
        return execute(batch)

    monkeypatch.setattr(store._writer, "_execute", spy)
    full, normal = 2, 1

    await store.ingest(event(1), ["a"])
    [delivery] = await store.claim("a", limit=5, lease=30)
    await store.ack(delivery)
    await store.heartbeat("worker", ttl=30)
    await store.replay(delivery.event.id, ["a"])
    # both kinds in one commit: fsynced, for the ingest's sake
    [again] = await store.claim("a", limit=5, lease=30)
    await asyncio.gather(store.ingest(event(2), ["a"]), store.ack(again))

    assert seen == [full, normal, normal, normal, full, normal, full]


def test_a_log_that_checkpoints_never_catch_up_on_starts_over_past_its_limit(tmp_path):
    """A passive checkpoint that ends behind the latest commit (here: a reader still on an older
    snapshot) leaves the log to grow; past its limit the checkpointer waits for the reader,
    catches up, and the next commit starts the log over, cut back to the limit."""
    path = tmp_path / "store.db"
    limit = 64 * 1024
    checkpointer = _Checkpointer(path, restart_after=limit)
    writer, reader, own = _connect(path), _connect(path), None
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute(f"PRAGMA journal_size_limit = {limit}")
        writer.execute("CREATE TABLE blobs (data TEXT)")
        log = Path(f"{path}-wal")

        def commit(size: int) -> None:
            writer.execute("INSERT INTO blobs VALUES (?)", ("x" * size,))

        commit(4 * limit)  # the log now holds more than the limit
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM blobs").fetchone()  # a snapshot, held
        commit(1000)
        released = threading.Event()

        def finish_reading() -> None:
            released.wait(10)
            reader.execute("COMMIT")

        finishing = threading.Thread(target=finish_reading)
        finishing.start()
        threading.Timer(0.2, released.set).start()  # the reader ends while the round waits
        own = checkpointer.connect()
        own.execute("PRAGMA busy_timeout = 10000")  # a slow machine's timer: wait for the reader
        checkpointer.checkpoint(own)
        finishing.join(10)
        commit(1000)
        assert log.stat().st_size <= limit
    finally:
        for conn in (writer, reader, own):
            if conn is not None:
                conn.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_and_the_store_goes_on(
    tmp_path, monkeypatch
):
    # the writer tries again every BUSY_RETRY, not forever: another process that holds the
    # write lock longer than BUSY_TIMEOUT_MS makes that write fail, not hang
    monkeypatch.setattr("eventrouter.store.sqlite.BUSY_TIMEOUT_MS", 300)
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await asyncio.wait_for(store.ingest(event(1), ["a"]), timeout=10)
        other.execute("COMMIT")
        assert (await store.ingest(event(2), ["a"])).accepted
    finally:
        other.close()
        await store.close()
