"""HubSpot's request and response shapes, and what its errors mean: pure functions, no I/O."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import field, frozen

from eventrouter.errors import DeliveryError, PermanentError, RetryableError
from eventrouter.events import AnsweredBy, CallStatus, TranscriptTurn
from eventrouter.sinks import retry_after_seconds
from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord

__all__ = [
    "CALLS",
    "CONTACTS",
    "DEFAULT_DISPOSITIONS",
    "DISPOSITION_KEYS",
    "NOTES",
    "HubSpotRefused",
    "Link",
    "UpsertInput",
    "association_body",
    "association_results",
    "call_properties",
    "contact_input",
    "disposition_for",
    "error_for_response",
    "hs_timestamp",
    "note_properties",
    "property_definition",
    "property_group",
    "upsert_body",
    "upsert_results",
]

CONTACTS = "contacts"
CALLS = "calls"
NOTES = "notes"

#: HubSpot's default call outcomes (Settings > Call outcomes holds an account's own ones)
CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"
BUSY = "9d9162e7-6cf3-4944-bf63-4dff82258764"
NO_ANSWER = "73a0d17f-1163-4015-bdd5-ec830791da20"
LEFT_VOICEMAIL = "b2cf5968-551e-4856-9783-52b3da59a7d0"

DEFAULT_DISPOSITIONS: Mapping[str, str] = {
    CallStatus.COMPLETED.value: CONNECTED,
    CallStatus.BUSY.value: BUSY,
    CallStatus.NO_ANSWER.value: NO_ANSWER,
}
#: a call a machine answered: no default, since it does not say whether a message was left
MACHINE = "machine"
DISPOSITION_KEYS = frozenset({*(status.value for status in CallStatus), MACHINE})

_CALL_STATUS = {
    CallStatus.QUEUED: "QUEUED",
    CallStatus.RINGING: "RINGING",
    CallStatus.IN_PROGRESS: "IN_PROGRESS",
    CallStatus.COMPLETED: "COMPLETED",
    CallStatus.BUSY: "BUSY",
    CallStatus.NO_ANSWER: "NO_ANSWER",
    CallStatus.FAILED: "FAILED",
    CallStatus.CANCELED: "CANCELED",
}
#: HubSpot's 423 Locked asks to wait two seconds before writing the same record again
_LOCKED_WAIT = 2.0
_TEN_SECONDS = 10.0
#: HubSpot's daily limit resets at midnight in the account's time zone, which is unknown here
_DAILY_WAIT = 3600.0
_DETAIL_CHARS = 300


class HubSpotRefused(PermanentError):
    """HubSpot refused a request for good (4xx); ``status`` and ``category`` say how."""

    def __init__(self, message: str, *, status: int, category: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.category = category


@frozen
class UpsertInput:
    """One record of a batch upsert, matched on ``id_value`` of the batch's ``idProperty``."""

    id_value: str
    properties: dict[str, str] = field(factory=dict)

    def merge(self, newer: UpsertInput) -> UpsertInput:
        """Both inputs' properties, the newer winning: one record may appear once per batch."""
        return UpsertInput(self.id_value, {**self.properties, **newer.properties})


@frozen
class Link:
    """A default association from an engagement (``from_id``) to a contact (``to_id``)."""

    from_id: str
    to_id: str


# Requests


def contact_input(contact: ContactRecord, *, phone_id_property: str) -> tuple[str, UpsertInput]:
    """The ``idProperty`` to upsert ``contact`` by, and its input.

    Email is HubSpot's own unique contact key, so it wins whenever known; the phone then goes
    to ``phone`` only (HubSpot's ``phone`` is not unique). A contact known only by phone is
    matched on the unique custom property ``phone_id_property``.
    """
    properties = dict(contact.properties)
    if contact.first_name:
        properties["firstname"] = contact.first_name
    if contact.last_name:
        properties["lastname"] = contact.last_name
    if contact.phone:
        properties["phone"] = contact.phone
    if contact.email:
        properties["email"] = contact.email
        return "email", UpsertInput(contact.email, properties)
    if not contact.phone:
        raise ValueError("a contact needs an email or a phone")
    properties[phone_id_property] = contact.phone
    return phone_id_property, UpsertInput(contact.phone, properties)


