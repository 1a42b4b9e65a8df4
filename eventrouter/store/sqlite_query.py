"""The SQLite store's side of the query layer: one SQL builder for every filter, keyset pages.

A page filtered by delivery state or sink walks ``deliveries`` (indexed by state / sink and the
event's received time, copied there at ingest); any other page walks ``events`` through the
index of its most selective filter (SQLite's planner picks it). Either way the page is read in
index order, newest first, and stops after ``limit`` rows: its cost does not grow with the store.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from eventrouter.query import Cursor
from eventrouter.store.base import Attempt, AttemptOutcome, DeliveryState, Trigger

if TYPE_CHECKING:
    from eventrouter.query import EventFilter

__all__ = [
    "attempt_row",
    "count_deliveries",
    "find_deliveries",
    "find_events",
    "list_attempts",
]


def attempt_row(event_id: str, attempt: Attempt) -> tuple[Any, ...]:
    """An attempt as a row of the ``attempts`` table."""
    return (
        event_id,
        attempt.sink,
        attempt.number,
        attempt.started_at.timestamp(),
        attempt.duration,
        attempt.outcome.value,
        attempt.trigger.value,
        attempt.status,
        attempt.error,
        attempt.response_excerpt,
    )


def _by_delivery(where: EventFilter) -> bool:
    """Whether the page walks the dead letters' index rather than the events."""
    return where.state is DeliveryState.DEAD


def _clauses(where: EventFilter, after: Cursor | None) -> tuple[str, str, list[Any]]:
    """(FROM ..., WHERE ..., parameters) for the events matching ``where``; the key columns are
    those :func:`_keys` names (``d`` is deliveries, ``e`` events)."""
    clauses: list[str] = []
    params: list[Any] = []
    if _by_delivery(where):
        # the literal 'dead' lets SQLite use the partial index deliveries_dead_page
        source = "FROM deliveries d JOIN events e ON e.id = d.event_id"
        received, key = "d.received_at", "d.event_id"
        clauses.append("d.state = 'dead'")
        if where.sink is not None:
            clauses.append("d.sink = ?")
            params.append(where.sink)
    else:
        source, received, key = "FROM events e", "e.received_at", "e.id"
        if where.state is not None or where.sink is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
                " AND (? IS NULL OR d.state = ?) AND (? IS NULL OR d.sink = ?))"
            )
            state = None if where.state is None else where.state.value
            params += [state, state, where.sink, where.sink]
    equal = (
        ("e.source", where.source),
        ("e.idempotency_key", where.idempotency_key),
        ("e.call_id", where.call_id),
        ("e.campaign_id", where.campaign_id),
    )
    for column, value in equal:
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.type is not None:
        clauses.append("e.type GLOB ?")
        params.append(where.type)
    if where.contact is not None:
        clauses.append("e.contact_email = ?" if "@" in where.contact else "e.contact_phone = ?")
        params.append(where.contact)
    if where.text is not None:
        # a substring of the raw payload, any case (a scan of the matching rows: see the README)
        clauses.append("instr(lower(json_extract(e.body, '$.raw')), ?) > 0")
        params.append(where.text.lower())
    if where.since is not None:
        clauses.append(f"{received} >= ?")
        params.append(where.since.timestamp())
    if where.until is not None:
        clauses.append(f"{received} < ?")
        params.append(where.until.timestamp())
    if after is not None:
        clauses.append(f"({received}, {key}) < (?, ?)")
        params += [after.received_at, after.event_id]
    condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return source, condition, params


def _keys(where: EventFilter) -> tuple[str, str]:
    return ("d.received_at", "d.event_id") if _by_delivery(where) else ("e.received_at", "e.id")


def _page(
    conn: sqlite3.Connection, where: EventFilter, *, limit: int, after: Cursor | None
) -> list[tuple[float, str, str]]:
    """(received time, event id, body) of up to ``limit`` matching events, newest first."""
    source, condition, params = _clauses(where, after)
    received, key = _keys(where)
    rows: list[tuple[float, str, str]] = conn.execute(
        f"SELECT DISTINCT {received}, {key}, e.body {source} {condition}"
        f" ORDER BY {received} DESC, {key} DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return rows


def find_events(
    conn: sqlite3.Connection, where: EventFilter, *, limit: int, after: Cursor | None
) -> list[tuple[str, str]]:
    """(event id, body) of up to ``limit`` matching events, newest first."""
    return [(eid, body) for _, eid, body in _page(conn, where, limit=limit, after=after)]


def find_deliveries(
    conn: sqlite3.Connection, where: EventFilter, *, limit: int, after: Cursor | None
) -> list[tuple[Cursor, str]]:
    """The matching deliveries of up to ``limit`` matching events, newest event first."""
    found: list[tuple[Cursor, str]] = []
    for at, event_id, _ in _page(conn, where, limit=limit, after=after):
        rows = conn.execute(
            "SELECT sink FROM deliveries WHERE event_id = ? AND (? IS NULL OR state = ?)"
            " AND (? IS NULL OR sink = ?) ORDER BY sink",
            (event_id, _state(where), _state(where), where.sink, where.sink),
        ).fetchall()
        found += [(Cursor(at, event_id), sink) for (sink,) in rows]
    return found


def _state(where: EventFilter) -> str | None:
    return None if where.state is None else where.state.value


def count_deliveries(conn: sqlite3.Connection, where: EventFilter) -> dict[str, int]:
    """How many deliveries :func:`find_deliveries` would walk, by sink."""
    source, condition, params = _clauses(where, None)
    if not _by_delivery(where):
        # every matching delivery of the matching events (one join, not the EXISTS above)
        plain = attrs.evolve(where, state=None, sink=None)
        source, condition, params = _clauses(plain, None)
        source = f"{source} JOIN deliveries d ON d.event_id = e.id"
        for column, value in (("d.state", _state(where)), ("d.sink", where.sink)):
            if value is not None:
                condition = f"{condition} AND {column} = ?" if condition else f"WHERE {column} = ?"
                params.append(value)
    rows = conn.execute(
        f"SELECT d.sink, COUNT(*) {source} {condition} GROUP BY d.sink",
        params,
    ).fetchall()
    return {sink: count for sink, count in rows}


def list_attempts(conn: sqlite3.Connection, event_id: str) -> list[Attempt]:
    """Every attempt of the event's deliveries, oldest first."""
    rows = conn.execute(
        "SELECT sink, number, started_at, duration, outcome, trigger, status, error,"
        " response_excerpt FROM attempts WHERE event_id = ? ORDER BY rowid",
        (event_id,),
    ).fetchall()
    return [
        Attempt(
            sink=sink,
            number=number,
            started_at=datetime.fromtimestamp(started, UTC),
            duration=duration,
            outcome=AttemptOutcome(outcome),
            trigger=Trigger(trigger),
            status=status,
            error=error,
            response_excerpt=excerpt,
        )
        for sink, number, started, duration, outcome, trigger, status, error, excerpt in rows
    ]
