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
from datetime import UTC, datetime, tzinfo
from typing import Any

from attrs import field, frozen

from eventrouter.errors import PayloadError
from eventrouter.events import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
    EventType,
    TranscriptTurn,
)
from eventrouter.normalise import json_object, parse_timestamp, phone_e164

__all__ = [
    "CALL_STATUSES",
    "CAMPAIGN_STATUSES",
    "SPEAKERS",
    "Parsed",
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


@frozen
class Parsed:
    """One Altur webhook, normalised: what :meth:`Source.make_event` needs besides ids and clocks."""

    type: str
    provider_type: str
    idempotency_key: str
    raw: dict[str, Any]
    time: datetime | None = None
    subject: str | None = None
    data: EventData = field(factory=EventData)


def parse_webhook(
    body: bytes, *, naive_tz: tzinfo = UTC, phone_region: str | None = None
) -> Parsed:
    """Normalise an Altur webhook body; timestamps without an offset are read in ``naive_tz``."""
    payload = json_object(body)
    reader = _Reader(naive_tz=naive_tz, phone_region=phone_region)
    event_type = _event_type(payload)
    if event_type == _CALL_ENDED:
        return reader.call_ended(payload, event_type)
    if event_type in _CAMPAIGN_TYPES:
        return reader.campaign_event(payload, event_type, body)
    return reader.other(payload, event_type, body)


def _event_type(payload: Mapping[str, Any]) -> str:
    """``event_type``, or for the older call payload its ``type`` when that is not a direction."""
    value = payload.get("event_type")
    if value is None:
        legacy = payload.get("type")
        if isinstance(legacy, str) and legacy.strip() and legacy.lower() not in _DIRECTIONS:
            return legacy.strip()
        raise PayloadError("required: the type of the event", field="event_type")
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"expected a non-empty string, got {_kind(value)}", field="event_type")
    return value.strip()


