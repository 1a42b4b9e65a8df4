"""Delivery: one worker per sink, each with its own concurrency limit and retry schedule.

A slow or failing sink only ever occupies its own worker's slots, so it never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
from attrs import define, field, frozen

from eventrouter.circuit import SinkGate
from eventrouter.config import SinkSpec
from eventrouter.errors import (
    EXCERPT_LIMIT,
    DeliveryError,
    PermanentError,
    RetryableError,
    StoreUnavailable,
)
from eventrouter.events import Event
from eventrouter.hooks import notify_observers
from eventrouter.metrics import Metrics
from eventrouter.operator_events import OperatorEvents
from eventrouter.redact import Redactor
from eventrouter.sinks import SinkContext
from eventrouter.store.base import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryState,
    Settlement,
    Store,
)

__all__ = ["Dispatcher", "SinkStartFailed", "cancel_and_wait"]

log = logging.getLogger("eventrouter.dispatch")

#: longest a worker sleeps before looking at the store again (deliveries made due by another
#: process, e.g. ``eventrouter dlq retry``, are picked up within this)
POLL_INTERVAL = 1.0
#: the same while the store tells workers about queued work (Redis pub/sub): only a safety net
WATCHED_POLL_INTERVAL = 10.0
#: when the store says work is due but a claim gets none, the next look waits this long,
#: doubling each time (up to the poll interval) until a claim gets something
SPIN_BACKOFF = 0.01
#: waits between attempts to record an outcome: from the first, doubling up to the second
OUTCOME_WRITE_BACKOFF = (0.05, 1.0)
#: an outcome is no longer retried this close to the end of the lease (a takeover may follow)
OUTCOME_WRITE_MARGIN = 1.0
#: default of [sinks.NAME.delivery] lease_margin (see DeliveryPolicy)
LEASE_MARGIN = 30.0
#: the error kept for a delivery put back unattempted (its sink's circuit opened meanwhile)
NOT_ATTEMPTED = "not attempted: the sink's circuit opened (see eventrouter sinks)"

#: a delivering process says it is alive this often (``replay`` / ``dlq retry`` look for it)
HEARTBEAT_INTERVAL = 10.0


async def cancel_and_wait(task: asyncio.Task[Any], *, tries: int = 20, wait: float = 0.25) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again if a cancellation was lost.

    On Python 3.11 ``asyncio.wait_for`` (which redis-py uses) drops a cancellation that arrives
    as the awaited operation completes, and the task carries on: one ``cancel()`` and an
    unbounded wait could hang a shutdown. Gives up (logs) after ``tries`` rounds. The task's
    own error, if any, is its business (logged where it happens), not raised here.
    """
    for _ in range(tries):
        if task.done():
            break
        task.cancel()
        await asyncio.wait([task], timeout=wait)
    if not task.done():
        log.error("task %s did not stop when cancelled", task.get_name())
    elif not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as never retrieved


class _AttemptNote:
    """What the attempt history keeps of one attempt while it runs (issue 13)."""

    def __init__(self, sink: str, delivery: Delivery, started_at: datetime, started: float) -> None:
        self.sink = sink
        self.delivery = delivery
        self.started_at = started_at
        self.started = started
        self.status: int | None = None
        self.excerpt: str | None = None

    def answered(self, exc: DeliveryError, redactor: Redactor) -> None:
        """Keep the status and the start of the answer the sink reported, masked."""
        self.status = exc.status
        if exc.response_excerpt:
            self.excerpt = redactor(exc.response_excerpt, cut=True)[:EXCERPT_LIMIT]

    def ended(self, outcome: AttemptOutcome, *, error: str | None = None) -> Attempt:
        return Attempt(
            sink=self.sink,
            number=self.delivery.attempts + 1,
            started_at=self.started_at,
            duration=time.monotonic() - self.started,
            outcome=outcome,
            trigger=self.delivery.trigger,
            status=self.status,
            error=error,
            response_excerpt=self.excerpt,
        )


@frozen
class _Failure:
    """A failed attempt as the worker judges it: the error kept (masked), whether it is
    permanent, and the wait the sink asked for (Retry-After)."""

    error: str
    permanent: bool = field(kw_only=True)
    retry_after: float | None = field(kw_only=True)


