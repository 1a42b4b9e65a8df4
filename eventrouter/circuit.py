"""A sink that is down waits instead of burning its retries: circuit breaker, pause, rate limit.

Each sink has one :class:`SinkControl` record in the store (shared by every worker of the sink
on Redis), changed only by compare-and-set on its ``version``. A worker asks its
:class:`SinkGate` before claiming:

- *paused* (``eventrouter sinks pause``): nothing is claimed; everything stays pending;
- *open* (``circuit_failures`` retryable failures in a row): nothing is claimed until the next
  probe is due (``circuit_probes``: 30 s, 1 min, 2 min, then every 5 min by default);
- *half-open*: one worker has taken the probe, a single delivery; its success closes the circuit
  and the backlog drains, oldest first, at the sink's concurrency and rate limit;
- *held* until a ``Retry-After`` the sink sent with a retryable error (a 429) has passed;
- ``rate_limit``: one permit per claim, from the store's limiter.

A failure while the circuit is not closed (the probe's, or an attempt that began before it
opened) is put back without counting the attempt, so no retry schedule advances during an
outage. Permanent errors (the event's fault) neither count nor reset the failures.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import attrs
from attrs import frozen

from eventrouter.converter import converter
from eventrouter.errors import StoreUnavailable

if TYPE_CHECKING:
    from eventrouter.config import DeliveryPolicy
    from eventrouter.events import Event
    from eventrouter.metrics import Metrics
    from eventrouter.operator_events import OperatorEvents
    from eventrouter.store.base import Attempt, Delivery, Store

__all__ = [
    "DEFAULT_CIRCUIT_FAILURES",
    "DEFAULT_PROBE_SCHEDULE",
    "Admission",
    "CircuitState",
    "ControlBusy",
    "SinkControl",
    "SinkGate",
    "observe",
    "update_control",
]

log = logging.getLogger("eventrouter.circuit")

#: retryable failures in a row that open a sink's circuit
DEFAULT_CIRCUIT_FAILURES = 10
#: waits between probes while the circuit stays open; the last one repeats
DEFAULT_PROBE_SCHEDULE = (30, 60, 120, 300)
#: a worker held back (paused, open, held) looks at its record at least this often: another
#: process may resume the sink or close the circuit (on Redis that also wakes it at once)
CONTROL_POLL = 1.0
#: the value of ``eventrouter_sink_circuit_state`` for each state
CIRCUIT_GAUGE = {"closed": 0, "half_open": 1, "open": 2}
#: attempts within ``circuit_window`` before ``circuit_failure_ratio`` can open the circuit
RATIO_MIN_ATTEMPTS = 20
#: compare-and-set rounds before a change is given up (another worker keeps winning)
CAS_TRIES = 20


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@frozen
class SinkControl:
    """The shared state of one sink; times are Unix seconds (every process shares them)."""

    #: bumped by every write; a write based on an older version is refused
    version: int = 0
    state: CircuitState = CircuitState.CLOSED
    #: retryable failures in a row (closed), reset by a success
    failures: int = 0
    opened_at: float | None = None
    #: open: when the next probe is due; half-open: when the probe's worker counts as lost
    probe_at: float | None = None
    #: probes failed since the circuit opened (picks the next interval)
    probes: int = 0
    last_error: str | None = None
    paused: bool = False
    paused_at: float | None = None
    #: why it was paused (``--reason``)
    reason: str | None = None
    #: no claims before this (a Retry-After the sink sent)
    hold_until: float = 0.0

    def to_json(self) -> str:
        return json.dumps(converter.unstructure(self))

    @classmethod
    def from_json(cls, text: str, *, version: int) -> SinkControl:
        return attrs.evolve(converter.structure(json.loads(text), cls), version=version)


@frozen
class Admission:
    """What a worker may claim now: up to ``limit`` (0: wait ``wait`` seconds first)."""

    limit: int
    wait: float = 0.0
    #: the claim (of one delivery) is the half-open probe
    probe: bool = False


def _probe_interval(policy: DeliveryPolicy, failed: int) -> float:
    schedule = policy.circuit_probes or (0.0,)
    return float(schedule[min(failed, len(schedule) - 1)])


class SinkGate:
    """One worker's view of its sink's :class:`SinkControl`: admits claims, records outcomes."""

    def __init__(
        self,
        name: str,
        policy: DeliveryPolicy,
        store: Store,
        *,
        operator: OperatorEvents | None = None,
        lease: float = 60.0,
    ) -> None:
        self.name = name
        self.policy = policy
        self.store = store
        self.operator = operator
        self.lease = lease
        #: event ids of this worker's probe deliveries in flight
        self.probes: set[str] = set()
        #: the record as this worker last read or wrote it
        self._seen: SinkControl | None = None
        #: whether the sink was paused when this worker last looked (None: not looked yet)
        self._paused: bool | None = None
        #: (monotonic time, succeeded) of this worker's recent attempts, for the failure ratio
        self._outcomes: deque[tuple[float, bool]] = deque()

    # -- before claiming -------------------------------------------------------------------

    async def admit(self, free: int) -> Admission:
        """How many deliveries the worker may claim now, or how long to wait."""
        try:
            return await self._admit(free)
        except StoreUnavailable:
            return Admission(limit=free)  # the claim fails too, and says so

    async def _admit(self, free: int) -> Admission:
        control = await self.store.get_control(self.name)
        await self._notice(control)
        now = time.time()
        if control.paused:
            return Admission(limit=0, wait=CONTROL_POLL)
        if control.hold_until > now:
            return Admission(limit=0, wait=min(control.hold_until - now, CONTROL_POLL))
        probe = False
        if control.state is not CircuitState.CLOSED:
            due = control.probe_at or 0.0
            if due > now:
                return Admission(limit=0, wait=min(due - now, CONTROL_POLL))
            taken = await self._update(lambda c: self._take_probe(c, time.time()))
            if taken is None:
                return Admission(limit=0, wait=0.05)  # another worker took it: look again
            free, probe = 1, True
        rate = self.policy.rate_limit
        if rate is not None:
            wait = await self.store.rate_permit(self.name, interval=rate.interval)
            if wait > 0:
                if probe:
                    await self._update(self._give_back_probe)
                return Admission(limit=0, wait=wait)
            free = 1
        return Admission(limit=free, probe=probe)

    def _take_probe(self, control: SinkControl, now: float) -> SinkControl | None:
        if control.paused or control.state is CircuitState.CLOSED:
            return None
        if (control.probe_at or 0.0) > now:
            return None
        return attrs.evolve(control, state=CircuitState.HALF_OPEN, probe_at=now + self.lease)

    def _give_back_probe(self, control: SinkControl) -> SinkControl | None:
        if control.state is not CircuitState.HALF_OPEN:
            return None
        return attrs.evolve(control, state=CircuitState.OPEN, probe_at=time.time())

    def may_attempt(self, delivery: Delivery) -> bool:
        """False when this worker has seen the circuit open (or the sink paused) since the
        claim: the delivery goes back untouched instead of meeting a sink known to be down."""
        seen = self._seen
        if seen is None or delivery.event.id in self.probes:
            return True
        return seen.state is CircuitState.CLOSED and not seen.paused

    async def claimed(self, admission: Admission, deliveries: list[Delivery]) -> None:
        """After the claim: remember the probe, or give the probe back when nothing was due."""
        if not admission.probe:
            return
        if deliveries:
            self.probes.update(d.event.id for d in deliveries)
        else:
            await self._update(self._give_back_probe)

    # -- after an attempt ------------------------------------------------------------------

    async def succeeded(self, delivery: Delivery) -> None:
        """The sink took a delivery (or answered it with a permanent error): it is up."""
        probe = self._end_probe(delivery)
        self._observe(ok=True)
        seen = self._seen
        quiet = seen is not None and seen.state is CircuitState.CLOSED and not seen.failures
        if quiet and not probe:
            return  # the common case: nothing to write, and no read either

        def close(control: SinkControl) -> SinkControl | None:
            if control.state is CircuitState.CLOSED:
                return attrs.evolve(control, failures=0) if control.failures else None
            return attrs.evolve(
                control,
                state=CircuitState.CLOSED,
                failures=0,
                opened_at=None,
                probe_at=None,
                probes=0,
            )

        changed = await self._update(close)
        if changed is None or changed[0].state is CircuitState.CLOSED:
            return
        before, after = changed
        log.info(
            "sink %s: circuit closed after %.0fs (%s succeeded)",
            self.name,
            time.time() - (before.opened_at or time.time()),
            "the probe" if probe else "a delivery",
        )
        if self.operator is not None:
            await self.operator.circuit_closed(self.name, before, after)

    async def answered(self, delivery: Delivery) -> None:
        """A permanent error: the event's fault, not the sink's. Only a probe learns from it."""
        if delivery.event.id in self.probes:
            await self.succeeded(delivery)

    async def failed(self, delivery: Delivery, *, error: str, retry_after: float | None) -> bool:
        """Record a retryable failure; True when the attempt must not count (circuit not closed).

        A ``Retry-After`` holds every claim of the sink until it has passed.
        """
        probe = self._end_probe(delivery)
        policy = self.policy
        threshold = policy.circuit_failures
        ratio = self._observe(ok=False)
        if not threshold and ratio is None and not retry_after and not probe:
            return False  # no breaker and nothing to hold: nothing to write

        def change(control: SinkControl) -> SinkControl | None:
            now = time.time()  # at each try: another worker's write may have come first
            hold = control.hold_until
            if retry_after is not None and retry_after > 0:
                hold = max(hold, now + min(retry_after, max(policy.retry_schedule, default=0.0)))
            if probe and control.state is not CircuitState.CLOSED:
                return attrs.evolve(
                    control,
                    state=CircuitState.OPEN,
                    probes=control.probes + 1,
                    probe_at=now + _probe_interval(policy, control.probes + 1),
                    last_error=error,
                    hold_until=hold,
                )
            if control.state is not CircuitState.CLOSED:
                # an attempt that began before the circuit opened: it changes nothing
                return (
                    attrs.evolve(control, hold_until=hold) if hold != control.hold_until else None
                )
            failures = control.failures + 1
            if (threshold and failures >= threshold) or ratio is not None:
                return attrs.evolve(
                    control,
                    state=CircuitState.OPEN,
                    failures=failures,
                    opened_at=now,
                    probes=0,
                    probe_at=now + _probe_interval(policy, 0),
                    last_error=error,
                    hold_until=hold,
                )
            return attrs.evolve(control, failures=failures, last_error=error, hold_until=hold)

        changed = await self._update(change)
        if changed is None:
            seen = self._seen
            return seen is not None and seen.state is not CircuitState.CLOSED
        before, after = changed
        if before.state is CircuitState.CLOSED and after.state is CircuitState.OPEN:
            self._outcomes.clear()
            why = (
                f"{after.failures} failures in a row"
                if threshold and after.failures >= threshold
                else f"{ratio:.0%} of the attempts within {policy.circuit_window:g}s failed"
            )
            log.warning(
                "sink %s: circuit opened after %s (%s); first probe in %gs",
                self.name,
                why,
                error,
                _probe_interval(policy, 0),
            )
            if self.operator is not None:
                await self.operator.circuit_opened(self.name, after)
            return False  # the failure that opened it counts, as the ones before it did
        if probe:
            log.info(
                "sink %s: probe failed (%s); next in %.1fs",
                self.name,
                error,
                (after.probe_at or time.time()) - time.time(),
            )
        return before.state is not CircuitState.CLOSED

    def dead_lettered(self, event: Event, reason: str) -> None:
        """Count a dead letter for the operator's summary."""
        if self.operator is not None:
            self.operator.dead_lettered(self.name, event, reason)

    def _observe(self, *, ok: bool) -> float | None:
        """Count an outcome; the failed share of the window when it opens the circuit."""
        policy = self.policy
        if not policy.circuit_failure_ratio:
            return None
        now = time.monotonic()
        outcomes = self._outcomes
        outcomes.append((now, ok))
        while outcomes and outcomes[0][0] < now - policy.circuit_window:
            outcomes.popleft()
        if len(outcomes) < RATIO_MIN_ATTEMPTS:
            return None
        failed = sum(1 for _, succeeded in outcomes if not succeeded) / len(outcomes)
        return failed if failed >= policy.circuit_failure_ratio else None

    def _end_probe(self, delivery: Delivery) -> bool:
        if delivery.event.id in self.probes:
            self.probes.discard(delivery.event.id)
            return True
        return False

    async def requeue(
        self,
        delivery: Delivery,
        *,
        at: datetime,
        error: str,
        held_back: bool,
        attempt: Attempt | None = None,
    ) -> None:
        """Make a failed delivery pending again at ``at``: counted, or, while the circuit is not
        closed (``held_back``: ``at`` is now), not counted (claimed when the circuit closes).
        Either way ``attempt`` joins the delivery's history."""
        if held_back:
            await self.store.release(delivery, at=at, error=error, attempt=attempt)
        else:
            await self.store.retry_later(delivery, at=at, error=error, attempt=attempt)

    # -- shared state ----------------------------------------------------------------------

    async def _update(
        self, change: Callable[[SinkControl], SinkControl | None]
    ) -> tuple[SinkControl, SinkControl] | None:
        """Apply ``change`` by compare-and-set: (the record before, after), or None when
        ``change`` left it as it was. Only the worker whose write won sees a transition."""
        try:
            current, new = await update_control(self.store, self.name, change)
        except (StoreUnavailable, ControlBusy) as exc:
            log.warning("sink %s: cannot update the circuit record: %s", self.name, exc)
            return None
        self._seen = new or current
        return None if new is None else (current, new)

    async def _notice(self, control: SinkControl) -> None:
        """Tell the operator about a pause or resume (``eventrouter sinks``, another process)."""
        self._seen = control
        before, self._paused = self._paused, control.paused
        if before is None or self.operator is None or before == control.paused:
            return
        if control.paused:
            await self.operator.paused(self.name, control)
        else:
            await self.operator.resumed(self.name, control)


async def observe(store: Store, sinks: Iterable[str], metrics: Metrics) -> None:
    """Set the circuit-state and paused-time gauges of ``sinks`` (for ``/metrics``)."""
    now = time.time()
    for sink in sinks:
        control = await store.get_control(sink)
        metrics.circuit_state.labels(sink).set(CIRCUIT_GAUGE[control.state])
        paused = now - control.paused_at if control.paused and control.paused_at else 0.0
        metrics.paused_seconds.labels(sink).set(paused)


class ControlBusy(Exception):
    """Other writers kept changing a sink's record: the change was given up."""


async def update_control(
    store: Store, sink: str, change: Callable[[SinkControl], SinkControl | None]
) -> tuple[SinkControl, SinkControl | None]:
    """Apply ``change`` to ``sink``'s record by compare-and-set, reading it again after a lost
    race: (the record read last, the record written, or None when ``change`` returned None)."""
    for _ in range(CAS_TRIES):
        current = await store.get_control(sink)
        new = change(current)
        if new is None:
            return current, None
        if await store.put_control(sink, new):
            return current, attrs.evolve(new, version=current.version + 1)
    raise ControlBusy(f"the record of sink {sink} kept changing; {CAS_TRIES} tries lost")
