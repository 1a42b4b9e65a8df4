"""Altur webhook bodies to normalised event parts, sans I/O.

Every shape Altur documents (docs/provider-reference.md, "Altur"): ``on_call_end`` as it is
sent now (with ``event_type``) and as the older docs show it (``"type": "on_call_end"``), and the
``campaign.*`` envelope (``event_id``, ``event_type``, ``occurred_at``, ``data``). Any other
event type is kept as ``altur.<event_type>``. A body that is not what Altur sends raises
PayloadError naming the field, never another exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
    EventParts,
    EventType,
    Payload,
    PayloadError,
    TranscriptTurn,
    describe,
)

__all__ = [
    "CALL_STATUSES",
    "CAMPAIGN_STATUSES",
    "SPEAKERS",
    "parse_webhook",
]

#: Altur call statuses (docs.altur.io/api-reference/calls/retrieve), ``_`` read as ``-``
CALL_STATUSES: Mapping[str, CallStatus] = {
    "created": CallStatus.QUEUED,
    "queued": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "forwarding": CallStatus.IN_PROGRESS,
    "ended": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
}

#: Altur campaign statuses (webhooks/campaign-status-changed)
CAMPAIGN_STATUSES: Mapping[str, CampaignStatus] = {
    "pending": CampaignStatus.SCHEDULED,
    "ready": CampaignStatus.SCHEDULED,
    "active": CampaignStatus.ACTIVE,
    "inactive": CampaignStatus.PAUSED,
    "cooldown": CampaignStatus.COOLDOWN,
    "finished": CampaignStatus.COMPLETED,
}

#: transcript ``sent_by`` values; any other sender is kept as Altur spells it
SPEAKERS: Mapping[str, str] = {"assistant": "agent", "user": "contact"}

_DIRECTIONS = {"inbound": CallDirection.INBOUND, "outbound": CallDirection.OUTBOUND}
_ANSWERED_BY = {member.value: member for member in AnsweredBy}
_CALL_ENDED = "on_call_end"
_CAMPAIGN_TYPES = {
    "campaign.cycle_completed": EventType.CAMPAIGN_CYCLE_COMPLETED,
    "campaign.status_changed": EventType.CAMPAIGN_STATUS_CHANGED,
}


def parse_webhook(
    body: bytes, *, naive_tz: tzinfo = UTC, phone_region: str | None = None
) -> EventParts:
    """Read an Altur webhook body; timestamps without an offset are read in ``naive_tz``."""
    payload = Payload.from_body(body, naive_tz=naive_tz, phone_region=phone_region)
    event_type = _event_type(payload.data)
    if event_type == _CALL_ENDED:
        return _call_ended(payload, event_type)
    if event_type in _CAMPAIGN_TYPES:
        return _campaign_event(payload, event_type, body)
    return _other(payload, event_type, body)


def _event_type(payload: Mapping[str, Any]) -> str:
    """``event_type``, or for the older call payload its ``type`` when that is not a direction."""
    value = payload.get("event_type")
    if value is None:
        legacy = payload.get("type")
        if isinstance(legacy, str) and legacy.strip() and legacy.lower() not in _DIRECTIONS:
            return legacy.strip()
        raise PayloadError("required: the type of the event", field="event_type")
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(
            f"expected a non-empty string, got {describe(value)}", field="event_type"
        )
    return value.strip()


def _call_ended(payload: Payload, event_type: str) -> EventParts:
    call_id = payload.identifier("id")
    if call_id is None:
        raise PayloadError("required: the id of the call", field="id")
    end_user = payload.nested("end_user")
    campaign_user = payload.nested("campaign_user")
    assistant = payload.nested("assistant")
    direction = payload.enum("type", mapping=_DIRECTIONS, default=None)
    from_number = payload.phone("phone_number_from")
    to_number = payload.phone("phone_number_to")
    status = payload.text("status")
    answered_by = payload.text("answered_by")
    started_at = payload.timestamp("started_at")
    ended_at = payload.timestamp("ended_at")
    created_at = payload.timestamp("created_at")
    call = Call(
        id=call_id,
        direction=direction,
        status=_call_status(status),
        provider_status=status,
        answered_by=None
        if answered_by is None
        else _ANSWERED_BY.get(answered_by.lower(), AnsweredBy.UNKNOWN),
        started_at=started_at,
        ended_at=ended_at,
        duration_seconds=payload.integer("duration", minimum=0),
        recording_url=payload.text("recording_url"),
        transcript=_transcript(payload),
        from_number=from_number or _as_sent(payload.data, "phone_number_from"),
        to_number=to_number or _as_sent(payload.data, "phone_number_to"),
    )
    counterpart = {CallDirection.OUTBOUND: to_number, CallDirection.INBOUND: from_number}
    # every candidate is read (and type-checked) before the first present one is chosen
    phones = (
        end_user.phone("phone_number") if end_user else None,
        campaign_user.phone("contact") if campaign_user else None,
        counterpart[direction] if direction else None,
    )
    names = (
        end_user.text("display_name") if end_user else None,
        campaign_user.text("name") if campaign_user else None,
    )
    external_ids = (
        campaign_user.identifier("f_id") if campaign_user else None,
        end_user.identifier("id") if end_user else None,
    )
    contact = Contact(phone=_first(phones), name=_first(names), external_id=_first(external_ids))
    event_id = payload.identifier("event_id")
    return EventParts(
        type=EventType.CALL_ENDED,
        provider_type=event_type,
        # a call's id is shared by its other events (on_call_start, ...): the type keeps
        # their keys apart, so they are not taken for retries of one another
        idempotency_key=event_id or f"{event_type}:{call_id}",
        raw=payload.data,
        time=ended_at or started_at or created_at,
        subject=call_id,
        data=EventData(
            contact=None if contact == Contact() else contact,
            call=call,
            attributes=_call_attributes(payload, end_user, assistant),
        ),
    )


def _campaign_event(payload: Payload, event_type: str, body: bytes) -> EventParts:
    data = payload.nested("data")
    if data is None:
        raise PayloadError("required: the event's data object", field="data")
    summary = data.nested("campaign")
    if summary is None:
        raise PayloadError("required: the campaign summary", field="data.campaign")
    status = summary.text("status")
    previous = summary.text("previous_status")
    campaign = Campaign(
        id=summary.identifier("id"),
        name=summary.text("name"),
        status=_campaign_status(status),
        provider_status=status,
        previous_status=None if previous is None else _campaign_status(previous),
        cycle=data.integer("cycle_iteration", minimum=0),
        next_cycle_at=data.timestamp("next_cycle_at"),
        stats=_stats(data),
    )
    return EventParts(
        type=_CAMPAIGN_TYPES[event_type],
        provider_type=event_type,
        idempotency_key=payload.identifier("event_id") or _body_key(body),
        raw=payload.data,
        time=payload.timestamp("occurred_at"),
        subject=campaign.id,
        data=EventData(
            campaign=campaign,
            attributes={
                key: value
                for key in ("project_id", "api_version")
                if (value := payload.text(key)) is not None
            },
        ),
    )


def _other(payload: Payload, event_type: str, body: bytes) -> EventParts:
    """An event type this plugin does not know: kept whole, its envelope read leniently."""
    raw = payload.data
    data = raw.get("data")
    try:
        time = payload.timestamp("occurred_at")
    except PayloadError:
        time = None
    object_id = _loose_id(raw.get("id"))
    return EventParts(
        type=f"altur.{event_type}",
        provider_type=event_type,
        idempotency_key=_loose_id(raw.get("event_id"))
        or (f"{event_type}:{object_id}" if object_id else None)
        or _body_key(body),
        raw=raw,
        time=time,
        subject=object_id,
        data=EventData(attributes=dict(data) if isinstance(data, dict) else {}),
    )


def _transcript(payload: Payload) -> tuple[TranscriptTurn, ...]:
    result = []
    for turn in payload.nested_list("transcript"):
        sender = turn.text("sent_by")
        if sender is None:
            raise PayloadError("required: who said it", field=turn.field("sent_by"))
        result.append(
            TranscriptTurn(
                speaker=SPEAKERS.get(sender.lower(), sender),
                text=turn.text("content") or "",
                at=turn.timestamp("sent_at"),
            )
        )
    return tuple(result)


def _as_sent(payload: Mapping[str, Any], key: str) -> str | None:
    """A number that is not a valid phone number, as sent; None for none and for placeholders
    made of zeros (``+000000000000`` in Altur's examples)."""
    value = payload.get(key)
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text.lstrip("+").strip("0"):
        return None
    return text


def _call_attributes(
    payload: Payload, end_user: Payload | None, assistant: Payload | None
) -> dict[str, Any]:
    """The parts of ``on_call_end`` the model has no field for but a CRM sink wants."""
    attributes: dict[str, Any] = {}
    if end_user is not None:
        extracted = end_user.nested("extracted_data")
        if extracted is not None:
            attributes["extracted_data"] = extracted.data
        tags = end_user.strings("tags")
        if tags is not None:
            attributes["tags"] = tags
        status = end_user.text("status")
        if status is not None:
            attributes["end_user_status"] = status
    if assistant is not None:
        summary = {
            "id": assistant.identifier("id"),
            "name": assistant.text("name"),
            "nickname": assistant.text("nickname"),
        }
        attributes["assistant"] = {k: v for k, v in summary.items() if v is not None}
    billed = payload.integer("billed_duration", minimum=0)
    if billed is not None:
        attributes["billed_duration_seconds"] = billed
    return attributes


def _body_key(body: bytes) -> str:
    """An idempotency key for a body without an id: Altur's retries resend the same bytes."""
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def _loose_id(value: Any) -> str | None:
    """``value`` as an id when it is a non-empty string or an integer, else None."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _stats(data: Payload) -> dict[str, int | float]:
    """The numeric counts and rates of ``data.analytics`` (sent when a campaign finishes)."""
    analytics = data.nested("analytics")
    if analytics is None:
        return {}
    return {
        str(key): value
        for key, value in analytics.data.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _first(values: tuple[str | None, ...]) -> str | None:
    return next((value for value in values if value is not None), None)


def _call_status(value: str | None) -> CallStatus:
    if value is None:
        return CallStatus.UNKNOWN
    return CALL_STATUSES.get(value.strip().lower().replace("_", "-"), CallStatus.UNKNOWN)


def _campaign_status(value: str | None) -> CampaignStatus:
    if value is None:
        return CampaignStatus.UNKNOWN
    return CAMPAIGN_STATUSES.get(value.strip().lower(), CampaignStatus.UNKNOWN)
