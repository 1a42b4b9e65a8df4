"""The SQLite store's schema, versioned with ``PRAGMA user_version`` and numbered migrations.

Version 0 is the schema of the releases before versions (created with ``IF NOT EXISTS``, so a
new file and an old one meet there); each entry of :data:`MIGRATIONS` takes the schema one
version up, inside one transaction. A file written by a newer release is refused, not guessed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "NewerSchema", "migrate"]

#: the schema of the releases before versions (user_version 0)
BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dedupe_expires ON dedupe (expires_at);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    sink TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- how many of the attempts ended with their worker lost (taken over after the lease)
    lost INTEGER NOT NULL DEFAULT 0,
    -- pending: when it is due; inflight: when its lease ends (the claim's token)
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, next_attempt_at)
    WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (updated_at) WHERE state = 'dead';
"""


def _lost_column(conn: sqlite3.Connection) -> None:
    """Stores written before ``lost`` was counted lack the column (still version 0)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
    if "lost" not in columns:
        conn.execute("ALTER TABLE deliveries ADD COLUMN lost INTEGER NOT NULL DEFAULT 0")


#: 0 -> 1 (issue 13): attempt history, the query layer's indexed columns, bulk-action marks,
#: worker heartbeats
_V1 = """
ALTER TABLE events ADD COLUMN idempotency_key TEXT;
ALTER TABLE events ADD COLUMN contact_phone TEXT;
ALTER TABLE events ADD COLUMN contact_email TEXT;
ALTER TABLE events ADD COLUMN call_id TEXT;
ALTER TABLE events ADD COLUMN campaign_id TEXT;
UPDATE events SET
    idempotency_key = json_extract(body, '$.idempotency_key'),
    contact_phone = json_extract(body, '$.data.contact.phone'),
    contact_email = lower(json_extract(body, '$.data.contact.email')),
    call_id = json_extract(body, '$.data.call.id'),
    campaign_id = json_extract(body, '$.data.campaign.id');
DROP INDEX IF EXISTS events_received;
CREATE INDEX events_page ON events (received_at, id);
CREATE INDEX events_key ON events (idempotency_key);
CREATE INDEX events_phone ON events (contact_phone, received_at, id)
    WHERE contact_phone IS NOT NULL;
CREATE INDEX events_email ON events (contact_email, received_at, id)
    WHERE contact_email IS NOT NULL;
CREATE INDEX events_call ON events (call_id, received_at, id) WHERE call_id IS NOT NULL;
CREATE INDEX events_campaign ON events (campaign_id, received_at, id)
    WHERE campaign_id IS NOT NULL;

-- what made the delivery due (its next attempt's trigger), the bulk action that last queued
-- it, and its event's received time: pages of dead letters walk this partial index (dead
-- letters are rare, so walking the events for them would not stop early; the other states and
-- sinks are common, and their pages walk the events). Nothing is indexed at ingest (pending).
ALTER TABLE deliveries ADD COLUMN trigger TEXT NOT NULL DEFAULT 'first';
ALTER TABLE deliveries ADD COLUMN action TEXT;
ALTER TABLE deliveries ADD COLUMN received_at REAL NOT NULL DEFAULT 0;
UPDATE deliveries SET received_at = (SELECT received_at FROM events WHERE id = event_id);
CREATE INDEX deliveries_dead_page ON deliveries (received_at, event_id) WHERE state = 'dead';

CREATE TABLE attempts (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    sink TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration REAL NOT NULL,
    outcome TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    response_excerpt TEXT
);
CREATE INDEX attempts_event ON attempts (event_id);

CREATE TABLE heartbeats (
    worker TEXT PRIMARY KEY,
    seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""

#: version 1 -> 2: each sink's circuit breaker, pause and hold (eventrouter.circuit.SinkControl
#: as JSON, written by compare-and-set on ``version``)
_V2 = """
CREATE TABLE sink_control (
    sink TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""

#: version 2 -> 3: the contact, call and campaign indexes keyed on (value, received time) only.
#: The event id made each entry twice as long; the rowid every index entry carries already
#: identifies the row, and a page orders the few events of one received time by id itself.
#: Shorter entries fill fewer pages, so each ingest commit writes fewer (bench/query.py).
_V3 = """
DROP INDEX events_phone;
DROP INDEX events_email;
DROP INDEX events_call;
DROP INDEX events_campaign;
CREATE INDEX events_phone ON events (contact_phone, received_at) WHERE contact_phone IS NOT NULL;
CREATE INDEX events_email ON events (contact_email, received_at) WHERE contact_email IS NOT NULL;
CREATE INDEX events_call ON events (call_id, received_at) WHERE call_id IS NOT NULL;
CREATE INDEX events_campaign ON events (campaign_id, received_at) WHERE campaign_id IS NOT NULL;
"""


#: version 3 -> 4: each sink's rate limiter (eventrouter.ratelimit: the GCRA's theoretical
#: arrival time of the next permit, wall-clock seconds), shared by every process on the file
_V4 = """
CREATE TABLE sink_rates (
    sink TEXT PRIMARY KEY,
    tat REAL NOT NULL
);
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    """The statements of ``sql`` run one by one (``executescript`` would commit the
    migration's transaction)."""

    def run(conn: sqlite3.Connection) -> None:
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                conn.execute(statement)
                statement = ""

    return run


#: MIGRATIONS[n] takes a store from version n to n + 1
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _script(_V1),
    _script(_V2),
    _script(_V3),
    _script(_V4),
)
SCHEMA_VERSION = len(MIGRATIONS)


class NewerSchema(ValueError):
    """The file was written by a newer release than this one."""


def migrate(conn: sqlite3.Connection) -> None:
    """Create a new store, or bring an older one up to :data:`SCHEMA_VERSION`.

    Runs in one immediate transaction: two processes opening the same old file migrate it once.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise NewerSchema(
                f"its schema is version {version}, newer than this release knows "
                f"({SCHEMA_VERSION}): upgrade eventrouter"
            )
        if version == 0:
            _script(BASE_SCHEMA)(conn)
            _lost_column(conn)
        for number in range(version, SCHEMA_VERSION):
            MIGRATIONS[number](conn)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
