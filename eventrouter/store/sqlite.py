"""The embedded default store: SQLite in WAL mode, with group commit.

Writes queue up while a commit is under way; each commit takes every queued write in one
transaction and one fsync (``synchronous = FULL``), so ingest does not serialise on the disk,
and a caller hears back only once its write is durable. A batch of bookkeeping only (claims,
delivery outcomes, heartbeats) commits without its own fsync (``synchronous = NORMAL``): a power
cut may undo it, which makes the deliveries claimable again (at-least-once allows a repeat), and
the next durable commit makes it durable too, since the write-ahead log is written in order.
Reads go through a second connection on their own thread; WAL lets them run beside the writer.
Checkpoints run on a third. Workers hear of commits made by any process through a fourth
(:meth:`SQLiteStore.watch`, eventrouter.store.sqlite_watch).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventrouter.circuit import SinkControl
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Event
from eventrouter.query import FILTER_NAMES, indexed_values
from eventrouter.ratelimit import shared_gcra
from eventrouter.store.base import (
    CONSOLE_ACTION,
    LOST_WORKER,
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Settlement,
    Store,
    StoredEvent,
    Trigger,
    claimed_deliveries,
)
from eventrouter.store.sqlite_query import (
    attempt_row,
    count_deliveries,
    find_deliveries,
    find_events,
    list_attempts,
)
from eventrouter.store.sqlite_schema import migrate
from eventrouter.store.sqlite_watch import CommitWatch, busy, watch_commits

if TYPE_CHECKING:
    from eventrouter.query import Cursor, EventFilter

__all__ = ["SQLiteStore"]

log = logging.getLogger("eventrouter.store")

T = TypeVar("T")

#: how long a connection waits for another process's lock (a CLI command, a second server)
BUSY_TIMEOUT_MS = 30000
#: while another process holds the write lock, the writer tries again this often. SQLite's own
#: busy handler sleeps 1, 2, 5, 10, 15 ms... between tries, so a commit waited several
#: milliseconds for a lock freed in a fraction of one: with delivery in a process of its own,
#: ingest's commits wait behind the delivery's claims and outcomes
BUSY_RETRY = 0.0002

#: the write-ahead log's size past which a checkpoint makes it start over (see _Checkpointer)
WAL_LIMIT = 64 * 2**20
#: how long that checkpoint waits for the commit under way and the readers (it holds up the
#: next commit meanwhile); past it, it gives up until the next round
RESTART_WAIT_MS = 100


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


#: a job of the group commit: the statements, whether its commit must be fsynced, its caller
_Job = tuple[Callable[[sqlite3.Connection], Any], bool, "asyncio.Future[Any]"]


class _GroupCommit:
    """Every write submitted while a commit is under way goes into the next one.

    The statements run on the event loop's thread (each takes microseconds, the write lock is
    already held); only ``BEGIN IMMEDIATE`` (which may wait for another process's lock) and
    ``COMMIT`` (the fsync) run on a helper thread. Two thread hand-offs per batch, instead of
    several per write, keep the GIL out of the way of the event loop.
    """

    def __init__(self, conn: sqlite3.Connection, *, max_batch: int = 512) -> None:
        self.conn = conn
        self.max_batch = max_batch
        self.pending: list[_Job] = []
        self.batches = 0
        #: the connection's ``synchronous`` setting now (FULL: _connect's)
        self.synchronous = "FULL"
        self._blocking = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="eventrouter-sqlite-commit"
        )
        self._drain: asyncio.Task[None] | None = None
        self.closed = False

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> asyncio.Future[T]:
        """Queue ``fn`` for the next commit. ``durable``: its commit is fsynced before the
        caller hears back; else it may be undone by a power cut (never by a crash)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending.append((fn, durable, future))
        if self._drain is None:
            self._drain = loop.create_task(self._run(), name="eventrouter-sqlite-group-commit")
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Job] = []
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
                try:
                    self._synchronous("FULL" if any(job[1] for job in batch) else "NORMAL")
                    await self._begin(loop)
                    results = self._execute(batch)
                    await loop.run_in_executor(self._blocking, self.conn.execute, "COMMIT")
                except sqlite3.Error as exc:
                    await loop.run_in_executor(self._blocking, self._rollback)
                    log.error("store write failed: %s", exc)
                    results = [(False, StoreUnavailable(f"store write failed: {exc}"))] * len(batch)
                self.batches += 1
                _answer(batch, results)
                batch = []
        except BaseException as exc:
            # never leave a caller waiting: whatever went wrong, every write not yet answered fails
            log.exception("the store's group commit failed")
            if isinstance(exc, Exception):
                self._rollback()
            failed = StoreUnavailable(f"store write failed: {type(exc).__name__}")
            unanswered, self.pending = [*batch, *self.pending], []
            _answer(unanswered, [(False, failed)] * len(unanswered))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._drain = None

    def _synchronous(self, level: str) -> None:
        """Set the fsync level of the next commit (outside a transaction, where it applies)."""
        if level != self.synchronous:
            self.conn.execute(f"PRAGMA synchronous = {level}")
            self.synchronous = level

    async def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the write lock: at once on the loop when it is free (a file lock, microseconds),
        else on the helper thread, waiting up to the busy timeout for another process."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not busy(exc):
                raise
            await loop.run_in_executor(self._blocking, self._begin_waiting)

    def _begin_waiting(self) -> None:
        """``BEGIN IMMEDIATE`` tried every BUSY_RETRY until BUSY_TIMEOUT_MS have passed."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            time.sleep(BUSY_RETRY)
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not busy(exc) or time.monotonic() >= deadline:
                    raise

    def _execute(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run the batch's jobs in the open transaction.

        A job's own error (a bug, a constraint) is handed back to its caller: the transaction is
        rolled back and the batch run again without that job (rare, so no savepoint per job on
        the common path). A database error (disk full, I/O) propagates and fails the batch.
        """
        conn = self.conn
        failed: dict[int, Exception] = {}
        while True:
            results: list[tuple[bool, Any]] = []
            for index, (fn, _, future) in enumerate(batch):
                if index in failed:
                    results.append((False, failed[index]))
                    continue
                if future.cancelled():
                    # its caller gave up (a deadline) before the write began: do not make it
                    results.append((False, None))
                    continue
                try:
                    results.append((True, fn(conn)))
                except sqlite3.IntegrityError as exc:
                    failed[index] = exc
                    break
                except sqlite3.Error:
                    raise
                except Exception as exc:  # noqa: BLE001 - handed back to the caller that asked
                    failed[index] = exc
                    break
            else:
                return results
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")

    async def close(self) -> None:
        self.closed = True
        while self._drain is not None:
            await asyncio.shield(self._drain)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._blocking, self.conn.close)
        self._blocking.shutdown(wait=True)


