"""From a normalised event to what the CRM should record: pure functions, no I/O."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Event,
    EventType,
    phone_e164,
)
from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord, Plan

__all__ = [
    "call_record",
    "contact_record",
    "external_id",
    "mapped_properties",
    "note_record",
    "plan_event",
]

#: where Altur puts the data its agent extracted during the call
EXTRACTED_DATA = "extracted_data"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_EXTERNAL_ID = 200


def plan_event(
    event: Event, *, property_mapping: Mapping[str, str], note_types: Iterable[str]
) -> Plan:
    """A call for ``call.ended``; a note for ``note_types`` with a contact; else the contact alone."""
    contact = contact_record(event, property_mapping)
    if event.type == EventType.CALL_ENDED and event.data.call is not None:
        return Plan(contact=contact, call=call_record(event))
    if contact is not None and any(fnmatch.fnmatchcase(event.type, p) for p in note_types):
        return Plan(contact=contact, note=note_record(event))
    return Plan(contact=contact)


def external_id(event: Event) -> str:
    """The same for every delivery of one webhook: the source's name and its idempotency key.

    Unlike ``event.id`` it survives the sender delivering the webhook again after the core's
    de-duplication window; keys too long for a CRM property are hashed.
    """
    value = f"{event.source}:{event.idempotency_key}"
    if len(value) <= _MAX_EXTERNAL_ID:
        return value
    digest = hashlib.sha256(event.idempotency_key.encode("utf-8")).hexdigest()
    return f"{event.source}:sha256:{digest}"


def contact_record(event: Event, property_mapping: Mapping[str, str]) -> ContactRecord | None:
    """The person the event is about, or None when neither an email nor a phone is known.

    A call without a contact falls back to the other party's number (the callee of an
    outbound call, the caller of an inbound one).
    """
    contact = event.data.contact
    email = _email(contact.email) if contact else None
    phone = phone_e164(contact.phone) if contact and contact.phone else None
    if phone is None and event.data.call is not None:
        phone = phone_e164(_counterpart(event.data.call))
    if email is None and phone is None:
        return None
    first_name, last_name = _split_name(contact.name if contact else None)
    return ContactRecord(
        email=email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        properties=mapped_properties(event.data.attributes.get(EXTRACTED_DATA), property_mapping),
    )


def mapped_properties(extracted: Any, property_mapping: Mapping[str, str]) -> dict[str, str]:
    """CRM property values for the ``extracted_data`` keys ``property_mapping`` names.

    Keys match exactly, else ignoring case; empty values are skipped (they would clear the
    property); lists become ``a;b`` (HubSpot's multiple-checkbox format).
    """
    if not isinstance(extracted, Mapping) or not property_mapping:
        return {}
    folded = {str(key).casefold(): value for key, value in extracted.items()}
    properties: dict[str, str] = {}
    for key, prop in property_mapping.items():
        value = extracted[key] if key in extracted else folded.get(key.casefold())
        text = _property_value(value)
        if text is not None:
            properties[prop] = text
    return properties


def call_record(event: Event) -> CallRecord:
    """The call of a ``call.ended`` event, to log on the contact's timeline.

    Vocabulary fields are read with ``str()``, which gives a StrEnum's value and a plain
    string alike, so an event read back from the store works however it was structured.
    """
    call = event.data.call or Call()
    kind = {CallDirection.OUTBOUND: "Outbound call", CallDirection.INBOUND: "Inbound call"}
    title = f"{kind[call.direction] if call.direction else 'Call'} via {event.provider}"
    summary = []
    if call.answered_by is not None and call.answered_by != AnsweredBy.UNKNOWN:
        summary.append(f"Answered by: {call.answered_by}")
    if call.provider_status and call.provider_status != str(call.status):
        summary.append(f"{event.provider} status: {call.provider_status}")
    if event.data.campaign is not None:
        summary.extend(_campaign_lines(event.data.campaign)[:1])
    return CallRecord(
        external_id=external_id(event),
        timestamp=call.started_at or call.ended_at or event.time,
        title=title,
        status=call.status,
        direction=call.direction,
        answered_by=call.answered_by,
        duration_seconds=_duration(call),
        recording_url=call.recording_url,
        from_number=call.from_number,
        to_number=call.to_number,
        summary=tuple(summary),
        transcript=call.transcript,
    )


def note_record(event: Event) -> NoteRecord:
    """A campaign (or other) event told as a note: what happened, to which campaign, with what."""
    lines: list[str] = []
    if event.data.campaign is not None:
        lines.extend(_campaign_lines(event.data.campaign))
    call = event.data.call
    if call is not None:
        if call.attempt_ids:
            lines.append(f"Call attempts: {len(call.attempt_ids)}")
        if call.status != CallStatus.UNKNOWN:
            lines.append(f"Last call status: {call.status}")
    lines.append(f"Source: {event.source} ({event.provider} {event.provider_type})")
    return NoteRecord(
        external_id=external_id(event),
        timestamp=event.time,
        title=_humanise(event.type),
        lines=tuple(lines),
    )


def _campaign_lines(campaign: Campaign) -> list[str]:
    lines = []
    if campaign.name and campaign.id:
        lines.append(f"Campaign: {campaign.name} ({campaign.id})")
    elif campaign.name or campaign.id:
        lines.append(f"Campaign: {campaign.name or campaign.id}")
    if campaign.status != CampaignStatus.UNKNOWN:
        status = f"Status: {campaign.status}"
        if campaign.previous_status is not None:
            status += f" (was {campaign.previous_status})"
        lines.append(status)
    if campaign.run_id:
        lines.append(f"Run: {campaign.run_id}")
    if campaign.cycle is not None:
        lines.append(f"Cycle: {campaign.cycle}")
    if campaign.next_cycle_at is not None:
        lines.append(f"Next cycle: {_iso(campaign.next_cycle_at)}")
    if campaign.stats:
        stats = ", ".join(
            f"{key}={_number(value)}" for key, value in sorted(campaign.stats.items())
        )
        lines.append(f"Stats: {stats}")
    if campaign.report_url:
        lines.append(f"Report: {campaign.report_url}")
    return lines


def _number(value: float) -> str:
    """``3``, ``0.25``, never ``1e+06``: how a person writes the number in a CRM field."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return str(round(value, 6))


def _humanise(event_type: str) -> str:
    text = event_type.replace(".", " ").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _iso(value: datetime) -> str:
    return value.isoformat()


def _duration(call: Call) -> int | None:
    if call.duration_seconds is not None:
        return call.duration_seconds
    if call.started_at is not None and call.ended_at is not None:
        return max(0, round((call.ended_at - call.started_at).total_seconds()))
    return None


def _counterpart(call: Call) -> str | None:
    if call.direction == CallDirection.OUTBOUND:
        return call.to_number
    if call.direction == CallDirection.INBOUND:
        return call.from_number
    return None


def _email(value: str | None) -> str | None:
    """Lower-cased (HubSpot stores emails so), or None when it is not an address at all."""
    if not value:
        return None
    text = value.strip().lower()
    return text if _EMAIL.match(text) else None


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, last.strip() or None


def _property_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list | tuple):
        items = [text for text in map(_property_value, value) if text is not None]
        return ";".join(items) or None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
