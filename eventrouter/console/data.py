"""What the console shows, as plain JSON-ready dicts: each page renders one, and its JSON twin
under ``/api`` returns the same one (datasette's model: the pages and the API cannot drift).

Nothing here renders a secret: events are shown as :meth:`Event.redacted` gives them (the
sensitive fields masked) and every text from the store passes the config's Redactor.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from eventrouter.config import Config
from eventrouter.console.traffic import Traffic
from eventrouter.metrics import Metrics
from eventrouter.query import (
    FILTER_NAMES,
    MAX_LIMIT,
    BulkAction,
    EventFilter,
    EventPage,
    PageRequest,
    QueryError,
    delivery_plan,
    event_with_attempts,
    find_events,
    run_bulk,
    timeline,
)
from eventrouter.redact import Redactor
from eventrouter.store import DeadLetter, Store, StoredEvent
from eventrouter.store.base import Attempt, DeliveryRecord

__all__ = [
    "ListingReader",
    "config_sinks",
    "config_sources",
    "dead_letter_groups",
    "event_detail",
    "event_query",
    "events_page",
    "overview",
    "replay_event",
    "retry_dead_letters",
    "retry_plan",
    "timeline_page",
]

log = logging.getLogger("eventrouter.console")

_DIGITS = re.compile(r"\d+")

#: the most dead letters read to group them (the groups say when there are more)
DEAD_LETTER_SCAN = 10_000

#: the events list's parameters: the query layer's filters, then where a page starts and its size
EVENT_PARAMETERS = (*FILTER_NAMES, "cursor", "limit")


#: a function reading one page of a list of events (the events list, a timeline)
ListingReader = Callable[[Store, Mapping[str, str], Redactor], Awaitable[dict[str, Any]]]


def _moment(name: str, text: str | None) -> datetime | None:
    """A time from a form or a query string; one without a zone (a datetime-local field) is UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            name, f"{text!r} is not a time (e.g. 2026-01-31T10:00 or ...+00:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _page_request(params: Mapping[str, str]) -> PageRequest:
    limit_text = params.get("limit") or "50"
    if not limit_text.isdigit():
        raise QueryError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    page = PageRequest(limit=int(limit_text), cursor=params.get("cursor") or None)
    page.decoded()  # a bad limit or cursor is refused before the store is asked
    return page


