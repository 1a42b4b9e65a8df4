"""Collect what concurrent deliveries submit within a short window into one batch request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from eventrouter import RetryableError

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


def _keep_last(_: T, new: T) -> T:
    return new


class Batcher(Generic[T, R]):
    """``await submit(item)`` returns ``item``'s own result once the batch holding it is sent.

    The first item starts a ``window`` timer; the batch goes when it runs out or when it holds
    ``max_size`` items. Items with the same ``key`` in one batch are merged (``merge(old, new)``)
    and share a result, since batch APIs refuse one record twice. ``send`` gets the items and
    answers one result or exception per item, in order; if it raises, every item fails with it.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        *,
        window: float,
        max_size: int,
        key: Callable[[T], Hashable] = lambda item: item,
        merge: Callable[[T, T], T] = _keep_last,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._send = send
        self._window = window
        self._max_size = max_size
        self._key = key
        self._merge = merge
        self._pending: dict[Hashable, tuple[T, list[asyncio.Future[R]]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        key = self._key(item)
        if key in self._pending:
            held, futures = self._pending[key]
            self._pending[key] = (self._merge(held, item), [*futures, future])
        else:
            self._pending[key] = (item, [future])
        if self._closing or len(self._pending) >= self._max_size:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self.flush)
        return await future

    def flush(self) -> None:
        """Send what is pending now, without waiting for the window to end."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch = list(self._pending.values())
        self._pending = {}
        task = asyncio.get_running_loop().create_task(self._send_batch(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Send what is pending and wait for every batch in flight; later items go at once."""
        self._closing = True
        self.flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send_batch(self, batch: list[tuple[T, list[asyncio.Future[R]]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._send(items)
            if len(results) != len(items):
                raise RuntimeError(f"batch send answered {len(results)} results for {len(items)}")
        except asyncio.CancelledError:
            _fail(batch, RetryableError("the batch request was cancelled (shutting down)"))
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting delivery, not swallowed
            _fail(batch, exc)
            return
        for (_, futures), result in zip(batch, results, strict=True):
            for future in futures:
                if future.done():
                    continue  # the delivery waiting for it timed out
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _fail(batch: list[tuple[T, list[asyncio.Future[R]]]], exc: Exception) -> None:
    for _, futures in batch:
        for future in futures:
            if not future.done():
                future.set_exception(exc)
