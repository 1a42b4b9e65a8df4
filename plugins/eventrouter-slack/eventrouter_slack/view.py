"""A flat, read-only view of an event's normalised parts: what templates and messages may show.

Keys are dotted paths (``campaign.name``, ``contact.phone``); values are plain strings and
numbers, never objects, so nothing rendered from the view can reach further into Python.
``raw`` (the provider's payload) is left out on purpose: a sink written against the
normalised parts reads the same for every provider.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventrouter import Call, CallStatus, Campaign, CampaignStatus, Contact, Event, EventType

__all__ = [
    "DYNAMIC_PREFIXES",
    "STATIC_KEYS",
    "Value",
    "call_status_label",
    "campaign_label",
    "contact_label",
    "event_view",
    "is_stalled",
    "status_label",
]

Value = str | int | float

_EVENT_KEYS = (
    "id",
    "source",
    "type",
    "time",
    "received_at",
    "provider",
    "provider_type",
    "subject",
    "idempotency_key",
)
_CONTACT_KEYS = ("phone", "email", "name", "external_id")
_CALL_KEYS = (
    "id",
    "direction",
    "status",
    "provider_status",
    "answered_by",
    "started_at",
    "ended_at",
    "duration_seconds",
    "recording_url",
    "from_number",
    "to_number",
)
_CAMPAIGN_KEYS = (
    "id",
    "name",
    "status",
    "provider_status",
    "previous_status",
    "run_id",
    "cycle",
    "next_cycle_at",
    "report_url",
)

#: every key a template may name, besides those under :data:`DYNAMIC_PREFIXES`
STATIC_KEYS: frozenset[str] = frozenset(
    [
        *_EVENT_KEYS,
        "title",
        "stalled",
        *(f"contact.{key}" for key in (*_CONTACT_KEYS, "display")),
        *(f"call.{key}" for key in (*_CALL_KEYS, "attempts", "attempt_ids", "transcript")),
        *(f"campaign.{key}" for key in (*_CAMPAIGN_KEYS, "display")),
    ]
)
#: keys below these prefixes come from the event itself (campaign stats, provider extras)
DYNAMIC_PREFIXES: tuple[str, ...] = ("campaign.stats.", "attributes.")

_MAX_DEPTH = 6
_MAX_VALUE_CHARS = 2000


def event_view(event: Event, *, title: str = "") -> dict[str, Value]:
    """The flat view of ``event``; a field the event lacks is simply absent (renders empty)."""
    view: dict[str, Value] = {}
    for key in _EVENT_KEYS:
        _put(view, key, getattr(event, key))
    _put(view, "title", title)
    _put(view, "stalled", "yes" if is_stalled(event) else "")
    data = event.data
    if data.contact is not None:
        _add_contact(view, data.contact)
    if data.call is not None:
        _add_call(view, data.call)
    if data.campaign is not None:
        _add_campaign(view, data.campaign)
    _flatten(view, "attributes", data.attributes, 0)
    return view


def is_stalled(event: Event) -> bool:
    """A cycle completed, no next cycle is scheduled, yet the campaign is not completed."""
    campaign = event.data.campaign
    return (
        event.type == EventType.CAMPAIGN_CYCLE_COMPLETED
        and campaign is not None
        and campaign.next_cycle_at is None
        and campaign.status != CampaignStatus.COMPLETED
    )


def contact_label(contact: Contact | None) -> str:
    """``Name (+phone)``, or whichever of phone, email and external id the contact has."""
    if contact is None:
        return "unknown contact"
    reach = contact.phone or contact.email
    if contact.name and reach:
        return f"{contact.name} ({reach})"
    return contact.name or reach or contact.external_id or "unknown contact"


def campaign_label(campaign: Campaign | None) -> str:
    """The campaign's name, else its id, else a placeholder."""
    if campaign is None:
        return "unnamed campaign"
    if campaign.name:
        return campaign.name
    return f"campaign {campaign.id}" if campaign.id else "unnamed campaign"


def status_label(value: enum.Enum | str | None) -> str:
    """``no_answer`` as ``no answer``: vocabulary values as a reader says them."""
    if value is None:
        return ""
    text = value.value if isinstance(value, enum.Enum) else value
    return str(text).replace("_", " ")


def call_status_label(call: Call | None) -> str:
    if call is None:
        return status_label(CallStatus.UNKNOWN)
    return status_label(call.status)


def _add_contact(view: dict[str, Value], contact: Contact) -> None:
    for key in _CONTACT_KEYS:
        _put(view, f"contact.{key}", getattr(contact, key))
    _put(view, "contact.display", contact_label(contact))


def _add_call(view: dict[str, Value], call: Call) -> None:
    for key in _CALL_KEYS:
        _put(view, f"call.{key}", getattr(call, key))
    if call.attempt_ids:
        _put(view, "call.attempts", len(call.attempt_ids))
        _put(view, "call.attempt_ids", ", ".join(call.attempt_ids))
    if call.transcript:
        lines = (f"{turn.speaker}: {turn.text}" for turn in call.transcript)
        _put(view, "call.transcript", "\n".join(lines))


def _add_campaign(view: dict[str, Value], campaign: Campaign) -> None:
    for key in _CAMPAIGN_KEYS:
        _put(view, f"campaign.{key}", getattr(campaign, key))
    _put(view, "campaign.display", campaign_label(campaign))
    for key, value in campaign.stats.items():
        _put(view, f"campaign.stats.{key}", value)


def _flatten(view: dict[str, Value], prefix: str, value: Any, depth: int) -> None:
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:
        for key, item in value.items():
            _flatten(view, f"{prefix}.{key}", item, depth + 1)
    elif isinstance(value, list | tuple):
        if all(isinstance(item, str | int | float) for item in value):
            _put(view, prefix, ", ".join(str(item) for item in value))
        else:
            _put(view, prefix, json.dumps(value, ensure_ascii=False, default=str))
    else:
        _put(view, prefix, value)


def _put(view: dict[str, Value], key: str, value: Any) -> None:
    scalar = _scalar(value)
    if scalar is not None and scalar != "":
        view[key] = scalar


def _scalar(value: Any) -> Value | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text[:_MAX_VALUE_CHARS]