def _answer(batch: list[_Job], results: list[tuple[bool, Any]]) -> None:
    """Hand each waiting caller its write's result (ok, value) or error (not ok, exception)."""
    for (_, _, future), (ok, value) in zip(batch, results, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Checkpointer(threading.Thread):
    """Copies the write-ahead log into the database in the background (PASSIVE: never blocks
    the writer), so that a commit never pays for a checkpoint and the log stays small.

    Under steady writes a passive checkpoint always ends behind the latest commit, and SQLite
    starts the log again from its beginning only once a checkpoint has caught up: the log (and
    its index, mapped in memory) would grow for as long as the writes go on (1.2 GiB in 30 s of
    bench/backlog.py). So once it holds more than ``restart_after`` bytes, a RESTART checkpoint
    waits for the commit under way and the readers (up to RESTART_WAIT_MS, else it tries again
    next round), catches up, and the next commit starts the log over, cut back to
    ``restart_after`` (``journal_size_limit``).
    """

    def __init__(
        self, path: Path, *, interval: float = 0.5, restart_after: int = WAL_LIMIT
    ) -> None:
        super().__init__(name="eventrouter-sqlite-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.restart_after = restart_after
        #: restart_after in frames of the log (known once connected)
        self.restart_frames = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        conn = self.connect()
        try:
            while not self.stopped.wait(self.interval):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as exc:
                    log.warning("background checkpoint failed: %s", exc)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("final checkpoint failed: %s", exc)
        finally:
            conn.close()

    def connect(self) -> sqlite3.Connection:
        """The checkpointer's own connection (a passive checkpoint never waits; a restart waits
        RESTART_WAIT_MS at most, since commits wait for it)."""
        conn = _connect(self.path)
        conn.execute(f"PRAGMA journal_size_limit = {self.restart_after}")
        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        # a frame of the log holds one page; the page size is the database's, set once
        self.restart_frames = self.restart_after // conn.execute("PRAGMA page_size").fetchone()[0]
        return conn

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One round on a connection from :meth:`connect`: passive, then a restart when the log
        has grown past ``restart_after``."""
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > self.restart_frames:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()


def ingest_write(
    event: Event, sinks: Sequence[str], *, window: float
) -> Callable[[sqlite3.Connection], IngestResult]:
    """The statements that store ``event`` (de-duplicated within ``window`` seconds) and one
    pending delivery per sink, to run in a write transaction (the group commit's; bench/query.py
    runs them in its own big ones to build a large store through the same path)."""
    key = f"{event.source}\x1f{event.idempotency_key}"
    body = event.to_json()
    received = event.received_at.timestamp()
    indexed = indexed_values(event)

    def write(conn: sqlite3.Connection) -> IngestResult:
        now = time.time()
        # claim the key unless an unexpired claim exists: one statement on the common path
        claimed = conn.execute(
            "INSERT INTO dedupe (key, event_id, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
            " SET event_id = excluded.event_id, expires_at = excluded.expires_at WHERE dedupe.expires_at <= ?",
            (key, event.id, now + window, now),
        ).rowcount
        if not claimed:
            row = conn.execute("SELECT event_id FROM dedupe WHERE key = ?", (key,)).fetchone()
            return IngestResult(accepted=False, event_id=row[0])
        conn.execute(
            "INSERT INTO events (id, source, type, received_at, body, idempotency_key,"
            " contact_phone, contact_email, call_id, campaign_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.id, event.source, event.type, received, body, *indexed),
        )
        if sinks:
            conn.executemany(
                "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at,"
                " updated_at, received_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)",
                [(event.id, sink, now, now, received) for sink in sinks],
            )
        return IngestResult(accepted=True, event_id=event.id)

    return write


class SQLiteStore(Store):
    """Events, deliveries and dead letters in one SQLite file (``[store] path``)."""

    def __init__(
        self, path: str | Path, *, dedupe_window: float = 3 * 86400, max_pending_writes: int = 5000
    ) -> None:
        self.path = Path(path)
        self.dedupe_window = dedupe_window
        self.max_pending_writes = max_pending_writes
        self._writer: _GroupCommit | None = None
        self._checkpointer: _Checkpointer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._pending = 0  # writes submitted and not yet durable; only touched on the loop's thread
        self._watches: list[CommitWatch] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, *, lazy: bool = False) -> None:
        # ``lazy`` changes nothing: a local file that cannot be opened will not open by itself
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(self.path)
            try:
                migrate(conn)
            finally:
                conn.close()
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {self.path}: {exc}") from None
        writer = _connect(self.path)
        # checkpoints run on their own thread (_Checkpointer), not inside ingest's commits;
        # the commit that starts the log over cuts the file back to WAL_LIMIT
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        # the write lock is taken without waiting on the event loop (see _GroupCommit._begin)
        writer.execute("PRAGMA busy_timeout = 0")
        self._writer = _GroupCommit(writer)
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()
        self._reader = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="eventrouter-sqlite-reader"
        )
        self._read_conn = await self._in_reader(lambda: _connect(self.path))

    async def close(self) -> None:
        for watch in self._watches:
            watch.stopped.set()  # its own connection: it ends (and its watch() returns) by itself
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        if self._checkpointer is not None:
            self._checkpointer.stopped.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._reader is not None:
            if self._read_conn is not None:
                conn = self._read_conn
                await self._in_reader(conn.close)
                self._read_conn = None
            self._reader.shutdown(wait=True)
            self._reader = None

    @property
    def pending_writes(self) -> int:
        return self._pending

    async def watch(self, sinks: Sequence[str], wake: Callable[[str], None]) -> None:
        """Call ``wake(sink)`` within WATCH_INTERVAL of a commit, by any connection in any
        process, that gave ``sink`` work or changed its control record; every sink once when
        the watch starts. Until cancelled (see eventrouter.store.sqlite_watch)."""
        if not sinks:
            return
        mine: list[CommitWatch] = []

        def started(watch: CommitWatch) -> None:
            mine.append(watch)
            self._watches.append(watch)

        try:
            await watch_commits(self.path, sinks, wake, started=started)
        finally:
            for watch in mine:
                self._watches.remove(watch)

    @property
    def watching(self) -> bool:
        return any(watch.watching for watch in self._watches)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the group commit; ``durable=False`` for bookkeeping that a power cut
        may undo without losing an event (claims, outcomes: see the module's docstring)."""
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        self._pending += 1
        try:
            return await self._writer.submit(fn, durable=durable)
        finally:
            self._pending -= 1

    async def _in_reader(self, fn: Callable[[], T]) -> T:
        if self._reader is None:
            raise StoreUnavailable("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._read_conn is not None
            return fn(self._read_conn)

        try:
            return await self._in_reader(run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store read failed: {exc}") from None

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        if self._writer is None:
            raise StoreUnavailable("the store is closed")

    # -- ingest and delivery -------------------------------------------------------------

    async def ingest(self, event: Event, sinks: Sequence[str]) -> IngestResult:
        if self.pending_writes >= self.max_pending_writes:
            raise Overloaded(f"{self.pending_writes} writes are waiting for the disk")
        write = ingest_write(event, sinks, window=self.dedupe_window)
        return await self._write(write)

    async def claim(self, sink: str, *, limit: int, lease: float) -> list[Delivery]:
        def write(conn: sqlite3.Connection) -> tuple[float, list[tuple[str, int, int, bytes, str]]]:
            now = time.time()
            ends = now + lease
            # the body as the bytes stored (UTF-8), which the event reader takes as they are: as
            # text, SQLite's bytes would be decoded into a str only to be encoded back for it
            rows = conn.execute(
                "SELECT d.event_id, d.state, d.attempts, d.lost, d.last_error, CAST(e.body AS BLOB),"
                " d.trigger, d.updated_at FROM deliveries d JOIN events e ON e.id = d.event_id"
                " WHERE d.sink = ? AND d.state IN ('pending', 'inflight') AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at LIMIT ?",
                (sink, now, limit),
            ).fetchall()
            claimed = []
            lost_attempts = []
            for event_id, state, attempts, lost, error, body, trigger, claimed_at in rows:
                if state == "inflight":  # its worker's lease ran out: that attempt failed
                    attempts, lost, error = attempts + 1, lost + 1, LOST_WORKER
                    lost_attempt = Attempt(
                        sink=sink,
                        number=attempts,
                        started_at=datetime.fromtimestamp(claimed_at, UTC),
                        duration=max(0.0, now - claimed_at),
                        outcome=AttemptOutcome.LOST,
                        trigger=Trigger(trigger),
                        error=LOST_WORKER,
                    )
                    lost_attempts.append(attempt_row(event_id, lost_attempt))
                    trigger = Trigger.RETRY.value
                claimed.append((event_id, attempts, lost, error, body, trigger))
            conn.executemany(
                "UPDATE deliveries SET state = 'inflight', attempts = ?, lost = ?, last_error = ?,"
                " next_attempt_at = ?, updated_at = ?, trigger = ? WHERE event_id = ? AND sink = ?",
                [
                    (att, lst, err, ends, now, trg, eid, sink)
                    for eid, att, lst, err, _, trg in claimed
                ],
            )
            _insert_attempts(conn, lost_attempts)
            return ends, [(eid, att, lst, body, trg) for eid, att, lst, _, body, trg in claimed]

        ends, rows = await self._write(write, durable=False)
        # the token is the lease's end: an outcome recorded for this claim after another worker
        # has taken the delivery over (a new lease) changes nothing
        token = repr(ends)
        deliveries, refused = await claimed_deliveries(
            rows,
            lambda row: Delivery(
                event=Event.from_stored_json(row[3]),
                sink=sink,
                attempts=row[1],
                token=token,
                lost=row[2],
                trigger=Trigger(row[4]),
            ),
        )
        if refused:
            await self._bury(sink, ends, [(row[0], error) for row, error in refused])
        return deliveries

    async def _bury(self, sink: str, lease: float, refused: list[tuple[str, str]]) -> None:
        """Dead-letter the deliveries of this claim whose stored event could not be read (see
        :func:`~eventrouter.store.base.claimed_deliveries`); no attempt was made."""
        now = time.time()
        errors = dict(refused)
        for event_id, error in refused:
            log.error("sink %s: event %s dead-lettered: %s", sink, event_id, error)

        def write(conn: sqlite3.Connection) -> None:
            current = _current_claims(conn, {(eid, sink): lease for eid in errors})
            conn.executemany(
                "UPDATE deliveries SET state = 'dead', last_error = ?, updated_at = ?"
                " WHERE event_id = ? AND sink = ?",
                [(errors[eid], now, eid, sink) for eid, _ in current],
            )

        await self._write(write, durable=False)

    async def next_due(self, sink: str) -> datetime | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE sink = ? AND state IN ('pending', 'inflight')",
                (sink,),
            ).fetchone()
        )
        return _ts(row[0])

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the outcomes of claims (each ignored if its claim is no longer current) and
        their attempts, in one transaction, not fsynced on its own (see the module docstring)."""
        if not settlements:
            return
        now = time.time()
        # (event id, sink) -> the claim's lease end (its token: see claim()), the row's new
        # values, the attempt for the history
        claims: dict[tuple[str, str], tuple[float, tuple[Any, ...], tuple[Any, ...] | None]] = {}
        for settled in settlements:
            delivery = settled.delivery
            state = settled.state
            pending = state is DeliveryState.PENDING
            if pending and settled.at is None:
                raise ValueError("a pending settlement needs the time it is due again (at)")
            # the next attempt of a delivery made pending again is a retry
            trigger = Trigger.RETRY.value if pending else delivery.trigger.value
            due = settled.at.timestamp() if pending and settled.at is not None else now
            attempts = delivery.attempts + (1 if settled.counted else 0)
            error = None if state is DeliveryState.DONE else settled.error
            key = (delivery.event.id, delivery.sink)
            values = (state.value, attempts, due, error, now, trigger, *key)
            history = None if settled.attempt is None else attempt_row(key[0], settled.attempt)
            claims[key] = (float(delivery.token), values, history)

        def write(conn: sqlite3.Connection) -> None:
            current = _current_claims(conn, {key: lease for key, (lease, _, _) in claims.items()})
            conn.executemany(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?,"
                " last_error = ?, updated_at = ?, trigger = ? WHERE event_id = ? AND sink = ?",
                [claims[key][1] for key in current],
            )
            _insert_attempts(conn, [h for key in current if (h := claims[key][2]) is not None])

        await self._write(write, durable=False)

    # -- listings and operations ---------------------------------------------------------

    @staticmethod
    def _records(conn: sqlite3.Connection, event_id: str) -> tuple[DeliveryRecord, ...]:
        rows = conn.execute(
            "SELECT sink, state, attempts, next_attempt_at, last_error, updated_at FROM deliveries"
            " WHERE event_id = ? ORDER BY sink",
            (event_id,),
        ).fetchall()
        return tuple(
            DeliveryRecord(
                sink=sink,
                state=DeliveryState(state),
                attempts=attempts,
                next_attempt_at=_ts(due) if state in ("pending", "inflight") else None,
                last_error=error,
                updated_at=_ts(updated),
            )
            for sink, state, attempts, due, error, updated in rows
        )

    async def get_event(self, event_id: str) -> StoredEvent | None:
        def read(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute("SELECT body FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return None
            return StoredEvent(
                event=Event.from_stored_json(row[0]), deliveries=self._records(conn, event_id)
            )

        return await self._read(read)

    async def list_events(
        self, *, limit: int = 50, source: str | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            clauses, params = [], []
            if source:
                clauses.append("source = ?")
                params.append(source)
            if type:
                clauses.append("type GLOB ?")
                params.append(type)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            rows = conn.execute(
                f"SELECT id, body FROM events {where} ORDER BY received_at DESC LIMIT ?",  # noqa: S608 - clauses are constants
                (*params, limit),
            ).fetchall()
            return [
                StoredEvent(event=Event.from_stored_json(body), deliveries=self._records(conn, eid))
                for eid, body in rows
            ]

        return await self._read(read)

    async def list_dead_letters(
        self, *, sink: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        def read(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                "SELECT d.event_id, e.source, e.type, d.sink, d.attempts, d.last_error, d.updated_at"
                " FROM deliveries d JOIN events e ON e.id = d.event_id"
                " WHERE d.state = 'dead' AND (? IS NULL OR d.sink = ?) ORDER BY d.updated_at DESC LIMIT ?",
                (sink, sink, limit),
            ).fetchall()
            return [
                DeadLetter(
                    event_id=eid,
                    source=src,
                    type=typ,
                    sink=snk,
                    attempts=att,
                    reason=err or "",
                    dead_at=datetime.fromtimestamp(at, UTC),
                )
                for eid, src, typ, snk, att, err, at in rows
            ]

        return await self._read(read)

    async def retry_dead_letters(
        self, *, sink: str | None = None, event_ids: Sequence[str] = (), action: str | None = None
    ) -> int:
        ids = list(event_ids)

        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            query = (
                "UPDATE deliveries SET state = 'pending', attempts = 0, lost = 0, next_attempt_at = ?,"
                " updated_at = ?, trigger = ?, action = ? WHERE state = 'dead'"
                " AND (? IS NULL OR sink = ?) AND (? IS NULL OR action IS NOT ?)"
            )
            trigger = _trigger(action, Trigger.DLQ_RETRY)
            params: list[Any] = [now, now, trigger, action, sink, sink, action, action]
            if ids:
                query += f" AND event_id IN ({', '.join('?' * len(ids))})"
                params.extend(ids)
            return conn.execute(query, params).rowcount

        return await self._write(write)

    async def replay(
        self, event_id: str, sinks: Sequence[str], *, action: str | None = None
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT received_at FROM events WHERE id = ?", (event_id,)
            ).fetchone()
            if row is None:
                return 0
            now = time.time()
            queued = 0
            trigger = _trigger(action, Trigger.REPLAY)
            for sink in sinks:
                # a bulk action run again skips what it queued already (action = its id)
                queued += conn.execute(
                    "INSERT INTO deliveries (event_id, sink, state, attempts, next_attempt_at,"
                    " updated_at, received_at, trigger, action)"
                    " VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?) ON CONFLICT (event_id, sink)"
                    " DO UPDATE SET state = 'pending', attempts = 0, lost = 0,"
                    " next_attempt_at = excluded.next_attempt_at, last_error = NULL,"
                    " updated_at = excluded.updated_at, trigger = excluded.trigger,"
                    " action = excluded.action"
                    " WHERE excluded.action IS NULL OR deliveries.action IS NOT excluded.action",
                    (event_id, sink, now, now, row[0], trigger, action),
                ).rowcount
            return queued

        return await self._write(write)

    async def queue_depth(self) -> dict[str, dict[str, int]]:
        def read(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            depth: dict[str, dict[str, int]] = {}
            # each WHERE is a partial index's own, so only open and dead deliveries are read,
            # not the done ones (most of them: != 'done' scanned them all, 0.3-0.5 s at 1M)
            for where in ("state IN ('pending', 'inflight')", "state = 'dead'"):
                for sink, state, count in conn.execute(
                    f"SELECT sink, state, COUNT(*) FROM deliveries WHERE {where}"  # noqa: S608 - constants
                    " GROUP BY sink, state"
                ):
                    depth.setdefault(sink, {})[state] = count
            return depth

        return await self._read(read)

    async def purge(self, *, retention: float) -> int:
        """Forget expired idempotency keys and delivered events older than ``retention`` seconds."""

        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            conn.execute("DELETE FROM dedupe WHERE expires_at <= ?", (now,))
            return conn.execute(
                "DELETE FROM events WHERE received_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.state != 'done')",
                (now - retention,),
            ).rowcount

        return await self._write(write)

    # -- sink control (see eventrouter.circuit) --------------------------------------------

    async def get_control(self, sink: str) -> SinkControl:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT version, data FROM sink_control WHERE sink = ?", (sink,)
            ).fetchone()
        )
        return SinkControl() if row is None else SinkControl.from_json(row[1], version=row[0])

    async def put_control(self, sink: str, control: SinkControl) -> bool:
        data = control.to_json()

        def write(conn: sqlite3.Connection) -> bool:
            if control.version == 0:
                query = (
                    "INSERT INTO sink_control (sink, version, data) VALUES (?, 1, ?)"
                    " ON CONFLICT (sink) DO NOTHING"
                )
                return conn.execute(query, (sink, data)).rowcount == 1
            return (
                conn.execute(
                    "UPDATE sink_control SET version = version + 1, data = ?"
                    " WHERE sink = ? AND version = ?",
                    (data, sink, control.version),
                ).rowcount
                == 1
            )

        return await self._write(write)

    async def rate_permit(self, sink: str, *, interval: float) -> float:
        def take(conn: sqlite3.Connection) -> float:
            # one row per sink, read and written in the writer's transaction: every process on
            # the file takes its permits from the same limiter
            row = conn.execute("SELECT tat FROM sink_rates WHERE sink = ?", (sink,)).fetchone()
            tat, wait = shared_gcra(0.0 if row is None else row[0], time.time(), interval)
            if not wait:
                conn.execute(
                    "INSERT INTO sink_rates (sink, tat) VALUES (?, ?)"
                    " ON CONFLICT (sink) DO UPDATE SET tat = excluded.tat",
                    (sink, tat),
                )
            return wait

        # a permit a power cut undoes is one delivery started early, never an event lost
        return await self._write(take, durable=False)

    # -- queries, attempt history, heartbeats ---------------------------------------------

    backend_name = "sqlite"
    supported_filters = frozenset(FILTER_NAMES)

    async def find_events(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[StoredEvent]:
        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [
                StoredEvent(event=Event.from_stored_json(body), deliveries=self._records(conn, eid))
                for eid, body in find_events(conn, where, limit=limit, after=after)
            ]

        return await self._read(read)

    async def find_deliveries(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[tuple[Cursor, str]]:
        return await self._read(lambda conn: find_deliveries(conn, where, limit=limit, after=after))

    async def count_deliveries(self, where: EventFilter) -> dict[str, int]:
        return await self._read(lambda conn: count_deliveries(conn, where))

    async def list_attempts(self, event_id: str) -> list[Attempt]:
        return await self._read(lambda conn: list_attempts(conn, event_id))

    async def heartbeat(self, worker: str, *, ttl: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(
                "INSERT INTO heartbeats (worker, seen_at, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (worker) DO UPDATE SET seen_at = excluded.seen_at,"
                " expires_at = excluded.expires_at",
                (worker, now, now + ttl),
            )
            conn.execute("DELETE FROM heartbeats WHERE expires_at < ?", (now,))

        await self._write(write, durable=False)  # a heartbeat lost to a power cut is next one's

    async def last_heartbeat(self) -> datetime | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT MAX(seen_at) FROM heartbeats WHERE expires_at >= ?", (time.time(),)
            ).fetchone()
        )
        return _ts(row[0])


#: how many deliveries one statement looks up (well under SQLite's limit on parameters)
LOOKUP_CHUNK = 500


def _current_claims(
    conn: sqlite3.Connection, leases: dict[tuple[str, str], float]
) -> list[tuple[str, str]]:
    """The (event id, sink) of ``leases`` still claimed with that lease end: the claims whose
    outcome may be recorded (a claim taken over since, or recorded already, is not)."""
    wanted: dict[str, list[str]] = {}
    for event_id, sink in leases:
        wanted.setdefault(sink, []).append(event_id)
    current: list[tuple[str, str]] = []
    for sink, ids in wanted.items():
        for first in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[first : first + LOOKUP_CHUNK]
            rows = conn.execute(
                "SELECT event_id, next_attempt_at FROM deliveries WHERE sink = ?"  # noqa: S608 - placeholders only
                f" AND state = 'inflight' AND event_id IN ({', '.join('?' * len(chunk))})",
                (sink, *chunk),
            )
            current.extend((eid, sink) for eid, ends in rows if leases[eid, sink] == ends)
    return current


def _insert_attempts(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        conn.executemany(
            "INSERT INTO attempts (event_id, sink, number, started_at, duration, outcome, trigger,"
            " status, error, response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _trigger(action: str | None, default: Trigger) -> str:
    """What the attempts of a delivery queued by ``action`` are recorded as."""
    return Trigger.CONSOLE.value if action and action.startswith(CONSOLE_ACTION) else default.value
