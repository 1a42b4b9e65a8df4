"""Delivery: one worker per sink, each with its own concurrency limit and retry schedule.

A slow or failing sink only ever occupies its own worker's slots, so it never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy

from eventrouter.config import SinkSpec
from eventrouter.errors import PermanentError, RetryableError, StoreUnavailable
from eventrouter.events import Event
from eventrouter.metrics import Metrics
from eventrouter.plugins import await_me_maybe
from eventrouter.redact import Redactor
from eventrouter.sinks import SinkContext
from eventrouter.store.base import Delivery, Store

__all__ = ["Dispatcher", "notify_observers"]

log = logging.getLogger("eventrouter.dispatch")

#: longest a worker sleeps before looking at the store again (deliveries made due by another
#: process, e.g. ``eventrouter dlq retry``, are picked up within this)
POLL_INTERVAL = 1.0
#: default of [sinks.NAME.delivery] lease_margin (see DeliveryPolicy)
LEASE_MARGIN = 30.0


async def notify_observers(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call an observer hook; await what implementations return; log, never raise, their errors."""
    try:
        results = getattr(pm.hook, hook_name)(**kwargs)
    except Exception:
        log.exception("a %s hook implementation failed", hook_name)
        return
    for result in results:
        try:
            await await_me_maybe(result)
        except Exception:
            log.exception("a %s hook implementation failed", hook_name)


