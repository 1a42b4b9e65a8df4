"""Block Kit messages for events: a readable default per normalised type, templates, digests.

Pure functions from events to ``SlackMessage``; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from attrs import field, frozen

from eventrouter import CallStatus, CampaignStatus, Event, EventType
from eventrouter_slack.mrkdwn import date, escape, link, truncate
from eventrouter_slack.operator import OPERATOR_DESCRIBERS
from eventrouter_slack.view import (
    call_status_label,
    campaign_label,
    contact_label,
    is_stalled,
    status_label,
)

__all__ = [
    "SlackMessage",
    "Summary",
    "default_message",
    "digest_message",
    "summarise",
    "template_message",
]

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
TEXT_LIMIT = 3000
_MAX_STATS = 8
_MAX_ATTRIBUTES = 6

_CALL_EMOJI = {
    CallStatus.FAILED: ":x:",
    CallStatus.BUSY: ":no_entry:",
    CallStatus.NO_ANSWER: ":telephone_receiver:",
    CallStatus.CANCELED: ":heavy_multiplication_x:",
    CallStatus.COMPLETED: ":telephone_receiver:",
}


@frozen
class SlackMessage:
    """What is posted: ``text`` (notification and fallback) and Block Kit ``blocks``."""

    text: str
    blocks: list[dict[str, Any]] = field(factory=list)


@frozen
class Summary:
    """An event in words: a plain-text title (with emoji), a mrkdwn body, labelled mrkdwn facts."""

    emoji: str
    title: str
    body: str = ""
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def headline(self) -> str:
        return f"{self.emoji} {self.title}"


def summarise(event: Event) -> Summary:
    """The default description of ``event``, chosen by its normalised type."""
    operator = OPERATOR_DESCRIBERS.get(event.type)
    if operator is not None:  # eventrouter's own events about its sinks (operator.py)
        return Summary(*operator(event))
    describe = _DESCRIBERS.get(event.type, _generic)
    return describe(event)


def default_message(event: Event) -> SlackMessage:
    """Header, body section with facts, and a context line for ``event``."""
    summary = summarise(event)
    blocks: list[dict[str, Any]] = [_header(summary.headline)]
    section: dict[str, Any] = {"type": "section"}
    if summary.body:
        section["text"] = _mrkdwn(truncate(summary.body, SECTION_LIMIT))
    facts = [
        _mrkdwn(truncate(f"*{escape(label)}*\n{value}", FIELD_LIMIT))
        for label, value in summary.facts[:MAX_FIELDS]
    ]
    if facts:
        section["fields"] = facts
    if len(section) > 1:
        blocks.append(section)
    blocks.append(_context(event))
    text = escape(summary.headline)
    if summary.body:
        text = f"{text}\n{summary.body}"
    return SlackMessage(text=truncate(text, TEXT_LIMIT), blocks=blocks)


def template_message(event: Event, rendered: str) -> SlackMessage:
    """A user template's text as the message body, with the usual context line."""
    body = rendered.strip() or escape(summarise(event).headline)
    blocks = [{"type": "section", "text": _mrkdwn(truncate(body, SECTION_LIMIT))}, _context(event)]
    return SlackMessage(text=truncate(body, TEXT_LIMIT), blocks=blocks)


def digest_message(
    events: Sequence[Event], *, lines: int, window: float, threshold: int
) -> SlackMessage:
    """Many events as one message: a count per type, then the first ``lines`` headlines."""
    counts = Counter(event.type for event in events)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    by_type = "\n".join(f"• `{escape(kind)}` × {count}" for kind, count in ranked)
    shown = [f"• {escape(summarise(event).headline)}" for event in events[:lines]]
    title = f":bell: Digest: {len(events)} events"
    blocks: list[dict[str, Any]] = [
        _header(title),
        {"type": "section", "text": _mrkdwn(truncate(f"*By type*\n{by_type}", SECTION_LIMIT))},
        {
            "type": "section",
            "text": _mrkdwn(truncate(f"*First {len(shown)}*\n" + "\n".join(shown), SECTION_LIMIT)),
        },
    ]
    notes = []
    if len(events) > lines:
        notes.append(f"…and {len(events) - lines} more.")
    notes.append(
        f"Folded into one message: more than {threshold} events arrived within {_seconds(window)}."
    )
    blocks.append({"type": "context", "elements": [_mrkdwn(" ".join(notes))]})
    summary = ", ".join(f"{count} {kind}" for kind, count in ranked)
    text = f"{title} ({escape(summary)})"
    return SlackMessage(text=truncate(text, TEXT_LIMIT), blocks=blocks)


