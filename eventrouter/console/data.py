"""What the console shows, as plain JSON-ready dicts: each page renders one, and its JSON twin
under ``/api`` returns the same one (datasette's model: the pages and the API cannot drift).

Nothing here renders a secret: events are shown as :meth:`Event.redacted` gives them (the
sensitive fields masked) and every text from the store passes the config's Redactor.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from eventrouter.config import Config
from eventrouter.metrics import Metrics
from eventrouter.redact import Redactor
from eventrouter.store import DeadLetter, Store, StoredEvent
from eventrouter.store.base import DeliveryRecord

__all__ = [
    "EventQuery",
    "QueryProblem",
    "config_sinks",
    "config_sources",
    "dead_letter_groups",
    "event_detail",
    "events_page",
    "overview",
    "replay_event",
    "retry_dead_letters",
    "retry_plan",
]

log = logging.getLogger("eventrouter.console")

_DIGITS = re.compile(r"\d+")

#: the most dead letters read to group them (the groups say when there are more)
DEAD_LETTER_SCAN = 10_000
MAX_LIMIT = 1000


class QueryProblem(ValueError):
    """A parameter is wrong: ``field`` names it (the API answers 400, the page shows it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@frozen(kw_only=True)
class EventQuery:
    """The events list's parameters, as a form or a query string gives them."""

    source: str | None = None
    type: str | None = None
    limit: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> EventQuery:
        known = {"source", "type", "limit"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise QueryProblem(unknown[0], f"unknown filter (known: {', '.join(sorted(known))})")
        limit_text = params.get("limit") or "50"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise QueryProblem("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        return cls(
            source=params.get("source") or None,
            type=params.get("type") or None,
            limit=int(limit_text),
        )

    def as_params(self) -> dict[str, str]:
        return {
            name: str(value)
            for name, value in (("source", self.source), ("type", self.type))
            if value
        }


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _delivery(record: DeliveryRecord, redact: Redactor) -> dict[str, Any]:
    return {
        "sink": record.sink,
        "state": record.state.value,
        "attempts": record.attempts,
        "next_attempt_at": _time(record.next_attempt_at),
        "last_error": redact(record.last_error) if record.last_error else None,
    }


def _summary(stored: StoredEvent, redact: Redactor) -> dict[str, Any]:
    event = stored.event.redacted()
    contact = event.data.contact
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "provider_type": event.provider_type,
        "received_at": _time(event.received_at),
        "contact": (contact.phone or contact.email) if contact else None,
        "campaign": event.data.campaign.id if event.data.campaign else None,
        "deliveries": [_delivery(record, redact) for record in stored.deliveries],
    }


async def events_page(store: Store, query: EventQuery, redact: Redactor) -> dict[str, Any]:
    """The newest events matching ``query``."""
    found = await store.list_events(limit=query.limit, source=query.source, type=query.type)
    return {
        "filters": query.as_params(),
        "events": [_summary(stored, redact) for stored in found],
    }


def _redacted_json(value: Any, redact: Redactor) -> Any:
    """``value`` with every configured secret masked in every string (keys included)."""
    return json.loads(redact(json.dumps(value)))


async def event_detail(
    store: Store, event_id: str, redact: Redactor, sinks: Sequence[str]
) -> dict[str, Any] | None:
    """One event: its normalised parts, the raw payload and its deliveries (None: no such id)."""
    stored = await store.get_event(event_id)
    if stored is None:
        return None
    event = stored.event.redacted()
    whole = _redacted_json(event.to_dict(), redact)
    return {
        **_summary(stored, redact),
        "subject": event.subject,
        "idempotency_key": redact(event.idempotency_key),
        "time": _time(event.time),
        "data": whole["data"],
        "raw": whole["raw"],
        "raw_pretty": json.dumps(whole["raw"], indent=2, ensure_ascii=False, sort_keys=True),
        "sensitive": list(stored.event.sensitive),
        "replay_sinks": list(sinks),
    }


def _reason(letter: DeadLetter) -> str:
    """The reason's first line with its numbers as ``#``: letters of one cause differ in them
    (attempt counts, ids, durations), and the group shows one real reason as its example."""
    first = letter.reason.splitlines()[0][:200] if letter.reason else "(no reason recorded)"
    return _DIGITS.sub("#", first)


async def dead_letter_groups(
    store: Store, redact: Redactor, *, sink: str | None = None
) -> dict[str, Any]:
    """Dead letters grouped by sink and reason, with a few of each group's events."""
    letters = await store.list_dead_letters(sink=sink, limit=DEAD_LETTER_SCAN)
    groups: dict[tuple[str, str], list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        groups[(letter.sink, redact(_reason(letter)))].append(letter)
    return {
        "sink": sink,
        "total": len(letters),
        "truncated": len(letters) >= DEAD_LETTER_SCAN,
        "groups": [
            {
                "sink": group_sink,
                "reason": reason,
                "count": len(members),
                "example": redact(members[0].reason),
                "last_dead_at": _time(max(m.dead_at for m in members)),
                "events": [
                    {
                        "id": m.event_id,
                        "source": m.source,
                        "type": m.type,
                        "attempts": m.attempts,
                        "dead_at": _time(m.dead_at),
                    }
                    for m in members[:20]
                ],
            }
            for (group_sink, reason), members in sorted(
                groups.items(), key=lambda item: (item[0][0], -len(item[1]))
            )
        ],
    }


async def retry_plan(store: Store, sinks: Sequence[str]) -> dict[str, Any]:
    """How many dead letters retrying ``sinks`` would queue again, by sink."""
    counts: Counter[str] = Counter()
    for sink in sinks:
        counts[sink] = len(await store.list_dead_letters(sink=sink, limit=DEAD_LETTER_SCAN))
    return {"by_sink": dict(counts), "total": sum(counts.values())}


async def retry_dead_letters(store: Store, sinks: Sequence[str], *, actor: str) -> dict[str, Any]:
    """Queue the dead letters of ``sinks`` for delivery again; how many, by sink."""
    done = {sink: await store.retry_dead_letters(sink=sink) for sink in sinks}
    log.info("%s retried %d dead letters (%s)", actor, sum(done.values()), ", ".join(sinks))
    return {"by_sink": done, "total": sum(done.values())}


async def replay_event(
    store: Store, event_id: str, sinks: Sequence[str], configured: Sequence[str], *, actor: str
) -> dict[str, Any] | None:
    """Deliver an event again to ``sinks`` (default: its own, still configured); None: no event."""
    stored = await store.get_event(event_id)
    if stored is None:
        return None
    unknown = [sink for sink in sinks if sink not in configured]
    if unknown:
        raise QueryProblem(
            "sink", f"no sink named {unknown[0]!r} (configured: {', '.join(configured)})"
        )
    chosen = list(sinks) or [r.sink for r in stored.deliveries if r.sink in configured]
    if not chosen:
        raise QueryProblem("sink", "this event had no sinks: name one")
    queued = await store.replay(event_id, chosen)
    log.info("%s replayed event %s to %s", actor, event_id, ", ".join(chosen))
    return {"event_id": event_id, "sinks": chosen, "queued": queued}


def config_sources(config: Config) -> list[dict[str, Any]]:
    """Each source, its type and the URL to give the provider (never an option's value)."""
    base = config.console.public_url or f"http://{config.server.host}:{config.server.port}"
    return [
        {
            "name": name,
            "type": source.type_name,
            "path": config.source_paths[name],
            "url": base.rstrip("/") + config.source_paths[name],
        }
        for name, source in config.sources.items()
    ]


def config_sinks(config: Config) -> list[dict[str, Any]]:
    """Each sink, its type and delivery policy (never an option's value)."""
    return [
        {
            "name": name,
            "type": spec.sink.type_name,
            "concurrency": spec.delivery.concurrency,
            "retry_schedule": [float(delay) for delay in spec.delivery.retry_schedule],
            "max_attempts": spec.delivery.max_attempts,
            "timeout": float(spec.delivery.timeout),
            "include_sensitive": spec.delivery.include_sensitive,
        }
        for name, spec in config.sinks.items()
    ]


def config_routes(config: Config) -> list[dict[str, Any]]:
    return [
        {
            "sources": route.sources,
            "types": route.types,
            "filter": route.filter,
            "sinks": route.sinks,
        }
        for route in config.routes
    ]


def _source_outcomes(metrics: Metrics | None) -> dict[str, dict[str, float]]:
    """Requests per source and outcome since this process started (None: another process)."""
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    if metrics is None:
        return counts
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                counts[labels["source"]][labels["outcome"]] = sample.value
    return counts


async def overview(store: Store, config: Config, metrics: Metrics | None) -> dict[str, Any]:
    """Per sink its queue (pending, in flight, dead); per source its requests by outcome."""
    depth = await store.queue_depth()
    outcomes = _source_outcomes(metrics)
    return {
        "store": {"backend": config.store.backend, "pending_writes": store.pending_writes},
        "requests_counted": metrics is not None,
        "sources": [
            {**source, "requests": outcomes.get(source["name"], {})}
            for source in config_sources(config)
        ],
        "sinks": [
            {
                "name": name,
                "pending": depth.get(name, {}).get("pending", 0),
                "inflight": depth.get(name, {}).get("inflight", 0),
                "dead": depth.get(name, {}).get("dead", 0),
            }
            for name in config.sinks
        ],
    }
