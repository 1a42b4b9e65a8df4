"""Pacing and digests for one Slack destination.

Slack allows about one message per second per channel (webhooks alike). Each delivery waits in
an :class:`Outbox` until the message that carries its event is posted, so the core only
acknowledges an event Slack has accepted. When more than ``threshold`` events arrive within
``window`` seconds, later ones are folded into one digest, posted when the window has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from attrs import define, field

from eventrouter import DeliveryError, Event, RetryableError

__all__ = ["Outbox", "Pacer", "pacer_for"]

Send = Callable[[Sequence[Event]], Awaitable[None]]


class Pacer:
    """Spaces posts to one destination: one per interval, and none before a 429's Retry-After.

    The interval runs from when the previous post *ended*, not from when it was sent: a post
    slowed on its way (a new connection, a stalled machine) must not let the next one reach Slack
    less than an interval after it.
    """

    def __init__(self) -> None:
        self._next = 0.0
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self, interval: float) -> AsyncIterator[None]:
        """Wait until a post may go out and hold the destination while it is made.

        On leaving, the next ``interval`` seconds are kept free of posts to this destination.
        """
        async with self._lock:
            # a time to wait for, not an event; defer() may push it further while we sleep
            while (delay := self._next - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            try:
                yield
            finally:
                self._next = max(self._next, time.monotonic() + interval)

    def defer(self, seconds: float) -> None:
        """Hold every post for ``seconds`` (Slack said to wait)."""
        self._next = max(self._next, time.monotonic() + seconds)


# One pacer per destination and shared HTTP session, so two sinks posting to the same channel
# share Slack's limit; the session (one per running router) scopes them to one event loop.
_PACERS: weakref.WeakKeyDictionary[object, dict[str, Pacer]] = weakref.WeakKeyDictionary()


def pacer_for(session: object, destination: str) -> Pacer:
    """The pacer of ``destination`` (an opaque key, never the secret itself) in ``session``."""
    pacers = _PACERS.setdefault(session, {})
    return pacers.setdefault(destination, Pacer())


@define(eq=False)
class _Entry:
    event: Event
    done: asyncio.Future[None]


@define(eq=False)
class _Batch:
    """One message to come: a single event, or a digest collecting events until ``due``."""

    due: float
    digest: bool
    entries: list[_Entry] = field(factory=list)


class Outbox:
    """The queue of messages to one destination, sent one at a time by a background task."""

    def __init__(
        self,
        *,
        send: Send,
        pacer: Pacer,
        interval: float,
        digest_window: float = 0.0,
        digest_threshold: int = 5,
        logger: logging.Logger | None = None,
        name: str = "slack",
    ) -> None:
        self._send = send
        self._log = logger or logging.getLogger("eventrouter_slack")
        self._name = name
        self._pacer = pacer
        self._interval = interval
        self._window = digest_window
        self._threshold = digest_threshold
        self._queue: deque[_Batch] = deque()
        self._arrivals: deque[float] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._posting: _Batch | None = None
        self._closed = False

    async def submit(self, event: Event) -> None:
        """Return once the message carrying ``event`` is posted; raise what posting raised."""
        if self._closed:
            raise RetryableError("the Slack sink is shutting down")
        entry = _Entry(event, asyncio.get_running_loop().create_future())
        batch = self._place(entry)
        self._wake()
        try:
            await entry.done
        except asyncio.CancelledError:
            # timed out or shut down before posting: leave the message, the core retries
            if batch in self._queue:
                batch.entries.remove(entry)
                if not batch.entries:
                    self._queue.remove(batch)
            raise

    def _place(self, entry: _Entry) -> _Batch:
        now = time.monotonic()
        if self._window > 0:
            self._arrivals.append(now)
            while self._arrivals[0] <= now - self._window:
                self._arrivals.popleft()
        if self._queue and self._queue[-1].digest:
            batch = self._queue[-1]
        elif self._window > 0 and len(self._arrivals) > self._threshold:
            batch = _Batch(due=now + self._window, digest=True)
            self._queue.append(batch)
        else:
            batch = _Batch(due=now, digest=False)
            self._queue.append(batch)
        batch.entries.append(entry)
        return batch

    def _wake(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._run(), name="slack-outbox")

    async def _run(self) -> None:
        while self._queue:
            wait = self._queue[0].due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            async with self._pacer.turn(self._interval):
                if not self._queue or self._queue[0].due > time.monotonic():
                    continue
                self._posting = self._queue.popleft()
                try:
                    await self._post(self._posting)
                finally:
                    self._posting = None

    async def _post(self, batch: _Batch) -> None:
        entries = [entry for entry in batch.entries if not entry.done.done()]
        if not entries:
            return
        error: DeliveryError | None = None
        try:
            await self._send([entry.event for entry in entries])
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - one bad post must not stop the outbox
            # say what failed without its text, which may quote the URL
            self._log.warning(
                "sink %s: posting to Slack failed unexpectedly: %s", self._name, type(exc).__name__
            )
            error = RetryableError(f"posting to Slack failed unexpectedly ({type(exc).__name__})")
        if isinstance(error, RetryableError) and error.retry_after:
            self._pacer.defer(error.retry_after)
        for entry in entries:
            if entry.done.done():
                continue
            if error is None:
                entry.done.set_result(None)
            else:
                entry.done.set_exception(error)

    async def close(self) -> None:
        """Stop sending; deliveries still waiting fail as retryable (the core retries them)."""
        self._closed = True
        posting = self._posting
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        stranded = [*self._queue, *([posting] if posting else [])]
        self._queue.clear()
        for batch in stranded:
            for entry in batch.entries:
                if not entry.done.done():
                    entry.done.set_exception(
                        RetryableError("the Slack sink stopped before this event was posted")
                    )
