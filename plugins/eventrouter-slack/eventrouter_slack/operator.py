"""eventrouter's own events about its sinks (``eventrouter.sink.*``, dead-letter summaries) in
words an on-call person acts on: what happened, whether anything is lost, what to run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventrouter import Event
from eventrouter_slack.mrkdwn import date, escape, truncate

__all__ = ["OPERATOR_DESCRIBERS", "OperatorSummary"]

#: (emoji, title, mrkdwn body, labelled facts): the fields of messages.Summary, in order
OperatorSummary = tuple[str, str, str, tuple[tuple[str, str], ...]]


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "a while"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _when(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return date(datetime.fromisoformat(value))
    except ValueError:
        return None


def _sink(event: Event) -> tuple[dict[str, Any], str]:
    attributes = event.data.attributes
    return attributes, escape(str(attributes.get("sink", event.subject or "?")))


def _counts(attributes: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return (
        ("Waiting", str(attributes.get("pending", 0))),
        ("Dead letters", str(attributes.get("dead", 0))),
    )


def _error(value: Any) -> tuple[tuple[str, str], ...]:
    return (("Last error", f"`{escape(truncate(str(value), 300))}`"),) if value else ()


def _opened(event: Event) -> OperatorSummary:
    attributes, sink = _sink(event)
    probe = _when(attributes.get("next_probe_at"))
    body = (
        f"After {attributes.get('failures', 'several')} failed attempts in a row, eventrouter "
        f"stopped delivering to *{sink}*. Nothing is lost: new events keep arriving and wait. "
        + (f"It tries a single delivery {probe}, then less and less often." if probe else "")
    )
    facts = (*_counts(attributes), *_error(attributes.get("reason")))
    return ":rotating_light:", f"Sink {sink} is down: deliveries on hold", body, facts


def _closed(event: Event) -> OperatorSummary:
    attributes, sink = _sink(event)
    body = (
        f"A delivery to *{sink}* succeeded after {_duration(attributes.get('open_seconds'))} "
        "on hold. The waiting events are being delivered, oldest first."
    )
    facts = (*_counts(attributes), *_error(attributes.get("last_error")))
    return ":white_check_mark:", f"Sink {sink} is back", body, facts


def _paused(event: Event) -> OperatorSummary:
    attributes, sink = _sink(event)
    reason = escape(str(attributes.get("reason", "")))
    body = (
        f"{reason}. Events for *{sink}* are kept until someone runs "
        f"`eventrouter sinks resume {sink}`."
    )
    return ":double_vertical_bar:", f"Sink {sink} paused", body, _counts(attributes)


def _resumed(event: Event) -> OperatorSummary:
    attributes, sink = _sink(event)
    body = f"Deliveries to *{sink}* go on; the waiting events are delivered, oldest first."
    return ":arrow_forward:", f"Sink {sink} resumed", body, _counts(attributes)


def _dead_lettered(event: Event) -> OperatorSummary:
    attributes, sink = _sink(event)
    count = attributes.get("dead_lettered", 0)
    noun = "delivery" if count == 1 else "deliveries"
    body = (
        f"{count} {noun} to *{sink}* were given up on. They are kept: see them with "
        f"`eventrouter dlq list --sink {sink}` and send them again with "
        f"`eventrouter dlq retry --sink {sink}` once the cause is fixed."
    )
    reasons = attributes.get("reasons")
    listed = (
        "\n".join(f"{n} × `{escape(truncate(str(reason), 200))}`" for reason, n in reasons.items())
        if isinstance(reasons, dict)
        else ""
    )
    facts = (("Dead letters in all", str(attributes.get("dead", count))),)
    if listed:
        facts += (("Why", listed),)
    return ":warning:", f"{count} {noun} to {sink} dead-lettered", body, facts


OPERATOR_DESCRIBERS: dict[str, Callable[[Event], OperatorSummary]] = {
    "eventrouter.sink.circuit_opened": _opened,
    "eventrouter.sink.circuit_closed": _closed,
    "eventrouter.sink.paused": _paused,
    "eventrouter.sink.resumed": _resumed,
    "eventrouter.delivery.dead_lettered": _dead_lettered,
}
