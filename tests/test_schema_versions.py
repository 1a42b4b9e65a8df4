"""Schema versions: a SQLite store written by the release before versions opens and migrates (a
file it wrote is kept as a fixture), a newer one is refused; Redis keys carry a layout version."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import redis.asyncio as redis_client

from eventrouter import query
from eventrouter.errors import StoreUnavailable
from eventrouter.query import EventFilter
from eventrouter.store import DeliveryState
from eventrouter.store.redis import LAYOUT_VERSION, RedisStore
from eventrouter.store.sqlite import SQLiteStore
from eventrouter.store.sqlite_schema import BASE_SCHEMA, MIGRATIONS, SCHEMA_VERSION
from tests.redis_server import RedisServer, redis_server_fixture  # noqa: F401 - the fixture
from tests.stores import make_event

#: written by eventrouter at 874c93e: three altur events for Ana@Example.com in
#: campaign camp-1, delivered to crm and slack; evt_fixture_0's crm delivery is dead, its slack
#: delivery done
FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.db"


async def test_a_store_written_before_versions_opens_migrated_and_answers_queries(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0

    store = SQLiteStore(path)
    await store.open()
    try:
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        page = await query.find_events(store, EventFilter.build(campaign_id="camp-1"))
        assert [s.event.id for s in page.events] == [f"evt_fixture_{i}" for i in (2, 1, 0)]
        # the email is matched in any case (the migration indexed it lowercased)
        by_email = await query.timeline(store, contact="ANA@example.com")
        assert len(by_email.events) == 3
        dead = await query.find_events(store, EventFilter(state=DeliveryState.DEAD))
        assert [s.event.id for s in dead.events] == ["evt_fixture_0"]
        assert await store.count_deliveries(EventFilter(sink="crm")) == {"crm": 3}
        # deliveries carry on: the pending ones are claimed, and their attempts recorded
        claimed = await store.claim("slack", limit=10, lease=30)
        assert [d.event.id for d in claimed] == ["evt_fixture_1", "evt_fixture_2"]
        await store.ack(claimed[0])
    finally:
        await store.close()
    # opening again changes nothing
    again = SQLiteStore(path)
    await again.open()
    await again.close()


async def test_a_version_2_store_gets_the_shorter_contact_and_campaign_indexes(tmp_path):
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(BASE_SCHEMA)
    for migration in MIGRATIONS[:2]:
        migration(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        event = make_event()
        await store.ingest(event, ["crm"])
        conn = sqlite3.connect(path)
        # (value, received time): the event id made each entry twice as long (see _V3)
        for index, column in (
            ("events_phone", "contact_phone"),
            ("events_email", "contact_email"),
            ("events_call", "call_id"),
            ("events_campaign", "campaign_id"),
        ):
            names = [row[2] for row in conn.execute(f"PRAGMA index_info({index})")]
            assert names == [column, "received_at"], index
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM events WHERE campaign_id = ?"
            " AND (received_at, id) < (?, ?) ORDER BY received_at DESC, id DESC LIMIT 51",
            ("camp-1", 1e10, "evt_"),
        ).fetchall()
        assert "USING INDEX events_campaign (campaign_id=? AND received_at<?)" in str(plan)
        conn.close()
        page = await query.find_events(store, EventFilter(source=event.source))
        assert [s.event.id for s in page.events] == [event.id]
    finally:
        await store.close()


async def test_a_store_written_by_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnavailable, match="newer than this release knows"):
        await SQLiteStore(path).open()


@pytest.mark.redis
async def test_redis_keys_of_a_newer_layout_are_refused(redis_server: RedisServer):
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1", decode_responses=True)
    try:
        await admin.set("er:layout", LAYOUT_VERSION + 1)
        store = RedisStore(redis_server.url, key_prefix="er")
        with pytest.raises(StoreUnavailable, match=r"layout version 2, newer.*key_prefix"):
            await store.open()
    finally:
        await admin.aclose()


@pytest.mark.redis
async def test_redis_events_stored_before_the_indexes_are_indexed_at_start(
    redis_server: RedisServer,
):
    admin = redis_client.Redis(port=redis_server.port, host="127.0.0.1", decode_responses=True)
    store = RedisStore(redis_server.url, key_prefix="er")
    await store.open()
    try:
        event = make_event(source="legacy")
        await store.ingest(event, ["alpha"])
        await store.close()
        # as the release before the indexes left it: no index sets, no layout version
        for key in [k async for k in admin.scan_iter("er:idx:*")]:
            await admin.delete(key)
        await admin.hdel(f"er:event:{event.id}", "idx")
        await admin.delete("er:layout")

        store = RedisStore(redis_server.url, key_prefix="er")
        await store.open()
        page = await query.find_events(store, EventFilter(source="legacy"))
        assert [s.event.id for s in page.events] == [event.id]
        assert await admin.get("er:layout") == str(LAYOUT_VERSION)
        assert await store.purge(retention=0) == 0  # still pending: kept
    finally:
        await store.close()
        await admin.aclose()
