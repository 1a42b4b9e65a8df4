"""Exotel callbacks told apart by shape and normalised: a pure function of the decoded body.

Exotel sends no event-type field. Its campaign callbacks are recognised by their fields
(``call_sid`` + ``number``: call status; ``call_sids`` + ``to``: call schedule;
``campaign_sid`` with ``report_url`` or a finished campaign-level ``status``: campaign status); Exotel's voice ``StatusCallback``
(``CallSid`` + ``Status``) is a call status too. Anything else is kept as ``exotel.callback``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from attrs import field, frozen

from eventrouter import (
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
    phone_e164,
)
from eventrouter_exotel.body import string_list
from eventrouter_exotel.vocabulary import (
    TERMINAL_CAMPAIGN_STATUSES,
    answered_by,
    call_direction,
    call_status,
    campaign_status,
    status_word,
)

__all__ = [
    "GENERIC_TYPE",
    "Kind",
    "Settings",
    "detect_kind",
    "read_callback",
]

#: the event type of a callback whose shape is not one of Exotel's documented ones
GENERIC_TYPE = "exotel.callback"


class Kind(enum.StrEnum):
    """The callbacks Exotel sends, named as the ``kind`` option names them."""

    CALL_STATUS = "call_status"
    CALL_SCHEDULE = "call_schedule"
    CAMPAIGN_STATUS = "campaign_status"


@frozen
class Settings:
    """How to read values the payload leaves ambiguous."""

    #: region of phone numbers written without a country code
    phone_region: str = "IN"
    #: time zone of timestamps written without an offset (``2024-01-15 14:30:45``)
    naive_tz: tzinfo = field(factory=lambda: ZoneInfo("Asia/Kolkata"))


_TERMINAL_CALL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.FAILED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.CANCELED,
    }
)
_CALL_LEVEL_FIELDS = ("call_sid", "call_sids", "number", "to", "CallSid")
_LETTERS = re.compile(r"[^\W\d_]")
_EVENT_WORD = re.compile(r"[^a-z0-9]+")


def _present(payload: Mapping[str, Any], key: str) -> bool:
    value = payload.get(key)
    return value is not None and value != "" and value != []


def detect_kind(payload: Mapping[str, Any]) -> Kind | None:
    """The kind of callback ``payload`` is by its fields, or None for a shape Exotel does not document."""
    if _present(payload, "call_sids") and _present(payload, "to"):
        return Kind.CALL_SCHEDULE
    if _present(payload, "call_sid") and _present(payload, "number"):
        return Kind.CALL_STATUS
    if _present(payload, "CallSid") and _present(payload, "Status"):
        return Kind.CALL_STATUS
    if not _present(payload, "campaign_sid"):
        return None
    if _present(payload, "report_url"):
        return Kind.CAMPAIGN_STATUS
    if (
        not any(_present(payload, key) for key in _CALL_LEVEL_FIELDS)
        and isinstance(payload.get("status"), str)
        and campaign_status(payload["status"]) in TERMINAL_CAMPAIGN_STATUSES
    ):
        return Kind.CAMPAIGN_STATUS
    return None


def read_callback(
    payload: dict[str, Any], *, body: bytes, kind: Kind | None = None, settings: Settings
) -> EventParts:
    """``payload`` as the parts of an event; ``kind`` forces a kind instead of guessing it.

    PayloadError when a field of a recognised callback is malformed; a shape nobody
    recognises is never an error but an ``exotel.callback`` event keyed by the body's SHA-256.
    """
    kind = kind or detect_kind(payload)
    # form bodies send every value as text; JSON ones are read the same way, as Exotel mixes them
    reader = Payload(
        payload, naive_tz=settings.naive_tz, phone_region=settings.phone_region, text_values=True
    )
    if kind is Kind.CALL_STATUS:
        return _call_status(reader)
    if kind is Kind.CALL_SCHEDULE:
        return _call_schedule(reader)
    if kind is Kind.CAMPAIGN_STATUS:
        return _campaign_status(reader)
    return _generic(reader, body)


def _text(payload: Payload, *keys: str) -> str | None:
    """A field that holds text or an id, stripped."""
    return payload.text(*keys, numbers=True)


def _url(payload: Payload, *keys: str) -> str | None:
    """A URL field; form bodies spell a missing one as ``null``."""
    text = _text(payload, *keys)
    return None if text is None or text.lower() in ("null", "none") else text


def _seconds(payload: Payload, *keys: str) -> int | None:
    """A whole number of seconds (``47``, ``"47"``, ``47.0``), rounded."""
    number = payload.number(*keys, minimum=0)
    return None if number is None else round(number)


def _phone(payload: Payload, key: str) -> tuple[str | None, str | None]:
    """A number field as (E.164 or None, the value to show: E.164 when it is a number, else as sent).

    A form body with an unescaped ``+`` decodes it to a space; a leading space before digits is
    read as ``+``. Values with letters (``0XXXXXX4890`` in Exotel's examples) are not numbers,
    though phonenumbers would read the letters as keypad digits.
    """
    value = payload.data.get(key)
    text = _text(payload, key)
    if text is None:
        return None, None
    if isinstance(value, str) and value.startswith(" ") and text[:1].isdigit():
        text = "+" + text
    if _LETTERS.search(text):
        return None, text
    e164 = phone_e164(text, default_region=payload.phone_region)
    return e164, e164 or text


def _answered_by(payload: Payload) -> Any:
    """Who answered the last leg of a voice call (``Legs[-1].AnsweredBy``), if Exotel says."""
    legs = payload.data.get("Legs")
    if isinstance(legs, str) and legs.strip().startswith("["):
        try:
            legs = json.loads(legs)
        except (ValueError, RecursionError):
            return None
    if not isinstance(legs, list) or not legs or not isinstance(legs[-1], dict):
        return None
    value = legs[-1].get("AnsweredBy")
    return answered_by(value) if isinstance(value, str) else None


def _status_key(normalised: enum.StrEnum, unknown: enum.StrEnum, provider: str | None) -> str:
    """The status part of an idempotency key: the normalised word, or Exotel's own when unknown."""
    return str(normalised) if normalised is not unknown else status_word(provider)


# -- the three callbacks ---------------------------------------------------------------------


def _call_status(payload: Payload) -> EventParts:
    call_sid = _text(payload, "call_sid", "CallSid")
    if call_sid is None:
        raise PayloadError("a call status callback needs a call id", field="call_sid")
    campaign_sid = _text(payload, "campaign_sid")
    provider_status = _text(payload, "status", "Status")
    status = call_status(provider_status)
    event_type = status_word(_text(payload, "EventType", "event_type"))
    direction_text = _text(payload, "Direction", "direction")
    direction = call_direction(direction_text) if direction_text else None
    if direction is None and (campaign_sid or "number" in payload.data):
        direction = CallDirection.OUTBOUND  # campaigns only dial out
    to_e164, to_number = _phone(payload, "number")
    if to_number is None:
        to_e164, to_number = _phone(payload, "To")
    from_e164, from_number = _phone(payload, "From" if "From" in payload.data else "from")
    contact_phone = from_e164 if direction is CallDirection.INBOUND else to_e164
    created = payload.timestamp("date_created", "DateCreated")
    updated = payload.timestamp("date_updated", "DateUpdated")
    started = payload.timestamp("start_time", "StartTime") or created
    ended = payload.timestamp("end_time", "EndTime")
    if ended is None and status in _TERMINAL_CALL_STATUSES:
        ended = updated
    call = Call(
        id=call_sid,
        direction=direction,
        status=status,
        provider_status=provider_status,
        answered_by=_answered_by(payload),
        started_at=started,
        ended_at=ended,
        duration_seconds=_seconds(
            payload, "duration", "Duration", "ConversationDuration", "conversation_duration"
        ),
        recording_url=_url(payload, "recording_url", "RecordingUrl"),
        from_number=from_number,
        to_number=to_number,
    )
    attributes = {
        name: value
        for name, value in (
            ("event_type", event_type or None),
            ("custom_field", _text(payload, "CustomField", "custom_field")),
            ("phone_number_sid", _text(payload, "PhoneNumberSid", "phone_number_sid")),
        )
        if value is not None
    }
    # a voice StatusCallback for an intermediate event ("answered") is not the end of the call
    ended_event = event_type in ("", "terminal")
    event_word = _EVENT_WORD.sub("_", event_type).strip("_") or "unknown"
    key = f"call_status:{call_sid}:{_status_key(status, CallStatus.UNKNOWN, provider_status)}"
    if event_type:
        key += f":{event_type}"
    return EventParts(
        type=EventType.CALL_ENDED if ended_event else f"exotel.call.{event_word}",
        provider_type=Kind.CALL_STATUS,
        idempotency_key=key,
        raw=payload.data,
        time=updated or ended or created,
        subject=call_sid,
        data=EventData(
            contact=Contact(phone=contact_phone) if contact_phone else None,
            call=call,
            campaign=Campaign(id=campaign_sid) if campaign_sid else None,
            attributes=attributes,
        ),
    )


def _call_schedule(payload: Payload) -> EventParts:
    call_sids = string_list(payload.data.get("call_sids"), field="call_sids")
    to_e164, to_number = _phone(payload, "to")
    if not call_sids and to_number is None:
        raise PayloadError("a call schedule callback needs call_sids or to", field="call_sids")
    _, from_number = _phone(payload, "from")
    campaign_sid = _text(payload, "campaign_sid")
    provider_status = _text(payload, "status")
    status = call_status(provider_status)
    created = payload.timestamp("date_created")
    updated = payload.timestamp("date_updated")
    call = Call(
        id=call_sids[-1] if call_sids else None,
        direction=CallDirection.OUTBOUND,
        status=status,
        provider_status=provider_status,
        ended_at=updated,
        attempt_ids=call_sids,
        from_number=from_number,
        to_number=to_number,
    )
    key = f"call_schedule:{campaign_sid or ''}:{to_number or ''}:{','.join(call_sids)}"
    return EventParts(
        type=EventType.CALL_ATTEMPTS_EXHAUSTED,
        provider_type=Kind.CALL_SCHEDULE,
        idempotency_key=key,
        raw=payload.data,
        time=updated or created,
        subject=to_number or call.id,
        data=EventData(
            contact=Contact(phone=to_e164) if to_e164 else None,
            call=call,
            campaign=Campaign(id=campaign_sid) if campaign_sid else None,
        ),
    )


def _campaign_status(payload: Payload) -> EventParts:
    campaign_sid = _text(payload, "campaign_sid")
    if campaign_sid is None:
        raise PayloadError("a campaign status callback needs campaign_sid", field="campaign_sid")
    provider_status = _text(payload, "status", "Status")
    status = campaign_status(provider_status)
    created = payload.timestamp("date_created")
    updated = payload.timestamp("date_updated")
    campaign = Campaign(
        id=campaign_sid,
        name=_text(payload, "name", "campaign_name"),
        status=status,
        provider_status=provider_status,
        report_url=_url(payload, "report_url"),
    )
    key = f"campaign_status:{campaign_sid}:{_status_key(status, CampaignStatus.UNKNOWN, provider_status)}"
    return EventParts(
        type=EventType.CAMPAIGN_COMPLETED
        if status in TERMINAL_CAMPAIGN_STATUSES
        else EventType.CAMPAIGN_STATUS_CHANGED,
        provider_type=Kind.CAMPAIGN_STATUS,
        idempotency_key=key,
        raw=payload.data,
        time=updated or created,
        subject=campaign_sid,
        data=EventData(campaign=campaign),
    )


def _generic(payload: Payload, body: bytes) -> EventParts:
    """An undocumented shape: accepted as is, timed by its own timestamp when one is readable."""
    try:
        time = payload.timestamp("date_updated", "DateUpdated", "date_created", "DateCreated")
    except PayloadError:
        time = None
    return EventParts(
        type=GENERIC_TYPE,
        provider_type="callback",
        idempotency_key=f"callback:{hashlib.sha256(body).hexdigest()}",
        raw=payload.data,
        time=time,
    )