def call_properties(
    call: CallRecord, *, event_id_property: str, dispositions: Mapping[str, str]
) -> dict[str, str]:
    """The properties of a call engagement, as HubSpot's calls API names them."""
    properties = {
        event_id_property: call.external_id,
        "hs_timestamp": hs_timestamp(call.timestamp),
        "hs_call_title": call.title,
    }
    body = _paragraphs(call.summary) + _transcript(call.transcript)
    if body:
        properties["hs_call_body"] = body
    if call.direction is not None:
        properties["hs_call_direction"] = str(call.direction).upper()
    status = _CALL_STATUS.get(call.status)
    if status:
        properties["hs_call_status"] = status
    if call.duration_seconds is not None:
        properties["hs_call_duration"] = str(call.duration_seconds * 1000)
    # HubSpot accepts only https recording URLs; another would fail the whole call
    if call.recording_url and call.recording_url.lower().startswith("https://"):
        properties["hs_call_recording_url"] = call.recording_url
    if call.from_number:
        properties["hs_call_from_number"] = call.from_number
    if call.to_number:
        properties["hs_call_to_number"] = call.to_number
    disposition = disposition_for(call, dispositions)
    if disposition:
        properties["hs_call_disposition"] = disposition
    return properties


def disposition_for(call: CallRecord, dispositions: Mapping[str, str]) -> str | None:
    """The call outcome id for ``call``: ``machine`` for an answering machine, else its status."""
    if call.answered_by == AnsweredBy.MACHINE and call.status == CallStatus.COMPLETED:
        key = MACHINE
    else:
        key = str(call.status)
    return dispositions.get(key) or None


def note_properties(note: NoteRecord, *, event_id_property: str) -> dict[str, str]:
    body = f"<p><strong>{html.escape(note.title)}</strong></p>" + _paragraphs(note.lines)
    return {
        event_id_property: note.external_id,
        "hs_timestamp": hs_timestamp(note.timestamp),
        "hs_note_body": body,
    }


def upsert_body(id_property: str, items: Sequence[UpsertInput]) -> dict[str, Any]:
    return {
        "inputs": [
            {"idProperty": id_property, "id": item.id_value, "properties": item.properties}
            for item in items
        ]
    }


def association_body(links: Sequence[Link]) -> dict[str, Any]:
    return {"inputs": [{"from": {"id": link.from_id}, "to": {"id": link.to_id}} for link in links]}


def property_group(name: str) -> dict[str, Any]:
    return {"name": name, "label": "eventrouter", "displayOrder": -1}


def property_definition(name: str, *, group: str, description: str) -> dict[str, Any]:
    """A unique single-line text property, as the properties API creates one."""
    return {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "description": description,
        "groupName": group,
        "type": "string",
        "fieldType": "text",
        "hasUniqueValue": True,
    }


