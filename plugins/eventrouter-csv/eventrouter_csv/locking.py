"""The archive directory's lock: every process and sink delivering into one directory takes turns.

Two locks, one inside the other. An ``asyncio.Lock`` orders the file work of one sink (its
worker threads share one open lock file, and ``flock`` cannot tell them apart); an exclusive
``flock`` on the directory's lock file orders it against every other sink and process. Each
piece of file work holds both from its first read to its last fsync, so no process repairs,
appends to or compresses a file while another one is writing it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["LOCK_NAME", "ArchiveLock"]

T = TypeVar("T")

#: the lock file in the archive directory (empty, never written, never removed)
#:
#: A lock file rather than ``flock`` on the directory's own descriptor: on NFS, Linux emulates
#: ``flock`` with a byte-range lock on the whole file, and an exclusive one needs a descriptor
#: open for writing (flock(2), "NFS details"), which a directory can never have: the lock would
#: fail with EBADF there. Its name starts with a dot, so ``ls`` and ``*.csv`` globs skip it.
LOCK_NAME = ".eventrouter-csv.lock"
_MODE = 0o640


class ArchiveLock:
    """The lock of one archive directory, as one sink holds it (open from start to close)."""

    def __init__(self) -> None:
        #: orders this sink's own file work (the tasks of its event loop)
        self.tasks = asyncio.Lock()
        self._fd: int | None = None
        self._path = Path(LOCK_NAME)

    def open(self, directory: Path) -> None:
        """Open (or create) ``directory``'s lock file; blocking."""
        self._path = directory / LOCK_NAME
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)

    async def close(self) -> None:
        """Close the lock file, once no file work holds it."""
        async with self.tasks:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def call(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function`` holding the directory's exclusive lock; blocking (run in a thread).

        It waits while another process or sink holds it. The cost is two system calls per
        call (lock, unlock), whatever ``function`` writes.
        """
        if self._fd is None:
            raise RuntimeError("the archive lock is not open (the sink has not started)")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            # e.g. ENOLCK: an NFS share whose server runs no lock service
            raise OSError(
                exc.errno,
                f"cannot lock {self._path} ({exc.strerror}); keep the archive on a local disk",
            ) from None
        try:
            return function(*args)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
