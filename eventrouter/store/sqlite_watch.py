"""Wake-ups on the SQLite store: any connection's commits, in any process, noticed within
WATCH_INTERVAL, and the sinks they gave work to.

SQLite tells no one about a commit. ``PRAGMA data_version``
(https://www.sqlite.org/pragma.html#pragma_data_version) changes on a connection whenever
another connection has committed; in WAL mode reading it compares the log's header in shared
memory (three system calls, no wait for the writer). A thread of its own reads it every
WATCH_INTERVAL. When it changed, one indexed read of each watched sink's earliest open delivery
and control record says which sinks to wake: work a worker may not know about (a delivery
queued, retried, revived or replayed, a lease taken or ended) changes its sink's earliest due
time, and a pause, a resume or a circuit's change its control record's version. The event loop
hears from the thread only then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["WATCH_INTERVAL", "CommitWatch", "busy", "open_connection", "watch_commits"]

log = logging.getLogger("eventrouter.store")

#: how often the data version is read: the longest a worker waits for work another process
#: queued. A round costs 130-190 µs of CPU on the project's 2-core VM, half of it the thread's
#: wake-up: an idle watch took 0.33-0.42% of a core at 50 ms, 0.6% at 30 ms, 0.85-1.2% at 15 ms
WATCH_INTERVAL = 0.05
#: after the watch's connection failed, this long before connecting again (workers poll
#: every POLL_INTERVAL meanwhile, since the store is not watching)
RECONNECT_DELAY = 1.0
#: how long cancelling a watch waits for its thread to close its connection
CLOSE_TIMEOUT = 5.0

#: per sink: when its earliest open delivery is due (or its lease ends), its control version
_MARKS = (
    "SELECT s.value, (SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.sink = s.value"
    " AND d.state IN ('pending', 'inflight')),"
    " (SELECT c.version FROM sink_control c WHERE c.sink = s.value) FROM json_each(?) s"
)

Marks = dict[str, tuple[float | None, int | None]]


def open_connection(path: Path) -> sqlite3.Connection:
    """The watch's own connection: it only reads, and never waits for a lock (a read that
    finds one is tried again a round later)."""
    return sqlite3.connect(path, isolation_level=None, timeout=0)


def busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock (try again), not a failure."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class CommitWatch(threading.Thread):
    """Reads the data version of the store at ``path`` every ``interval`` and calls
    ``changed(sinks)`` (from this thread) with the ``sinks`` whose marks changed; with every
    sink at the first read after connecting, since what happened before is unknown. Calls
    ``ended()`` last, once its connection is closed."""

    def __init__(
        self,
        path: Path,
        sinks: Sequence[str],
        *,
        changed: Callable[[list[str]], None],
        ended: Callable[[], None],
        interval: float = WATCH_INTERVAL,
    ) -> None:
        super().__init__(name="eventrouter-sqlite-watch", daemon=True)
        self.path = path
        self.sinks = list(sinks)
        self.changed = changed
        self.ended = ended
        self.interval = interval
        self.stopped = threading.Event()
        #: connected, and read the data version at least once: workers may poll less often
        self.watching = False
        self._sinks_json = json.dumps(self.sinks)

    def run(self) -> None:
        try:
            failures = 0
            while not self.stopped.is_set():
                try:
                    conn = open_connection(self.path)
                    try:
                        self._poll(conn)
                    finally:
                        if self.watching:  # it worked a while: a failure now is a new outage
                            failures = 0
                        self.watching = False
                        conn.close()
                except sqlite3.Error as exc:
                    # once per outage, not every RECONNECT_DELAY
                    log.log(
                        logging.DEBUG if failures else logging.WARNING,
                        "cannot watch the SQLite store for new work (workers poll meanwhile): %s",
                        exc,
                    )
                    failures += 1
                self.stopped.wait(RECONNECT_DELAY)
        except Exception:
            log.exception("watching the SQLite store for new work failed; workers poll instead")
        finally:
            self.ended()

    def _poll(self, conn: sqlite3.Connection) -> None:
        """Read until stopped; returns or raises to reconnect."""
        version: int | None = None
        marks: Marks = {}
        while True:
            try:
                now = conn.execute("PRAGMA data_version").fetchall()[0][0]
                if now != version:
                    new = {
                        sink: (due, control)
                        for sink, due, control in conn.execute(
                            _MARKS, (self._sinks_json,)
                        ).fetchall()
                    }
                    changed = [s for s in self.sinks if version is None or new[s] != marks[s]]
                    version, marks = now, new
                    self.watching = True
                    if changed:
                        self.changed(changed)
            except sqlite3.Error as exc:
                if not busy(exc):
                    raise
            # a plain sleep: waiting on ``stopped`` with a timeout cost more (90 µs a round
            # against 50-75 µs measured); a stop is seen one interval late at most
            time.sleep(self.interval)
            if self.stopped.is_set():
                return


async def watch_commits(
    path: Path,
    sinks: Sequence[str],
    wake: Callable[[str], None],
    *,
    started: Callable[[CommitWatch], None],
    interval: float = WATCH_INTERVAL,
) -> None:
    """Run a :class:`CommitWatch` calling ``wake(sink)`` on this event loop, until cancelled
    (then its thread stops and closes its connection before this returns). ``started`` is
    handed the watch (the store asks it whether it is watching)."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    def woken(names: list[str]) -> None:
        for name in names:
            wake(name)

    def on_loop(fn: Callable[..., None], *args: object) -> None:  # from the watch's thread
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            watch.stopped.set()

    watch = CommitWatch(
        path,
        sinks,
        changed=lambda names: on_loop(woken, names),
        ended=lambda: on_loop(ended.set),
        interval=interval,
    )
    started(watch)
    watch.start()
    try:
        await ended.wait()  # the thread ends by itself when the store closes, or a bug it logged
    finally:
        watch.stopped.set()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ended.wait()
        except TimeoutError:
            log.warning("the SQLite store's watch did not stop within %.0fs", CLOSE_TIMEOUT)
