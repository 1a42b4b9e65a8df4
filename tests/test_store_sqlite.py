"""SQLite specifics beyond the shared store contract (tests/test_store_contract.py runs that)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from eventrouter.errors import StoreUnavailable
from eventrouter.events import Event, utcnow
from eventrouter.store.sqlite import SQLiteStore
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
