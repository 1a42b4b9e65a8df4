"""SQLite specifics beyond the shared store contract (tests/test_store_redis.py runs that)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from eventrouter.errors import StoreUnavailable
from eventrouter.events import Event, utcnow
from eventrouter.store.sqlite import SQLiteStore


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