@frozen
class _Reader:
    """Reads typed values out of a payload, naming the dotted field in every PayloadError."""

    naive_tz: tzinfo
    phone_region: str | None

    def call_ended(self, payload: dict[str, Any], event_type: str) -> Parsed:
        call_id = _identifier(payload, "id", "id")
        if call_id is None:
            raise PayloadError("required: the id of the call", field="id")
        end_user = _object(payload, "end_user", "end_user")
        campaign_user = _object(payload, "campaign_user", "campaign_user")
        assistant = _object(payload, "assistant", "assistant")
        direction = _direction(payload)
        from_number = self.phone(payload, "phone_number_from", "phone_number_from")
        to_number = self.phone(payload, "phone_number_to", "phone_number_to")
        status = _text(payload, "status", "status")
        answered_by = _text(payload, "answered_by", "answered_by")
        started_at = self.timestamp(payload, "started_at", "started_at")
        ended_at = self.timestamp(payload, "ended_at", "ended_at")
        created_at = self.timestamp(payload, "created_at", "created_at")
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
            duration_seconds=_count(payload, "duration", "duration"),
            recording_url=_text(payload, "recording_url", "recording_url"),
            transcript=self.transcript(payload),
            from_number=from_number or _as_sent(payload, "phone_number_from"),
            to_number=to_number or _as_sent(payload, "phone_number_to"),
        )
        counterpart = {CallDirection.OUTBOUND: to_number, CallDirection.INBOUND: from_number}
        # every candidate is read (and type-checked) before the first present one is chosen
        phones = (
            self.phone(end_user, "phone_number", "end_user.phone_number"),
            self.phone(campaign_user, "contact", "campaign_user.contact"),
            counterpart[direction] if direction else None,
        )
        names = (
            _text(end_user, "display_name", "end_user.display_name"),
            _text(campaign_user, "name", "campaign_user.name"),
        )
        external_ids = (
            _identifier(campaign_user, "f_id", "campaign_user.f_id"),
            _identifier(end_user, "id", "end_user.id"),
        )
        contact = Contact(
            phone=_first(phones), name=_first(names), external_id=_first(external_ids)
        )
        event_id = _identifier(payload, "event_id", "event_id")
        return Parsed(
            type=EventType.CALL_ENDED,
            provider_type=event_type,
            # a call's id is shared by its other events (on_call_start, ...): the type keeps
            # their keys apart, so they are not taken for retries of one another
            idempotency_key=event_id or f"{event_type}:{call_id}",
            raw=payload,
            time=ended_at or started_at or created_at,
            subject=call_id,
            data=EventData(
                contact=None if contact == Contact() else contact,
                call=call,
                attributes=_call_attributes(payload, end_user, assistant),
            ),
        )

    def campaign_event(self, payload: dict[str, Any], event_type: str, body: bytes) -> Parsed:
        data = _object(payload, "data", "data")
        if data is None:
            raise PayloadError("required: the event's data object", field="data")
        summary = _object(data, "campaign", "data.campaign")
        if summary is None:
            raise PayloadError("required: the campaign summary", field="data.campaign")
        status = _text(summary, "status", "data.campaign.status")
        previous = _text(summary, "previous_status", "data.campaign.previous_status")
        campaign = Campaign(
            id=_identifier(summary, "id", "data.campaign.id"),
            name=_text(summary, "name", "data.campaign.name"),
            status=_campaign_status(status),
            provider_status=status,
            previous_status=None if previous is None else _campaign_status(previous),
            cycle=_count(data, "cycle_iteration", "data.cycle_iteration"),
            next_cycle_at=self.timestamp(data, "next_cycle_at", "data.next_cycle_at"),
            stats=_stats(data),
        )
        return Parsed(
            type=_CAMPAIGN_TYPES[event_type],
            provider_type=event_type,
            idempotency_key=_identifier(payload, "event_id", "event_id") or _body_key(body),
            raw=payload,
            time=self.timestamp(payload, "occurred_at", "occurred_at"),
            subject=campaign.id,
            data=EventData(
                campaign=campaign,
                attributes={
                    key: value
                    for key in ("project_id", "api_version")
                    if (value := _text(payload, key, key)) is not None
                },
            ),
        )

    def other(self, payload: dict[str, Any], event_type: str, body: bytes) -> Parsed:
        """An event type this plugin does not know: kept whole, its envelope read leniently."""
        data = payload.get("data")
        try:
            time = self.timestamp(payload, "occurred_at", "occurred_at")
        except PayloadError:
            time = None
        return Parsed(
            type=f"altur.{event_type}",
            provider_type=event_type,
            idempotency_key=_loose_id(payload.get("event_id"))
            or (
                f"{event_type}:{object_id}" if (object_id := _loose_id(payload.get("id"))) else None
            )
            or _body_key(body),
            raw=payload,
            time=time,
            subject=_loose_id(payload.get("id")),
            data=EventData(attributes=dict(data) if isinstance(data, dict) else {}),
        )

    def transcript(self, payload: Mapping[str, Any]) -> tuple[TranscriptTurn, ...]:
        turns = payload.get("transcript")
        if turns is None:
            return ()
        if not isinstance(turns, list):
            raise PayloadError(f"expected an array, got {_kind(turns)}", field="transcript")
        result = []
        for index, turn in enumerate(turns):
            path = f"transcript[{index}]"
            if not isinstance(turn, dict):
                raise PayloadError(f"expected an object, got {_kind(turn)}", field=path)
            sender = _text(turn, "sent_by", f"{path}.sent_by")
            if sender is None:
                raise PayloadError("required: who said it", field=f"{path}.sent_by")
            result.append(
                TranscriptTurn(
                    speaker=SPEAKERS.get(sender.lower(), sender),
                    text=_text(turn, "content", f"{path}.content") or "",
                    at=self.timestamp(turn, "sent_at", f"{path}.sent_at"),
                )
            )
        return tuple(result)

    def timestamp(self, mapping: Mapping[str, Any] | None, key: str, path: str) -> datetime | None:
        if mapping is None:
            return None
        value = parse_timestamp(mapping.get(key), field=path, naive_tz=self.naive_tz)
        if value is not None:
            try:
                value.astimezone(UTC)
            except (OverflowError, ValueError):
                raise PayloadError(f"{mapping.get(key)!r} is out of range", field=path) from None
        return value

    def phone(self, mapping: Mapping[str, Any] | None, key: str, path: str) -> str | None:
        if mapping is None:
            return None
        value = mapping.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise PayloadError(f"expected a phone number, got {_kind(value)}", field=path)
        return phone_e164(value, default_region=self.phone_region)


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
    payload: Mapping[str, Any],
    end_user: Mapping[str, Any] | None,
    assistant: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parts of ``on_call_end`` the model has no field for but a CRM sink wants."""
    attributes: dict[str, Any] = {}
    if end_user is not None:
        extracted = _object(end_user, "extracted_data", "end_user.extracted_data")
        if extracted is not None:
            attributes["extracted_data"] = extracted
        tags = _strings(end_user, "tags", "end_user.tags")
        if tags is not None:
            attributes["tags"] = tags
        status = _text(end_user, "status", "end_user.status")
        if status is not None:
            attributes["end_user_status"] = status
    if assistant is not None:
        summary = {
            "id": _identifier(assistant, "id", "assistant.id"),
            "name": _text(assistant, "name", "assistant.name"),
            "nickname": _text(assistant, "nickname", "assistant.nickname"),
        }
        attributes["assistant"] = {k: v for k, v in summary.items() if v is not None}
    billed = _count(payload, "billed_duration", "billed_duration")
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


def _stats(data: Mapping[str, Any]) -> dict[str, int | float]:
    """The numeric counts and rates of ``data.analytics`` (sent when a campaign finishes)."""
    analytics = _object(data, "analytics", "data.analytics")
    if analytics is None:
        return {}
    return {
        str(key): value
        for key, value in analytics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _first(values: tuple[str | None, ...]) -> str | None:
    return next((value for value in values if value is not None), None)


def _direction(payload: Mapping[str, Any]) -> CallDirection | None:
    value = _text(payload, "type", "type")
    return None if value is None else _DIRECTIONS.get(value.lower())


def _call_status(value: str | None) -> CallStatus:
    if value is None:
        return CallStatus.UNKNOWN
    return CALL_STATUSES.get(value.strip().lower().replace("_", "-"), CallStatus.UNKNOWN)


def _campaign_status(value: str | None) -> CampaignStatus:
    if value is None:
        return CampaignStatus.UNKNOWN
    return CAMPAIGN_STATUSES.get(value.strip().lower(), CampaignStatus.UNKNOWN)


def _object(mapping: Mapping[str, Any] | None, key: str, path: str) -> dict[str, Any] | None:
    value = None if mapping is None else mapping.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise PayloadError(f"expected an object, got {_kind(value)}", field=path)


def _text(mapping: Mapping[str, Any] | None, key: str, path: str) -> str | None:
    value = None if mapping is None else mapping.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise PayloadError(f"expected a string, got {_kind(value)}", field=path)


def _identifier(mapping: Mapping[str, Any] | None, key: str, path: str) -> str | None:
    """An id, which Altur sends as a string (calls) or an integer (campaigns)."""
    value = None if mapping is None else mapping.get(key)
    if value is None or value == "":
        return None
    result = _loose_id(value)
    if result is None:
        raise PayloadError(f"expected a string or an integer, got {_kind(value)}", field=path)
    return result


def _count(mapping: Mapping[str, Any] | None, key: str, path: str) -> int | None:
    """A whole, non-negative number (seconds, iterations); ``45.0`` reads as 45."""
    value = None if mapping is None else mapping.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"expected a whole number, got {_kind(value)}", field=path)
    if value < 0:
        raise PayloadError(f"expected a number of at least 0, got {value}", field=path)
    return value


def _strings(mapping: Mapping[str, Any], key: str, path: str) -> list[str] | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError(f"expected an array of strings, got {_kind(value)}", field=path)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise PayloadError(f"expected a string, got {_kind(item)}", field=f"{path}[{index}]")
    return value


def _kind(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