@define
class _Outcome:
    """What attempts ended in: the settlements to record in the store (one write), then the
    observer hooks to call (name, arguments but ``sink``)."""

    settlements: list[Settlement] = field(factory=list)
    notices: list[tuple[str, dict[str, Any]]] = field(factory=list)

    def add(self, other: _Outcome) -> None:
        self.settlements.extend(other.settlements)
        self.notices.extend(other.notices)


def _which(deliveries: list[Delivery]) -> str:
    """The deliveries named in a log line: an event id, or how many and the first ids."""
    if len(deliveries) == 1:
        return deliveries[0].event.id
    shown = ", ".join(d.event.id for d in deliveries[:3])
    more = ", ..." if len(deliveries) > 3 else ""
    return f"{len(deliveries)} deliveries ({shown}{more})"


class _SinkWorker:
    def __init__(self, name: str, spec: SinkSpec, dispatcher: Dispatcher) -> None:
        self.name = name
        self.spec = spec
        self.dispatcher = dispatcher
        self.wakeup = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        #: set when the worker is to stop: ends every wait, a wake-up's and a lingering one
        #: (which a wake-up must not end: see _linger)
        self.halt = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        #: looks in a row that found work due but claimed none (see SPIN_BACKOFF)
        self.spins = 0
        #: the store failed the last claim (its warning is logged once per outage)
        self.store_down = False
        # this sink's metrics, looked up once (a label lookup per delivery was a tenth of the
        # dispatcher's own work in a batch)
        metrics = dispatcher.metrics
        self.latency = metrics.delivery_latency.labels(name)
        self.counted = {
            kind: metrics.deliveries.labels(name, kind) for kind in ("delivered", "retry", "dead")
        }
        #: the sink delivers in batches (it implements ``deliver_batch``): one per slot
        self.batches = spec.sink.delivers_batches
        #: circuit breaker, pause and rate limit of this sink (eventrouter.circuit)
        self.gate = SinkGate(
            name, spec.delivery, dispatcher.store, operator=dispatcher.operator, lease=self.lease
        )

    @property
    def lease(self) -> float:
        margin = self.spec.delivery.lease_margin
        return float(self.spec.delivery.timeout) + (
            LEASE_MARGIN if margin is None else float(margin)
        )

    async def run(self) -> None:
        store = self.dispatcher.store
        policy = self.spec.delivery
        concurrency = policy.concurrency
        while not self.halt.is_set():
            self.wakeup.clear()
            free = concurrency - len(self.inflight)
            if free <= 0:
                await self.wakeup.wait()  # every slot busy: a finishing attempt wakes us
                continue
            # -- circuit breaker, pause, rate limit (eventrouter.circuit) --
            admission = await self.gate.admit(free)
            if admission.limit <= 0:
                await self._wait(admission.wait)
                continue
            free = admission.limit
            # --
            # a sink with deliver_batch takes a batch per slot; a probe, or a rate-limited
            # sink, one delivery at a time all the same
            limited = admission.probe or policy.rate_limit is not None
            wanted = policy.batch_size if self.batches and not limited else free
            claimed: list[Delivery] = []
            claimed_at = time.monotonic()  # the lease starts no earlier than this
            try:
                claimed = await store.claim(self.name, limit=wanted, lease=self.lease)
            except StoreUnavailable as exc:
                if not self.store_down:
                    log.warning("sink %s: cannot claim deliveries: %s", self.name, exc)
                self.store_down = True
            except Exception:
                log.exception("sink %s: claiming deliveries failed", self.name)
            else:
                if self.store_down:
                    log.info("sink %s: the store answers again", self.name)
                self.store_down = False
            if claimed:
                self.spins = 0
            await self.gate.claimed(admission, claimed)  # circuit: the probe, if it is one
            if self.batches and claimed:
                self._start(self.attempt_batch(claimed, claimed_at=claimed_at))
            else:
                for delivery in claimed:
                    self._start(self.attempt(delivery, claimed_at=claimed_at))
            if len(claimed) < wanted:
                if self.batches and claimed and policy.batch_wait:
                    # a part batch: the next gathers a moment instead of being claimed event by
                    # event as they arrive (each claim and outcome write costs per batch)
                    await self._linger(float(policy.batch_wait))
                await self._sleep()  # nothing more is due now: until it is, or we are woken

    def _start(self, attempt: Coroutine[Any, Any, None]) -> None:
        """Run ``attempt`` in a slot of the sink's concurrency."""
        task = asyncio.create_task(attempt, name=f"deliver-{self.name}")
        self.inflight.add(task)
        task.add_done_callback(self._done)

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

    async def _linger(self, seconds: float) -> None:
        """Wait ``seconds`` whatever wakes the worker, unless it is told to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.halt.wait()

    async def _wait(self, seconds: float) -> None:
        """Wait ``seconds`` (the sink's gate said so), or until something wakes the worker."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self.wakeup.wait()

    async def _sleep(self) -> None:
        """Wait until the next delivery is due, something wakes the worker, or a poll is due."""
        store = self.dispatcher.store
        interval = WATCHED_POLL_INTERVAL if store.watching else POLL_INTERVAL
        timeout = interval
        try:
            due = await store.next_due(self.name)
        except Exception:  # noqa: BLE001 - the store may be briefly unavailable; poll again
            due = None
        if due is not None:
            timeout = max(0.0, min(timeout, (due - datetime.now(UTC)).total_seconds()))
        if timeout <= 0:
            # due now, although the claim just made got less than it asked for: new work, or
            # work the claim cannot take (it should not be, but never spin on it)
            timeout = min(SPIN_BACKOFF * 2**self.spins, interval)
            self.spins = min(self.spins + 1, 30)
        else:
            self.spins = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()

    async def attempt(self, delivery: Delivery, *, claimed_at: float) -> None:
        """Deliver one claimed delivery with the sink's ``deliver`` and record the outcome."""
        sink = self.spec.sink
        policy = self.spec.delivery
        record_by = claimed_at + self.lease - OUTCOME_WRITE_MARGIN
        unattempted = self._unattempted(delivery)
        if unattempted is not None:
            await self._record(unattempted, [delivery], record_by)
            return
        started = time.monotonic()
        history = _AttemptNote(self.name, delivery, datetime.now(UTC), started)  # issue 13
        failure: _Failure | None = None
        event = delivery.event if policy.include_sensitive else delivery.event.redacted()
        try:
            async with asyncio.timeout(policy.timeout):
                await sink.deliver(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - each kind of failure is judged in _failure
            failure = self._failure(exc, event, history)
        # -- circuit: a failure while it is not closed counts no attempt (eventrouter.circuit) --
        held = False
        if failure is None:
            await self.gate.succeeded(delivery)  # closes it, resets the failures
        elif failure.permanent:
            await self.gate.answered(delivery)
        else:
            held = await self.gate.failed(
                delivery, error=failure.error, retry_after=failure.retry_after
            )
        # --
        outcome = self._judge(delivery, event, history, failure, held=held, now=datetime.now(UTC))
        await self._record(outcome, [delivery], record_by)

    async def attempt_batch(self, deliveries: list[Delivery], *, claimed_at: float) -> None:
        """Deliver claimed deliveries with one call of the sink's ``deliver_batch`` and record
        every outcome in one store write.

        For the circuit breaker the batch is one attempt: it succeeded if the sink took any of
        its events (the failed ones are the events' fault, retried on schedule) and failed if
        it took none. The timeout applies to the whole call.
        """
        sink = self.spec.sink
        policy = self.spec.delivery
        record_by = claimed_at + self.lease - OUTCOME_WRITE_MARGIN
        outcome = _Outcome()
        todo: list[Delivery] = []
        for delivery in deliveries:
            unattempted = self._unattempted(delivery)
            if unattempted is None:
                todo.append(delivery)
            else:
                outcome.add(unattempted)
        if todo:
            started = time.monotonic()
            started_at = datetime.now(UTC)
            events = [d.event if policy.include_sensitive else d.event.redacted() for d in todo]
            notes = [_AttemptNote(self.name, d, started_at, started) for d in todo]
            failures: dict[str, _Failure | None] = {}
            try:
                async with asyncio.timeout(policy.timeout):
                    refused = await sink.deliver_batch(events) or {}
                if not isinstance(refused, Mapping):
                    raise TypeError(  # a plugin's slip: the batch counts as failed, and says why
                        f"deliver_batch returned {type(refused).__name__}, not a mapping of "
                        "event ids to errors"
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - judged in _failure, for every event alike
                failure = self._failure(exc, events[0], notes[0], batch=len(events))
                for event, note in zip(events, notes, strict=True):
                    note.status, note.excerpt = notes[0].status, notes[0].excerpt
                    failures[event.id] = failure
            else:
                for event, note in zip(events, notes, strict=True):
                    reported: object = refused.get(event.id)
                    if reported is None:
                        failures[event.id] = None
                        continue
                    if not isinstance(reported, Exception):  # a plugin's slip: keep what it said
                        reported = RetryableError(str(reported))
                    failures[event.id] = self._failure(reported, event, note)
            # -- circuit: the batch is one attempt (see the docstring) --
            held = False
            judged = list(failures.values())
            retryable = [f for f in judged if f is not None and not f.permanent]
            if len(retryable) == len(judged):
                first = retryable[0]
                held = await self.gate.failed(
                    todo[0], error=first.error, retry_after=first.retry_after
                )
            else:
                for delivery, judgement in zip(todo, judged, strict=True):
                    if judgement is None:
                        await self.gate.succeeded(delivery)
                    elif judgement.permanent:
                        await self.gate.answered(delivery)
            # -- one moment for the batch: its retries fall due together (jitter aside) and
            # travel in one batch again, not split by the microseconds between their records
            now = datetime.now(UTC)
            for delivery, event, note in zip(todo, events, notes, strict=True):
                judged_one = self._judge(
                    delivery, event, note, failures[event.id], held=held, now=now
                )
                outcome.add(judged_one)
        await self._record(outcome, deliveries, record_by)

    def _unattempted(self, delivery: Delivery) -> _Outcome | None:
        """The outcome of a delivery not to attempt (its workers keep dying; the circuit opened
        since the claim), or None to attempt it."""
        policy = self.spec.delivery
        event = delivery.event
        if delivery.lost and delivery.attempts >= policy.max_attempts:
            # its workers died trying it (it may be what kills them): never try it again
            times = "time" if delivery.lost == 1 else "times"
            reason = (
                f"gave up after {delivery.attempts} attempts: "
                f"worker lost {delivery.lost} {times} during delivery"
            )
            log.error("sink %s: event %s dead-lettered: %s", self.name, event.id, reason)
            self.counted["dead"].inc()
            self.gate.dead_lettered(event, reason)  # operator events (eventrouter.circuit)
            # no attempt made: nothing joins the history
            return _Outcome(
                [
                    Settlement(
                        delivery=delivery, state=DeliveryState.DEAD, error=reason, counted=False
                    )
                ],
                [("event_dead_lettered", {"event": event, "reason": reason})],
            )
        if not self.gate.may_attempt(delivery):  # circuit opened since the claim (circuit.py)
            return _Outcome(
                [
                    Settlement(
                        delivery=delivery,
                        state=DeliveryState.PENDING,
                        at=datetime.now(UTC),
                        error=NOT_ATTEMPTED,
                        counted=False,
                    )
                ]
            )
        return None

    def _failure(
        self, exc: BaseException, event: Event, history: _AttemptNote, *, batch: int = 0
    ) -> _Failure:
        """What an exception from ``deliver`` (or ``deliver_batch``, or what it reported for one
        event) means: the error to keep (masked), permanent or not, the Retry-After."""
        retry_after: float | None = None
        permanent = False
        if isinstance(exc, PermanentError):
            error, permanent = exc.message, True
            history.answered(exc, self.dispatcher.redactor)
        elif isinstance(exc, RetryableError):
            error, retry_after = exc.message, exc.retry_after
            history.answered(exc, self.dispatcher.redactor)
        elif isinstance(exc, TimeoutError):
            error = f"timed out after {self.spec.delivery.timeout:g}s"
        else:
            what = f"a batch of {batch} events" if batch else event.id
            log.error(
                "sink %s raised an unexpected error delivering %s",
                self.name,
                what,
                exc_info=exc,
            )
            error = f"{type(exc).__name__}: {exc}"
        error = self.dispatcher.redactor(error, cut=True)[:2000]  # masked before it is stored
        return _Failure(error, permanent=permanent, retry_after=retry_after)

    def _judge(
        self,
        delivery: Delivery,
        event: Event,
        history: _AttemptNote,
        failure: _Failure | None,
        *,
        held: bool,
        now: datetime,
    ) -> _Outcome:
        """The outcome of an attempt that ended ``now`` (one moment for a whole batch):
        delivered, retried, held back (not counted, due when the circuit closes) or
        dead-lettered; logged and counted in the metrics here."""
        policy = self.spec.delivery
        number = delivery.attempts + 1
        elapsed = time.monotonic() - history.started
        self.latency.observe(elapsed)
        if failure is None:
            self.counted["delivered"].inc()
            return _Outcome(
                [
                    Settlement(
                        delivery=delivery,
                        state=DeliveryState.DONE,
                        attempt=history.ended(AttemptOutcome.DONE),
                    )
                ],
                [("delivery_succeeded", {"event": event, "attempt": number, "duration": elapsed})],
            )
        error = failure.error
        if failure.permanent or (number >= policy.max_attempts and not held):
            reason = error if failure.permanent else f"gave up after {number} attempts: {error}"
            log.warning("sink %s: event %s dead-lettered: %s", self.name, event.id, reason)
            self.counted["dead"].inc()
            self.gate.dead_lettered(event, reason)  # operator events (eventrouter.circuit)
            dead = history.ended(AttemptOutcome.DEAD, error=error)
            return _Outcome(
                [
                    Settlement(
                        delivery=delivery, state=DeliveryState.DEAD, error=reason, attempt=dead
                    )
                ],
                [
                    (
                        "delivery_failed",
                        {"event": event, "attempt": number, "error": error, "retry_at": None},
                    ),
                    ("event_dead_lettered", {"event": event, "reason": reason}),
                ],
            )
        # held back: not counted, due again when the circuit closes (eventrouter.circuit)
        delay = 0.0 if held else self.delay(number, retry_after=failure.retry_after)
        retry_at = now + timedelta(seconds=delay)
        log.info(
            "sink %s: attempt %d for %s failed (%s); %s",
            self.name,
            number,
            event.id,
            error,
            "not counted: the circuit is open" if held else f"retry in {delay:.1f}s",
        )
        self.counted["retry"].inc()
        return _Outcome(
            [
                Settlement(
                    delivery=delivery,
                    state=DeliveryState.PENDING,
                    at=retry_at,
                    error=error,
                    counted=not held,
                    attempt=history.ended(AttemptOutcome.RETRY, error=error),
                )
            ],
            [
                (
                    "delivery_failed",
                    {"event": event, "attempt": number, "error": error, "retry_at": retry_at},
                )
            ],
        )

    async def _record(
        self, outcome: _Outcome, deliveries: list[Delivery], record_by: float
    ) -> None:
        """Record the outcomes in the store (one write), then tell the observers."""
        store = self.dispatcher.store
        if outcome.settlements:
            await self._record_outcome(
                lambda: store.settle(outcome.settlements), deliveries, record_by
            )
        pm, sink = self.dispatcher.pm, self.spec.sink
        for hook, arguments in outcome.notices:
            await notify_observers(pm, hook, sink=sink, **arguments)

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

    async def _record_outcome(
        self, write: Callable[[], Awaitable[None]], deliveries: list[Delivery], record_by: float
    ) -> None:
        """Record an outcome, trying again with a short backoff (a store blip) until shortly
        before the lease ends; after that the delivery is taken over and attempted again.

        A write that landed although its answer was lost is harmless to repeat: the store
        ignores an outcome for a claim that is no longer current.
        """
        delay = OUTCOME_WRITE_BACKOFF[0]
        tries = 0
        while True:
            tries += 1
            try:
                # a try may outlast the lease: an outcome for a claim taken over is ignored
                async with asyncio.timeout(max(1.0, record_by - time.monotonic())):
                    await write()
            except Exception as exc:  # noqa: BLE001 - retried, then logged
                error: Exception = exc
            else:
                if tries > 1:
                    log.info(
                        "sink %s: recorded the outcome for %s at try %d",
                        self.name,
                        _which(deliveries),
                        tries,
                    )
                return
            if time.monotonic() + delay >= record_by or self.dispatcher.stopped:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, OUTCOME_WRITE_BACKOFF[1])
        log.error(
            "sink %s: could not record the outcome for %s after %d tries (%s); attempted "
            "again when the lease ends",
            self.name,
            _which(deliveries),
            tries,
            str(error) or type(error).__name__,
        )


class SinkStartFailed(Exception):
    """A sink's ``start`` raised (a directory it cannot create, say): the process cannot deliver.

    The message names the sink's table and the error, secrets masked, for the command line.
    """


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
        operator: OperatorEvents | None = None,
    ) -> None:
        self.store = store
        self.pm = pm
        self.metrics = metrics
        self.redactor = redactor
        #: where eventrouter's own events about its sinks go (eventrouter.operator_events)
        self.operator = operator
        self.workers = {name: _SinkWorker(name, spec, self) for name, spec in sinks.items()}
        #: listens for work other processes queue (the store's wake-ups), when it can
        self.watcher: asyncio.Task[None] | None = None
        #: the grace period of ``stop`` has run out: outcomes are no longer retried
        self.stopped = False
        #: says in the store that this process delivers (issue 13)
        self.heartbeat: asyncio.Task[None] | None = None

    async def start(self, context: SinkContext) -> None:
        for name, worker in self.workers.items():
            try:
                await worker.spec.sink.start(context)
            except Exception as exc:
                message = self.redactor(str(exc) or type(exc).__name__)
                raise SinkStartFailed(
                    f"sinks.{name}: the {worker.spec.sink.type_name} sink cannot start: {message}"
                    f" (check [sinks.{name}] in the configuration)"
                ) from exc
        for name, worker in self.workers.items():
            worker.task = asyncio.create_task(worker.run(), name=f"sink-worker-{name}")
        if self.workers:
            self.watcher = asyncio.create_task(self._watch(), name="sink-worker-wakeups")
            self.heartbeat = asyncio.create_task(self._beat(), name="sink-worker-heartbeat")

    async def _beat(self) -> None:
        """Leave a heartbeat in the store every HEARTBEAT_INTERVAL while delivering."""
        me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        while True:
            try:
                await self.store.heartbeat(me, ttl=HEARTBEAT_INTERVAL * 3)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store may be briefly unavailable
                log.debug("could not leave a heartbeat: %s", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _watch(self) -> None:
        try:
            await self.store.watch(list(self.workers), lambda sink: self.notify((sink,)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("listening for queued work failed; workers poll instead")

    def notify(self, sinks: Iterable[str]) -> None:
        for name in sinks:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wakeup.set()

    async def stop(self, *, grace: float) -> None:
        """Stop claiming, let running attempts finish (up to ``grace`` seconds), close the sinks."""
        for worker in self.workers.values():
            worker.halt.set()
            worker.wakeup.set()
        if self.watcher is not None:
            await cancel_and_wait(self.watcher)
        if self.heartbeat is not None:
            await cancel_and_wait(self.heartbeat)
        loops = [w.task for w in self.workers.values() if w.task is not None]
        await asyncio.gather(*loops, return_exceptions=True)
        running = [task for worker in self.workers.values() for task in worker.inflight]
        if running:
            log.info("waiting up to %.0fs for %d delivery attempts to finish", grace, len(running))
            _, unfinished = await asyncio.wait(running, timeout=grace)
            self.stopped = True
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.warning(
                    "%d delivery attempts cut short; they will be retried after restart",
                    len(unfinished),
                )
                await asyncio.gather(*(cancel_and_wait(task) for task in unfinished))
        if self.operator is not None:
            await self.operator.close()  # the dead letters summarised so far
        for worker in self.workers.values():
            try:
                await worker.spec.sink.close()
            except Exception:
                log.exception("sink %s failed to close", worker.name)


def event_for_log(event: Event) -> dict[str, str]:
    """The fields of an event that are safe and useful in a log line."""
    return {"er_event_id": event.id, "er_source": event.source, "er_type": event.type}