def _refuse_unknown(params: Mapping[str, str], known: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter (known: {', '.join(known)})")


def event_filter(params: Mapping[str, str]) -> EventFilter:
    """The query layer's filter from parameters named as its fields (QueryError: wrong)."""
    plain = {
        name: params.get(name) or None for name in FILTER_NAMES if name not in ("since", "until")
    }
    return EventFilter.build(
        **plain,
        since=_moment("since", params.get("since")),
        until=_moment("until", params.get("until")),
    )


def event_query(params: Mapping[str, str]) -> tuple[EventFilter, PageRequest]:
    """The query layer's filter and page from the events list's parameters (QueryError: wrong)."""
    _refuse_unknown(params, EVENT_PARAMETERS)
    return event_filter(params), _page_request(params)


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


async def events_page(store: Store, params: Mapping[str, str], redact: Redactor) -> dict[str, Any]:
    """One page of the events matching ``params``, newest first, and the next page's cursor."""
    where, page = event_query(params)
    found = await find_events(store, where, page)
    return _page_dict(params, FILTER_NAMES, found, redact)


def _page_dict(
    params: Mapping[str, str], names: Sequence[str], found: EventPage, redact: Redactor
) -> dict[str, Any]:
    return {
        "filters": {name: params[name] for name in names if params.get(name)},
        "events": [_summary(stored, redact) for stored in found.events],
        "next_cursor": found.next_cursor,
    }


async def timeline_page(
    store: Store, params: Mapping[str, str], redact: Redactor
) -> dict[str, Any]:
    """Everything known about one contact or one campaign, across providers, newest first."""
    _refuse_unknown(params, ("contact", "campaign", "cursor", "limit"))
    found = await timeline(
        store,
        contact=params.get("contact") or None,
        campaign_id=params.get("campaign") or None,
        page=_page_request(params),
    )
    return _page_dict(params, ("contact", "campaign"), found, redact)


def _attempt(attempt: Attempt, redact: Redactor) -> dict[str, Any]:
    """An attempt as the store lists it, its texts masked once more with this config's secrets."""
    shown = attempt.to_dict()
    del shown["sink"]  # shown under its delivery
    for text in ("error", "response_excerpt"):
        if shown[text]:
            shown[text] = redact(shown[text])
    return shown


def _redacted_json(value: Any, redact: Redactor) -> Any:
    """``value`` with every configured secret masked in every string (keys included)."""
    return json.loads(redact(json.dumps(value)))


async def event_detail(
    store: Store, event_id: str, redact: Redactor, sinks: Sequence[str]
) -> dict[str, Any] | None:
    """One event: its normalised parts, the raw payload and its deliveries (None: no such id)."""
    found = await event_with_attempts(store, event_id)
    if found is None:
        return None
    stored, attempts = found
    event = stored.event.redacted()
    whole = _redacted_json(event.to_dict(), redact)
    summary = _summary(stored, redact)
    for delivery in summary["deliveries"]:
        delivery["history"] = [_attempt(a, redact) for a in attempts if a.sink == delivery["sink"]]
    return {
        **summary,
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
    # grouped by the raw reason first, then each group's reason masked once (masking every
    # letter's reason was most of the page's time); reasons that mask alike join one group
    raw: dict[tuple[str, str], list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        raw[(letter.sink, _reason(letter))].append(letter)
    groups: dict[tuple[str, str], list[DeadLetter]] = defaultdict(list)
    for (group_sink, reason), members in raw.items():
        groups[(group_sink, redact(reason))].extend(members)
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


async def retry_plan(store: Store, where: EventFilter, sinks: Sequence[str]) -> dict[str, Any]:
    """How many dead letters of the events matching ``where`` retrying ``sinks`` would queue
    again, by sink (the query layer's plan, as ``eventrouter dlq retry --dry-run`` shows it)."""
    # the action's own filter (dead letters, received until now), as the run will walk it
    bounded = BulkAction.start("dlq_retry", where, sinks=sinks).where
    plan = await delivery_plan(store, bounded, sinks=sinks)
    return {"by_sink": {sink: plan.by_sink.get(sink, 0) for sink in sinks}, "total": plan.total}


def _action(actor: str) -> str:
    """A bulk action's id, recorded on each delivery it queues: who, and which click."""
    return f"{actor}:{secrets.token_hex(6)}"


async def retry_dead_letters(
    store: Store, where: EventFilter, sinks: Sequence[str], *, actor: str
) -> dict[str, Any]:
    """Queue the dead letters of the events matching ``where`` for delivery again, one bulk
    action per sink (the query layer's, as ``eventrouter dlq retry`` runs it); how many, by sink."""
    done, actions = {}, {}
    for sink in sinks:
        action = BulkAction.start("dlq_retry", where, sinks=[sink], by=actor)
        done[sink] = await run_bulk(store, action)
        actions[sink] = action.id
        log.info("%s retried %d dead letters of %s (action %s)", actor, done[sink], sink, action.id)
    return {"by_sink": done, "total": sum(done.values()), "actions": actions}


async def replay_event(
    store: Store, event_id: str, sinks: Sequence[str], configured: Sequence[str], *, actor: str
) -> dict[str, Any] | None:
    """Deliver an event again to ``sinks`` (default: its own, still configured); None: no event."""
    stored = await store.get_event(event_id)
    if stored is None:
        return None
    unknown = [sink for sink in sinks if sink not in configured]
    if unknown:
        raise QueryError(
            "sink", f"no sink named {unknown[0]!r} (configured: {', '.join(configured)})"
        )
    chosen = list(sinks) or [r.sink for r in stored.deliveries if r.sink in configured]
    if not chosen:
        raise QueryError("sink", "this event had no sinks: name one")
    queued = await store.replay(event_id, chosen, action=_action(actor))
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


def _delivery_stats(metrics: Metrics) -> dict[str, dict[str, Any]]:
    """Per sink since the process started: attempts by outcome and the p95 attempt time (the
    histogram's bucket bound that 95% of attempts stay under)."""
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"outcomes": {}, "p95": None})
    for family in metrics.deliveries.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                stats[sample.labels["sink"]]["outcomes"][sample.labels["outcome"]] = sample.value
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for family in metrics.delivery_latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[sample.labels["sink"]].append((float(sample.labels["le"]), sample.value))
    for sink, bounds in buckets.items():
        bounds.sort()
        total = bounds[-1][1] if bounds else 0
        if total:
            stats[sink]["p95"] = next(le for le, count in bounds if count >= 0.95 * total)
    return stats


def _rate(outcomes: Mapping[str, float]) -> float | None:
    attempts = sum(outcomes.values())
    return round(outcomes.get("delivered", 0) / attempts, 4) if attempts else None


async def overview(
    store: Store,
    config: Config,
    redact: Redactor,
    *,
    metrics: Metrics | None = None,
    traffic: Traffic | None = None,
) -> dict[str, Any]:
    """Per sink its queue, success rate, p95 attempt time and last dead letter's reason; per
    source its requests by outcome over the last hour and day; the last hour's traffic."""
    depth = await store.queue_depth()
    stats = _delivery_stats(metrics) if metrics is not None else {}
    hour = traffic.window(3600) if traffic is not None else {}
    day = traffic.window(86400) if traffic is not None else {}
    sinks = []
    for name in config.sinks:
        last = await store.list_dead_letters(sink=name, limit=1)
        sink_stats = stats.get(name, {"outcomes": {}, "p95": None})
        sinks.append(
            {
                "name": name,
                "pending": depth.get(name, {}).get("pending", 0),
                "inflight": depth.get(name, {}).get("inflight", 0),
                "dead": depth.get(name, {}).get("dead", 0),
                "success_rate": _rate(sink_stats["outcomes"]),
                "p95_seconds": sink_stats["p95"],
                "last_error": redact(last[0].reason) if last else None,
                "last_error_at": _time(last[0].dead_at) if last else None,
            }
        )
    return {
        "store": {
            "backend": config.store.backend,
            "pending_writes": store.pending_writes,
            # a delivering process (serve, worker) says it is alive; None: none lately
            "last_worker_heartbeat": _time(await store.last_heartbeat()),
        },
        "requests_counted": traffic is not None,
        "sources": [
            {
                **source,
                "last_hour": hour.get(source["name"], {}),
                "last_day": day.get(source["name"], {}),
            }
            for source in config_sources(config)
        ],
        "sinks": sinks,
        "accepted_per_minute": traffic.per_minute() if traffic is not None else [],
    }