def hs_timestamp(value: datetime) -> str:
    """UTC, to the millisecond, with ``Z``: the form HubSpot itself answers with."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _paragraphs(lines: Iterable[str]) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


def _transcript(turns: Iterable[TranscriptTurn]) -> str:
    return "".join(
        f"<p><strong>{html.escape(turn.speaker.capitalize())}:</strong> {html.escape(turn.text)}</p>"
        for turn in turns
    )


# Responses


def upsert_results(
    items: Sequence[UpsertInput], payload: Any, *, id_property: str, object_type: str
) -> list[str | DeliveryError]:
    """Each input's record id, or the error HubSpot gave for it (a 207 answer lists both).

    Results are matched on the ``idProperty`` value HubSpot echoes back, never on order (it
    is not documented); emails compare case-insensitively since HubSpot lower-cases them.
    """
    payload = payload if isinstance(payload, Mapping) else {}
    results = [r for r in payload.get("results") or () if isinstance(r, Mapping)]
    ids: dict[str, str] = {}
    for result in results:
        properties = result.get("properties")
        value = properties.get(id_property) if isinstance(properties, Mapping) else None
        if isinstance(value, str) and result.get("id") is not None:
            ids[value.casefold()] = str(result["id"])
    if not ids and len(items) == 1 and len(results) == 1 and results[0].get("id") is not None:
        ids[items[0].id_value.casefold()] = str(results[0]["id"])
    errors = [e for e in payload.get("errors") or () if isinstance(e, Mapping)]
    answers: list[str | DeliveryError] = []
    for item in items:
        record_id = ids.get(item.id_value.casefold())
        if record_id is not None:
            answers.append(record_id)
            continue
        error = _error_naming(item.id_value, errors) or (errors[0] if errors else None)
        if error is not None:
            answers.append(_batch_error(error))
        else:
            answers.append(
                RetryableError(
                    f"HubSpot's answer did not include the {object_type} upserted by {id_property}"
                )
            )
    return answers


def association_results(links: Sequence[Link], payload: Any) -> list[str | DeliveryError]:
    """``"ok"`` for each link HubSpot made, or its error (a 207 answer lists both)."""
    payload = payload if isinstance(payload, Mapping) else {}
    errors = [e for e in payload.get("errors") or () if isinstance(e, Mapping)]
    if not errors:
        return ["ok" for _ in links]
    made = {
        (str(r.get("fromObjectId")), str(r.get("toObjectId")))
        for r in payload.get("results") or ()
        if isinstance(r, Mapping)
    }
    answers: list[str | DeliveryError] = []
    for link in links:
        if (link.from_id, link.to_id) in made:
            answers.append("ok")
        else:
            error = _error_naming(link.from_id, errors) or errors[0]
            answers.append(_batch_error(error))
    return answers


def error_for_response(
    status: int, payload: Any, *, text: str, headers: Mapping[str, str]
) -> DeliveryError:
    """The error a failed HubSpot answer means: retryable (429, 423, 477, 408, 5xx) or not.

    HubSpot's error body is ``{"status": "error", "message": ..., "category": ...}``; the
    message and category are kept, the rest (correlation ids, echoed input) is not.
    """
    payload = payload if isinstance(payload, Mapping) else {}
    category = _text(payload.get("category")) or _text(payload.get("errorType"))
    message = _text(payload.get("message")) or " ".join(text.split())[:_DETAIL_CHARS]
    detail = f"{category}: {message}" if category else message
    detail = detail[:_DETAIL_CHARS] or "no details"
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if status == 429:
        policy = _text(payload.get("policyName")) or "TEN_SECONDLY_ROLLING"
        if retry_after is None:
            retry_after = _rate_limit_wait(policy, headers)
        return RetryableError(
            f"HubSpot rate limit reached ({policy}, HTTP 429): {detail}", retry_after=retry_after
        )
    if status == 423:
        wait = _LOCKED_WAIT if retry_after is None else retry_after
        return RetryableError(f"HubSpot record locked (HTTP 423): {detail}", retry_after=wait)
    if status in (408, 477) or status >= 500:
        return RetryableError(f"HubSpot HTTP {status}: {detail}", retry_after=retry_after)
    if status == 401:
        return HubSpotRefused(
            f"HubSpot token rejected (HTTP 401): {detail}; check the private app's access token",
            status=status,
            category=category,
        )
    if status == 403:
        scopes = _missing_scopes(payload)
        hint = f"; the private app needs the scopes {', '.join(scopes)}" if scopes else ""
        return HubSpotRefused(
            f"HubSpot refused access (HTTP 403): {detail}{hint}", status=status, category=category
        )
    return HubSpotRefused(f"HubSpot HTTP {status}: {detail}", status=status, category=category)


def _rate_limit_wait(policy: str, headers: Mapping[str, str]) -> float:
    if policy.upper() == "DAILY":
        return _DAILY_WAIT
    interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    try:
        return max(0.0, float(interval) / 1000) if interval else _TEN_SECONDS
    except ValueError:
        return _TEN_SECONDS


def _batch_error(error: Mapping[str, Any]) -> DeliveryError:
    """The error of one input of a 207 answer."""
    category = _text(error.get("category"))
    message = _text(error.get("message")) or "no details"
    detail = (f"{category}: {message}" if category else message)[:_DETAIL_CHARS]
    if category in ("RATE_LIMITS", "RATE_LIMIT"):
        return RetryableError(f"HubSpot rate limit reached: {detail}", retry_after=_TEN_SECONDS)
    status = error.get("status")
    if isinstance(status, str) and status.isdigit() and int(status) >= 500:
        return RetryableError(f"HubSpot HTTP {status}: {detail}")
    return HubSpotRefused(
        f"HubSpot refused one record of the batch: {detail}", status=207, category=category
    )


def _error_naming(value: str, errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The error whose ``context`` lists ``value`` (HubSpot names the failing ids there)."""
    folded = value.casefold()
    for error in errors:
        context = error.get("context")
        if not isinstance(context, Mapping):
            continue
        for values in context.values():
            items = values if isinstance(values, list) else [values]
            if any(isinstance(v, str | int) and str(v).casefold() == folded for v in items):
                return error
    return None


def _missing_scopes(payload: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    places = [payload, *[e for e in payload.get("errors") or () if isinstance(e, Mapping)]]
    for place in places:
        context = place.get("context")
        if not isinstance(context, Mapping):
            continue
        for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
            values = context.get(key)
            if isinstance(values, list):
                found.extend(str(v) for v in values if isinstance(v, str) and v not in found)
    return found


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
