"""eventrouter's own events about its sinks, stored and routed like any other event.

Types: ``eventrouter.sink.circuit_opened``, ``eventrouter.sink.circuit_closed``,
``eventrouter.sink.paused``, ``eventrouter.sink.resumed`` and
``eventrouter.delivery.dead_lettered``; the source is ``eventrouter``. The sink, the reason and
the sink's counts are in ``data.attributes`` (and ``raw``). Only routes that name the source
``eventrouter`` in ``sources`` take them (a ``*`` does not, so a config written before them
does not start sending them anywhere), and an event about a sink never goes to that sink.
One that no route takes is logged only, not stored.

One event per sink per state change: only the worker whose write changed the sink's record
emits it, and its idempotency key (the record's version) de-duplicates the rest. Dead letters
are summarised: one event per sink per ``window`` with their count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attrs import define, field

from eventrouter.errors import PayloadError, StoreUnavailable
from eventrouter.events import Event, EventData, new_event_id

if TYPE_CHECKING:
    from eventrouter.circuit import SinkControl
    from eventrouter.config import Route
    from eventrouter.store.base import Store

__all__ = ["OPERATOR_SOURCE", "OperatorEvents"]

log = logging.getLogger("eventrouter.operator")

#: the source name of eventrouter's own events (no configured source may take it)
OPERATOR_SOURCE = "eventrouter"
#: dead letters of one sink within this many seconds make one event
DEAD_LETTER_WINDOW = 60.0


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


@define
class _DeadLetters:
    count: int = 0
    reasons: dict[str, int] = field(factory=dict)
    event_ids: list[str] = field(factory=list)


class OperatorEvents:
    """Builds, routes and stores operator events; ``notify`` wakes the sinks' workers."""

    def __init__(
        self,
        *,
        routes: Sequence[Route],
        store: Store,
        notify: Callable[[Iterable[str]], None],
        window: float = DEAD_LETTER_WINDOW,
    ) -> None:
        self.routes = [route for route in routes if OPERATOR_SOURCE in route.sources]
        self.store = store
        self.notify = notify
        self.window = window
        self._dead: dict[str, _DeadLetters] = {}
        self._flush: asyncio.Task[None] | None = None

    # -- state changes ---------------------------------------------------------------------

    async def circuit_opened(self, sink: str, control: SinkControl) -> None:
        await self.emit(
            "eventrouter.sink.circuit_opened",
            sink,
            key=f"{control.version}",
            reason=control.last_error or "",
            state=control.state.value,
            failures=control.failures,
            opened_at=_iso(control.opened_at),
            next_probe_at=_iso(control.probe_at),
        )

    async def circuit_closed(self, sink: str, before: SinkControl, after: SinkControl) -> None:
        now = datetime.now(UTC).timestamp()
        await self.emit(
            "eventrouter.sink.circuit_closed",
            sink,
            key=f"{after.version}",
            reason=f"a delivery succeeded after {before.probes} failed probes",
            state=after.state.value,
            opened_at=_iso(before.opened_at),
            open_seconds=round(now - before.opened_at, 1) if before.opened_at else None,
            probes_failed=before.probes,
            last_error=before.last_error,
        )

    async def paused(self, sink: str, control: SinkControl) -> None:
        await self.emit(
            "eventrouter.sink.paused",
            sink,
            key=f"{control.version}",
            reason=control.reason or "paused by an operator",
            paused_at=_iso(control.paused_at),
        )

    async def resumed(self, sink: str, control: SinkControl) -> None:
        await self.emit(
            "eventrouter.sink.resumed",
            sink,
            key=f"{control.version}",
            reason=control.reason or "resumed by an operator",
        )

    # -- dead letters, summarised ----------------------------------------------------------

    def dead_lettered(self, sink: str, event: Event, reason: str) -> None:
        """Count a dead letter; the window's summary goes out when the window ends."""
        if event.source == OPERATOR_SOURCE:
            return  # a dead operator event is not news worth another event (no loops)
        letters = self._dead.setdefault(sink, _DeadLetters())
        letters.count += 1
        letters.reasons[reason] = letters.reasons.get(reason, 0) + 1
        if len(letters.event_ids) < 10:
            letters.event_ids.append(event.id)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._after_window(), name="operator-dead-letters")

    async def _after_window(self) -> None:
        await asyncio.sleep(self.window)
        await self.flush()

    async def flush(self) -> None:
        """Emit the summaries collected so far (one per sink)."""
        collected, self._dead = self._dead, {}
        for sink, letters in collected.items():
            top = max(letters.reasons.items(), key=lambda item: item[1])[0]
            await self.emit(
                "eventrouter.delivery.dead_lettered",
                sink,
                key=new_event_id(),
                reason=top,
                dead_lettered=letters.count,
                reasons=dict(sorted(letters.reasons.items(), key=lambda item: -item[1])[:5]),
                event_ids=letters.event_ids,
                window_seconds=self.window,
            )

    async def close(self) -> None:
        """Emit what is collected, now (shutting down)."""
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush
        await self.flush()

    # -- emitting --------------------------------------------------------------------------

    async def emit(self, type_: str, sink: str, *, key: str, **attributes: Any) -> None:
        """Store one operator event about ``sink`` for the routes that want it; never raises."""
        try:
            depth = (await self.store.queue_depth()).get(sink, {})
        except StoreUnavailable:
            depth = {}
        data = {
            "sink": sink,
            **attributes,
            "pending": depth.get("pending", 0),
            "inflight": depth.get("inflight", 0),
            "dead": depth.get("dead", 0),
        }
        now = datetime.now(UTC)
        event = Event(
            id=new_event_id(),
            source=OPERATOR_SOURCE,
            type=type_,
            time=now,
            provider=OPERATOR_SOURCE,
            provider_type=type_,
            idempotency_key=f"{type_}:{sink}:{key}",
            received_at=now,
            data=EventData(attributes=data),
            raw=data,
            subject=sink,
        )
        as_dict = event.to_dict() if any(route.filter for route in self.routes) else None
        chosen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(OPERATOR_SOURCE, type_, as_dict):
                chosen.update(dict.fromkeys(name for name in route.sinks if name != sink))
        if not chosen:
            # nobody routes them: the log line says it all, the store is not filled with them
            log.info("operator event %s about sink %s: %s", type_, sink, data.get("reason", ""))
            return
        try:
            result = await self.store.ingest(event, list(chosen))
        except (StoreUnavailable, PayloadError) as exc:
            log.warning("cannot store operator event %s about sink %s: %s", type_, sink, exc)
            return
        if result.accepted:
            log.info("operator event %s about sink %s for %s", type_, sink, list(chosen) or "-")
            self.notify(chosen)