# -- per type ------------------------------------------------------------------------------


def _campaign_completed(event: Event) -> Summary:
    campaign = event.data.campaign
    label = campaign_label(campaign)
    status = campaign.status if campaign else CampaignStatus.UNKNOWN
    if status == CampaignStatus.FAILED:
        emoji, title = ":x:", f"Campaign failed: {label}"
        body = f"The campaign ended with status *{escape(_campaign_status(event))}*."
    elif status == CampaignStatus.CANCELED:
        emoji, title = ":no_entry_sign:", f"Campaign canceled: {label}"
        body = "The campaign was canceled before it finished."
    else:
        emoji, title = ":white_check_mark:", f"Campaign completed: {label}"
        body = "The campaign finished."
    return Summary(emoji, title, body, _campaign_facts(event))


def _campaign_status_changed(event: Event) -> Summary:
    campaign = event.data.campaign
    label = campaign_label(campaign)
    status = campaign.status if campaign else CampaignStatus.UNKNOWN
    previous = status_label(campaign.previous_status) if campaign else ""
    current = _campaign_status(event)
    if status == CampaignStatus.FAILED:
        emoji, title = ":x:", f"Campaign failed: {label}"
    elif status == CampaignStatus.COMPLETED:
        emoji, title = ":white_check_mark:", f"Campaign completed: {label}"
    else:
        emoji, title = ":arrows_counterclockwise:", f"Campaign {current}: {label}"
    body = (
        f"Status changed from *{escape(previous)}* to *{escape(current)}*."
        if previous
        else f"Status is now *{escape(current)}*."
    )
    return Summary(emoji, title, body, _campaign_facts(event))


def _campaign_cycle_completed(event: Event) -> Summary:
    campaign = event.data.campaign
    label = campaign_label(campaign)
    cycle = campaign.cycle if campaign else None
    which = f"Cycle {cycle}" if cycle is not None else "A cycle"
    if is_stalled(event):
        current = _campaign_status(event)
        return Summary(
            ":warning:",
            f"Campaign stalled: {label}",
            f"{which} completed and no next cycle is scheduled, but the campaign is "
            f"*{escape(current)}*, not completed. It will make no more calls until someone "
            "looks at it.",
            _campaign_facts(event),
        )
    if campaign is not None and campaign.next_cycle_at is not None:
        body = f"{which} completed. Next cycle {date(campaign.next_cycle_at)}."
    else:
        body = f"{which} completed. No further cycles: the campaign is completed."
    numbered = f"cycle {cycle}" if cycle is not None else "cycle"
    return Summary(
        ":repeat:", f"Campaign {numbered} completed: {label}", body, _campaign_facts(event)
    )


def _campaign_triggered(event: Event) -> Summary:
    label = campaign_label(event.data.campaign)
    body = f"Triggered for *{escape(contact_label(event.data.contact))}*."
    facts = _contact_facts(event) + _campaign_facts(event)
    return Summary(":mega:", f"Campaign triggered: {label}", body, facts)


def _call_ended(event: Event) -> Summary:
    call = event.data.call
    status = call.status if call else CallStatus.UNKNOWN
    who = contact_label(event.data.contact)
    emoji = _CALL_EMOJI.get(status, ":telephone_receiver:")
    label = call_status_label(call)
    if status in (CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY):
        body = f"The call to *{escape(who)}* ended without reaching them: *{escape(label)}*."
    else:
        body = f"The call with *{escape(who)}* ended: *{escape(label)}*."
    return Summary(emoji, f"Call {label}: {who}", body, _call_facts(event))


def _call_attempts_exhausted(event: Event) -> Summary:
    call = event.data.call
    who = contact_label(event.data.contact)
    attempts = len(call.attempt_ids) if call and call.attempt_ids else None
    counted = f"All {attempts} call attempts" if attempts else "All call attempts"
    body = (
        f"{counted} to *{escape(who)}* ended without success; the last one: "
        f"*{escape(call_status_label(call))}*."
    )
    return Summary(":no_bell:", f"Call attempts exhausted: {who}", body, _call_facts(event))


