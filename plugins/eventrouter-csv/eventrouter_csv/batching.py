"""Group commit: rows from concurrent deliveries share one write and one fsync per file.

``append`` queues a row and waits; a single flusher takes everything queued, writes it in a
thread, fsyncs, and only then wakes the waiting deliveries. While one batch is on its way to
the disk, the next one gathers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from attrs import frozen

from eventrouter import RetryableError
from eventrouter_csv.files import append_lines
from eventrouter_csv.locking import ArchiveLock

__all__ = ["GroupCommit", "run_locked"]

T = TypeVar("T")


async def run_locked(lock: ArchiveLock, function: Callable[..., T], *args: object) -> T:
    """Run blocking ``function`` in a thread while holding the archive directory's ``lock``.

    The sink's tasks take turns on ``lock.tasks``; the thread then takes the directory's OS
    lock, which other processes and sinks respect, and keeps it until ``function`` returns
    (the event loop never waits for it). A thread cannot be interrupted: if the caller is
    cancelled, both locks are still held until the thread ends, so no other file work
    overlaps it.
    """
    async with lock.tasks:
        work = asyncio.ensure_future(asyncio.to_thread(lock.call, function, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            raise


@frozen
class _Pending:
    path: Path
    lines: list[bytes]
    done: asyncio.Future[None]


class GroupCommit:
    """Appends rows to CSV files in batches; ``append`` returns once its row is fsynced."""

    def __init__(
        self,
        *,
        header: bytes,
        lock: ArchiveLock,
        logger: logging.Logger,
        extension: str = "",
    ) -> None:
        self.header = header
        self.lock = lock
        self.logger = logger
        #: the path template's file extension, which a continuation's number goes before
        self.extension = extension
        #: (file, continuation) pairs already reported, so the warning is logged once each
        self._continued: set[tuple[Path, Path]] = set()
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        #: batches written so far (for tests and metrics)
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="csv-group-commit")

    async def append(self, path: Path, line: bytes) -> None:
        """Queue ``line`` for ``path`` and wait until it is durably written."""
        await self._queue(path, [line])

    async def append_many(self, lines: dict[Path, list[bytes]]) -> dict[Path, RetryableError]:
        """Queue each file's lines and wait until they are durably written; the error of each
        file whose lines could not be (every line of a file is written, or none)."""
        paths = list(lines)
        results = await asyncio.gather(
            *(self._queue(path, lines[path]) for path in paths), return_exceptions=True
        )
        errors = {}
        for path, result in zip(paths, results, strict=True):
            if isinstance(result, RetryableError):
                errors[path] = result
            elif isinstance(result, BaseException):
                raise result
        return errors

    async def _queue(self, path: Path, lines: list[bytes]) -> None:
        if self._closing or self._task is None:
            raise RetryableError("the csv sink is not running")
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(path, lines, done))
        self._wakeup.set()
        await done

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._flush()
            if self._closing and not self._pending:
                return

    async def _flush(self) -> None:
        # a delivery that gave up (timeout) before its batch started is not written at all
        batch = [item for item in self._pending if not item.done.done()]
        self._pending = []
        if not batch:
            return
        grouped: dict[Path, list[bytes]] = {}
        for item in batch:
            grouped.setdefault(item.path, []).extend(item.lines)
        try:
            errors = await run_locked(self.lock, self._write, grouped)
        except Exception as exc:
            rows = sum(len(item.lines) for item in batch)
            self.logger.exception("csv: writing a batch of %d rows failed", rows)
            errors = dict.fromkeys(grouped, f"{type(exc).__name__}: {exc}")
        self.batches += 1
        for item in batch:
            if item.done.done():
                continue
            error = errors.get(item.path)
            if error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(RetryableError(error))

    def _write(self, grouped: dict[Path, list[bytes]]) -> dict[Path, str]:
        """Write each file's lines; what went wrong, per file."""
        errors: dict[Path, str] = {}
        for path, lines in grouped.items():
            try:
                appended = append_lines(path, self.header, lines, extension=self.extension)
            except OSError as exc:
                errors[path] = f"cannot write {path.name}: {exc.strerror or type(exc).__name__}"
                continue
            if appended.repaired:
                self.logger.warning(
                    "csv: cut a torn last record (%d bytes) off %s before appending",
                    appended.repaired,
                    appended.path,
                )
            if appended.path != path and (path, appended.path) not in self._continued:
                self._continued.add((path, appended.path))
                self.logger.warning(
                    "csv: %s starts with other columns than configured (the columns changed "
                    "since it was begun); its new rows go to %s",
                    path,
                    appended.path.name,
                )
        return errors