class _SinkWorker:
    def __init__(self, name: str, spec: SinkSpec, dispatcher: Dispatcher) -> None:
        self.name = name
        self.spec = spec
        self.dispatcher = dispatcher
        self.wakeup = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    @property
    def lease(self) -> float:
        margin = self.spec.delivery.lease_margin
        return float(self.spec.delivery.timeout) + (
            LEASE_MARGIN if margin is None else float(margin)
        )

    async def run(self) -> None:
        store = self.dispatcher.store
        concurrency = self.spec.delivery.concurrency
        while not self.stopping:
            self.wakeup.clear()
            free = concurrency - len(self.inflight)
            if free <= 0:
                await self.wakeup.wait()  # every slot busy: a finishing attempt wakes us
                continue
            claimed: list[Delivery] = []
            try:
                claimed = await store.claim(self.name, limit=free, lease=self.lease)
            except StoreUnavailable as exc:
                log.warning("sink %s: cannot claim deliveries: %s", self.name, exc)
            except Exception:
                log.exception("sink %s: claiming deliveries failed", self.name)
            for delivery in claimed:
                task = asyncio.create_task(self.attempt(delivery), name=f"deliver-{self.name}")
                self.inflight.add(task)
                task.add_done_callback(self._done)
            if len(claimed) < free:
                await self._sleep()  # nothing more is due now: until it is, or we are woken

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.wakeup.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # a bug in the bookkeeping: the delivery stays claimed until its lease ends, then
            # it is attempted again; say so rather than lose the error
            log.error(
                "sink %s: an attempt ended without recording its outcome; retried after its lease",
                self.name,
                exc_info=exc,
            )

    async def _sleep(self) -> None:
        timeout = POLL_INTERVAL
        try:
            due = await self.dispatcher.store.next_due(self.name)
        except Exception:  # noqa: BLE001 - the store may be briefly unavailable; poll again
            due = None
        if due is not None:
            timeout = max(0.0, min(timeout, (due - datetime.now(UTC)).total_seconds()))
        if timeout <= 0:
            await asyncio.sleep(0.01)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()

    async def attempt(self, delivery: Delivery) -> None:
        dispatcher = self.dispatcher
        sink = self.spec.sink
        policy = self.spec.delivery
        event = delivery.event
        number = delivery.attempts + 1
        started = time.monotonic()
        retry_after: float | None = None
        permanent = False
        try:
            if not policy.include_sensitive:
                event = event.redacted()
            async with asyncio.timeout(policy.timeout):
                await sink.deliver(event)
        except PermanentError as exc:
            error, permanent = exc.message, True
        except RetryableError as exc:
            error, retry_after = exc.message, exc.retry_after
        except TimeoutError:
            error = f"timed out after {policy.timeout:g}s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("sink %s raised an unexpected error delivering %s", self.name, event.id)
            error = f"{type(exc).__name__}: {exc}"
        else:
            elapsed = time.monotonic() - started
            dispatcher.metrics.delivery_latency.labels(self.name).observe(elapsed)
            dispatcher.metrics.deliveries.labels(self.name, "delivered").inc()
            await self._settle(dispatcher.store.ack(delivery), delivery)
            await notify_observers(
                dispatcher.pm,
                "delivery_succeeded",
                event=event,
                sink=sink,
                attempt=number,
                duration=elapsed,
            )
            return
        dispatcher.metrics.delivery_latency.labels(self.name).observe(time.monotonic() - started)
        error = dispatcher.redactor(error)[:2000]
        if permanent or number >= policy.max_attempts:
            reason = error if permanent else f"gave up after {number} attempts: {error}"
            log.warning("sink %s: event %s dead-lettered: %s", self.name, event.id, reason)
            dispatcher.metrics.deliveries.labels(self.name, "dead").inc()
            await self._settle(dispatcher.store.dead_letter(delivery, error=reason), delivery)
            await notify_observers(
                dispatcher.pm,
                "delivery_failed",
                event=event,
                sink=sink,
                attempt=number,
                error=error,
                retry_at=None,
            )
            await notify_observers(
                dispatcher.pm, "event_dead_lettered", event=event, sink=sink, reason=reason
            )
            return
        delay = self.delay(number, retry_after=retry_after)
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        log.info(
            "sink %s: attempt %d for %s failed (%s); retry in %.1fs",
            self.name,
            number,
            event.id,
            error,
            delay,
        )
        dispatcher.metrics.deliveries.labels(self.name, "retry").inc()
        await self._settle(
            dispatcher.store.retry_later(delivery, at=retry_at, error=error), delivery
        )
        await notify_observers(
            dispatcher.pm,
            "delivery_failed",
            event=event,
            sink=sink,
            attempt=number,
            error=error,
            retry_at=retry_at,
        )

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), with jitter.

        A ``Retry-After`` the sink reported replaces the schedule's delay, up to the longest delay
        of the schedule: a remote end cannot park a delivery for a year, nor break the
        bookkeeping with an infinite or negative wait.
        """
        policy = self.spec.delivery
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(0.0, retry_after), float(max(policy.retry_schedule, default=0.0)))
        base = float(policy.retry_schedule[min(attempt, len(policy.retry_schedule)) - 1])
        return max(0.0, base * (1 + random.uniform(-policy.jitter, policy.jitter)))

    async def _settle(self, write: Any, delivery: Delivery) -> None:
        try:
            await write
        except Exception as exc:  # noqa: BLE001 - the lease runs out and the delivery is retried
            log.error(
                "sink %s: could not record the outcome for %s (%s); it will be retried when its lease ends",
                self.name,
                delivery.event.id,
                exc,
            )


class Dispatcher:
    """Runs every sink's worker; ``notify`` wakes the workers of sinks that got new deliveries."""

    def __init__(
        self,
        *,
        store: Store,
        sinks: dict[str, SinkSpec],
        pm: pluggy.PluginManager,
        metrics: Metrics,
        redactor: Redactor,
    ) -> None:
        self.store = store
        self.pm = pm
        self.metrics = metrics
        self.redactor = redactor
        self.workers = {name: _SinkWorker(name, spec, self) for name, spec in sinks.items()}

    async def start(self, context: SinkContext) -> None:
        for worker in self.workers.values():
            await worker.spec.sink.start(context)
        for name, worker in self.workers.items():
            worker.task = asyncio.create_task(worker.run(), name=f"sink-worker-{name}")

    def notify(self, sinks: Iterable[str]) -> None:
        for name in sinks:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wakeup.set()

    async def stop(self, *, grace: float) -> None:
        """Stop claiming, let running attempts finish (up to ``grace`` seconds), close the sinks."""
        for worker in self.workers.values():
            worker.stopping = True
            worker.wakeup.set()
        loops = [w.task for w in self.workers.values() if w.task is not None]
        await asyncio.gather(*loops, return_exceptions=True)
        running = [task for worker in self.workers.values() for task in worker.inflight]
        if running:
            log.info("waiting up to %.0fs for %d delivery attempts to finish", grace, len(running))
            _, unfinished = await asyncio.wait(running, timeout=grace)
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.warning(
                    "%d delivery attempts cut short; they will be retried after restart",
                    len(unfinished),
                )
                await asyncio.gather(*unfinished, return_exceptions=True)
        for worker in self.workers.values():
            try:
                await worker.spec.sink.close()
            except Exception:
                log.exception("sink %s failed to close", worker.name)


def event_for_log(event: Event) -> dict[str, str]:
    """The fields of an event that are safe and useful in a log line."""
    return {"er_event_id": event.id, "er_source": event.source, "er_type": event.type}