def _generic(event: Event) -> Summary:
    body = f"Event `{escape(event.type)}` from source `{escape(event.source)}`."
    facts: list[tuple[str, str]] = []
    if event.data.contact is not None:
        facts.append(("Contact", escape(contact_label(event.data.contact))))
    if event.data.campaign is not None:
        facts.append(("Campaign", escape(campaign_label(event.data.campaign))))
    if event.data.call is not None:
        facts.append(("Call", escape(call_status_label(event.data.call))))
    for key, value in event.data.attributes.items():
        if len(facts) >= _MAX_ATTRIBUTES:
            break
        if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
            facts.append((key, escape(truncate(str(value), 200))))
    return Summary(":bell:", event.type, body, tuple(facts))


_DESCRIBERS = {
    EventType.CAMPAIGN_COMPLETED: _campaign_completed,
    EventType.CAMPAIGN_STATUS_CHANGED: _campaign_status_changed,
    EventType.CAMPAIGN_CYCLE_COMPLETED: _campaign_cycle_completed,
    EventType.CAMPAIGN_TRIGGERED: _campaign_triggered,
    EventType.CALL_ENDED: _call_ended,
    EventType.CALL_ATTEMPTS_EXHAUSTED: _call_attempts_exhausted,
}


# -- facts ---------------------------------------------------------------------------------


def _campaign_status(event: Event) -> str:
    campaign = event.data.campaign
    if campaign is None:
        return status_label(CampaignStatus.UNKNOWN)
    return campaign.provider_status or status_label(campaign.status)


def _campaign_facts(event: Event) -> tuple[tuple[str, str], ...]:
    campaign = event.data.campaign
    if campaign is None:
        return ()
    facts: list[tuple[str, str]] = [("Status", escape(_campaign_status(event)))]
    if campaign.id:
        facts.append(("Campaign id", f"`{escape(campaign.id)}`"))
    if campaign.run_id:
        facts.append(("Run", f"`{escape(campaign.run_id)}`"))
    if campaign.cycle is not None:
        facts.append(("Cycle", str(campaign.cycle)))
    if campaign.next_cycle_at is not None:
        facts.append(("Next cycle", date(campaign.next_cycle_at)))
    if campaign.stats:
        stats = list(campaign.stats.items())[:_MAX_STATS]
        facts.append(("Stats", "\n".join(f"{escape(k)}: {_number(v)}" for k, v in stats)))
    if campaign.report_url:
        facts.append(("Report", link(campaign.report_url, "Download report")))
    return tuple(facts)


def _contact_facts(event: Event) -> tuple[tuple[str, str], ...]:
    contact = event.data.contact
    if contact is None:
        return ()
    facts = []
    for label, value in (
        ("Name", contact.name),
        ("Phone", contact.phone),
        ("Email", contact.email),
        ("Contact id", contact.external_id),
    ):
        if value:
            facts.append((label, escape(value)))
    return tuple(facts)


def _call_facts(event: Event) -> tuple[tuple[str, str], ...]:
    call = event.data.call
    facts: list[tuple[str, str]] = list(_contact_facts(event))
    if call is not None:
        facts.append(("Status", escape(call.provider_status or call_status_label(call))))
        if call.direction is not None:
            facts.append(("Direction", escape(status_label(call.direction))))
        if call.duration_seconds is not None:
            facts.append(("Duration", f"{call.duration_seconds} s"))
        if call.answered_by is not None:
            facts.append(("Answered by", escape(status_label(call.answered_by))))
        if call.attempt_ids:
            facts.append(("Attempts", str(len(call.attempt_ids))))
        if call.ended_at is not None:
            facts.append(("Ended", date(call.ended_at)))
        if call.recording_url:
            facts.append(("Recording", link(call.recording_url, "Listen")))
    if event.data.campaign is not None:
        facts.append(("Campaign", escape(campaign_label(event.data.campaign))))
    return tuple(facts)


# -- blocks --------------------------------------------------------------------------------


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, HEADER_LIMIT), "emoji": True},
    }


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _context(event: Event) -> dict[str, Any]:
    parts = [
        f"source `{escape(event.source)}`",
        f"{escape(event.provider)} `{escape(event.provider_type)}`",
        date(event.time),
        f"`{escape(event.id)}`",
    ]
    return {"type": "context", "elements": [_mrkdwn(" · ".join(parts))]}


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}".rstrip("0")
    return str(int(value))


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{int(value // 3600)} h"
    if value >= 60 and value % 60 == 0:
        return f"{int(value // 60)} min"
    return f"{value:g} s"
