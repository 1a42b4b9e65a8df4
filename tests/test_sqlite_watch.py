"""Workers on the SQLite store are woken by commits of other connections (another process's
ingest, the command line's ``dlq retry``, ``replay``, ``sinks resume``) instead of polling.

``SQLiteStore.watch`` reads ``PRAGMA data_version`` on a connection of its own every
WATCH_INTERVAL (eventrouter.store.sqlite_watch). A second SQLiteStore on the same file stands
for the other process; tests/test_topology.py runs a real ``eventrouter worker``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from eventrouter import circuit, dispatch
from eventrouter.circuit import update_control
from eventrouter.store import sqlite_watch
from eventrouter.store.sqlite import SQLiteStore
from eventrouter.store.sqlite_watch import WATCH_INTERVAL
from tests.processes import WHSEC, wait_until
from tests.stores import make_event
from tests.wakeups import queued_elsewhere_is_delivered, retries_and_revivals_are_delivered

#: how long a woken worker may take to deliver on a busy shared machine: well under the 30 s
#: polls these tests set (and the 30 s leases), so only a wake-up delivers in time
WOKEN_WITHIN = 10


def config() -> dict[str, Any]:
    return {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {"recorder": {"plugin": "recording"}},
        "routes": [{"sinks": ["recorder"]}],
    }


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls so rare that only a wake-up can explain a prompt delivery."""
    monkeypatch.setattr(dispatch, "POLL_INTERVAL", 30.0)
    monkeypatch.setattr(dispatch, "WATCHED_POLL_INTERVAL", 30.0)
    monkeypatch.setattr(circuit, "CONTROL_POLL", 30.0)


@pytest.fixture
async def other_process(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """Another eventrouter process's store on the router's file (an ingest node, the CLI)."""
    store = SQLiteStore(tmp_path / "eventrouter.db")
    await store.open()
    yield store
    await store.close()


async def started(make_router: Any) -> Any:
    """A router whose workers are asleep, listening for commits."""
    router = await make_router(config())
    await wait_until(lambda: router.store.watching, timeout=10, what="the store's watch")
    await asyncio.sleep(0.2)  # the first claims: the worker has gone to sleep
    return router


async def test_work_queued_by_another_connection_is_delivered_at_once(
    slow_polls, make_router, other_process
):
    router = await started(make_router)
    took = await queued_elsewhere_is_delivered(router, other_process, within=WOKEN_WITHIN)
    print(f"\nwoken by another connection's ingest: delivered {took * 1000:.0f} ms later")


async def test_retries_and_dead_letters_queued_by_another_connection_wake_the_worker(
    slow_polls, make_router, other_process
):
    await retries_and_revivals_are_delivered(
        other_process, lambda: started(make_router), within=WOKEN_WITHIN
    )


async def test_a_sink_resumed_by_another_connection_delivers_at_once(
    slow_polls, make_router, other_process
):
    def paused(control: circuit.SinkControl) -> circuit.SinkControl:
        return attrs.evolve(control, paused=True, paused_at=time.time())

    await update_control(other_process, "recorder", paused)  # `eventrouter sinks pause`
    router = await started(make_router)
    event = make_event(source="demo")
    await other_process.ingest(event, ["recorder"])
    await asyncio.sleep(0.3)
    assert router.recorder.events == {}

    # `eventrouter sinks resume`
    await update_control(
        other_process, "recorder", lambda c: attrs.evolve(c, paused=False, paused_at=None)
    )
    [got] = await router.recorder.wait_for("recorder", 1, timeout=WOKEN_WITHIN)
    assert got.id == event.id


async def until(woken: list[str], expected: list[str]) -> None:
    await wait_until(lambda: sorted(woken) == expected, timeout=10, what=f"{expected} woken")


async def test_only_commits_that_give_a_watched_sink_work_wake_it(tmp_path, other_process):
    store = SQLiteStore(tmp_path / "eventrouter.db")
    await store.open()
    woken: list[str] = []
    task = asyncio.create_task(store.watch(["alpha", "beta"], woken.append))
    try:
        await until(woken, ["alpha", "beta"])  # every sink once, at the start
        woken.clear()

        # commits that change nothing a watched sink's worker must know: no wake-up
        await store.heartbeat("me", ttl=30)
        await other_process.ingest(make_event(), ["gamma"])
        await other_process.ingest(make_event(), [])
        await asyncio.sleep(WATCH_INTERVAL * 20)
        assert woken == []

        # this process's own ingest too, like another's: the same file, a connection apart
        await store.ingest(make_event(), ["beta"])
        await until(woken, ["beta"])
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


async def test_cancelling_the_watch_closes_its_connection(tmp_path, monkeypatch):
    opened: list[sqlite3.Connection] = []

    def open_connection(path: Path) -> sqlite3.Connection:
        opened.append(
            conn := sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        )
        return conn

    monkeypatch.setattr(sqlite_watch, "open_connection", open_connection)
    store = SQLiteStore(tmp_path / "eventrouter.db")
    await store.open()
    try:
        task = asyncio.create_task(store.watch(["alpha"], lambda sink: None))
        await wait_until(lambda: store.watching, timeout=10, what="the store's watch")
        [conn] = opened

        await dispatch.cancel_and_wait(task)

        assert task.cancelled()
        assert not store.watching
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
        # the thread tells the loop it has ended as its last act: it may take a moment to exit
        await wait_until(
            lambda: not [t for t in threading.enumerate() if t.name == "eventrouter-sqlite-watch"],
            timeout=5,
            what="the watch's thread to exit",
        )
    finally:
        await store.close()


async def test_closing_the_store_ends_its_watch(tmp_path):
    store = SQLiteStore(tmp_path / "eventrouter.db")
    await store.open()
    task = asyncio.create_task(store.watch(["alpha"], lambda sink: None))
    await wait_until(lambda: store.watching, timeout=10, what="the store's watch")

    await store.close()

    async with asyncio.timeout(10):
        assert await task is None
    assert not store.watching


async def test_a_watch_that_cannot_read_says_so_once_and_recovers(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sqlite_watch, "RECONNECT_DELAY", 0.05)
    real = sqlite_watch.open_connection
    broken = tmp_path / "not-a-store.db"  # no tables: every read of the marks fails
    attempts: list[Path] = []

    def open_connection(path: Path) -> sqlite3.Connection:
        attempts.append(path)
        return real(broken if len(attempts) <= 3 else path)

    monkeypatch.setattr(sqlite_watch, "open_connection", open_connection)
    store = SQLiteStore(tmp_path / "eventrouter.db")
    await store.open()
    woken: list[str] = []
    task = asyncio.create_task(store.watch(["alpha"], woken.append))
    try:
        await wait_until(lambda: len(attempts) >= 2, timeout=10, what="a second try")
        assert not store.watching  # workers poll every POLL_INTERVAL meanwhile
        assert woken == []

        await wait_until(lambda: store.watching, timeout=10, what="the watch, reconnected")
        await until(woken, ["alpha"])
        warned = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warned) == 1, warned
        assert "no such table" in warned[0].getMessage()
    finally:
        await dispatch.cancel_and_wait(task)
        await store.close()
