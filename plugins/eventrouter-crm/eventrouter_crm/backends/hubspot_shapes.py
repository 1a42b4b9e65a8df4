"""HubSpot's request and response shapes, and what its errors mean: pure functions, no I/O."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import field, frozen

from eventrouter import (
    AnsweredBy,
    CallStatus,
    DeliveryError,
    PermanentError,
    RetryableError,
    TranscriptTurn,
    retry_after_seconds,
)
from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord

__all__ = [
    "ACCOUNT_POLICIES",
    "ASSOCIATION_TYPE_IDS",
    "CALLS",
    "CONTACTS",
    "DEFAULT_DISPOSITIONS",
    "DISPOSITION_KEYS",
    "MAX_SEARCH_BODY",
    "NOTES",
    "SEARCH_PAGE",
    "EngagementInput",
    "HubSpotRefused",
    "HubSpotRetryable",
    "Link",
    "UpsertInput",
    "association_body",
    "association_results",
    "call_properties",
    "contact_input",
    "create_body",
    "create_results",
    "disposition_for",
    "encode",
    "error_for_response",
    "hs_timestamp",
    "note_properties",
    "oldest",
    "property_definition",
    "property_group",
    "search_bodies",
    "search_matches",
    "unknown_properties",
    "update_body",
    "update_results",
    "upsert_body",
    "upsert_results",
]

CONTACTS = "contacts"
CALLS = "calls"
NOTES = "notes"

#: HubSpot-defined association types from an engagement to a contact: call to contact is 194,
#: note to contact 202 (HubSpot's calls and notes guides)
ASSOCIATION_TYPE_IDS: Mapping[str, int] = {CALLS: 194, NOTES: 202}
#: HubSpot refuses a search request whose body is longer than this (400)
MAX_SEARCH_BODY = 3000
#: the most records one search page holds
SEARCH_PAGE = 200

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
#: HubSpot's search limit is per second
_SECONDLY_WAIT = 1.0
_DETAIL_CHARS = 300
#: rate limit policies that cover every request of the account, not only searches
ACCOUNT_POLICIES = frozenset({"TEN_SECONDLY_ROLLING", "DAILY"})


class HubSpotRefused(PermanentError):
    """HubSpot refused a request for good (4xx); ``status`` and ``category`` say how.

    ``unknown_properties`` names the properties HubSpot said do not exist (PROPERTY_DOESNT_EXIST).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        category: str | None = None,
        unknown_properties: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.unknown_properties = tuple(unknown_properties)


class HubSpotRetryable(RetryableError):
    """A request that may succeed later; ``status`` is HubSpot's answer, None when there was none
    (timeout, network error), and ``policy`` the rate limit a 429 names."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retry_after: float | None = None,
        policy: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.policy = policy

    @property
    def maybe_written(self) -> bool:
        """Whether HubSpot may have carried the request out although it did not say so."""
        return self.status is None or self.status == 408 or self.status >= 500


@frozen
class UpsertInput:
    """One record of a batch upsert, matched on ``id_value`` of the batch's ``idProperty``."""

    id_value: str
    properties: dict[str, str] = field(factory=dict)

    def merge(self, newer: UpsertInput) -> UpsertInput:
        """Both inputs' properties, the newer winning: one record may appear once per batch."""
        return UpsertInput(self.id_value, {**self.properties, **newer.properties})

    def without(self, names: Iterable[str]) -> UpsertInput:
        """This input without the properties ``names``."""
        drop = set(names)
        return UpsertInput(
            self.id_value, {k: v for k, v in self.properties.items() if k not in drop}
        )


@frozen
class EngagementInput:
    """A call or note to write, known by ``key`` (the value of the event id property), linked
    to ``contact_id`` when there is one."""

    key: str
    properties: dict[str, str] = field(factory=dict)
    contact_id: str | None = None

    def merge(self, newer: EngagementInput) -> EngagementInput:
        """The same event written twice in one batch: one record, the newer values winning."""
        return EngagementInput(
            self.key, {**self.properties, **newer.properties}, newer.contact_id or self.contact_id
        )


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


def search_bodies(
    property_name: str,
    keys: Iterable[str],
    *,
    limit: int = SEARCH_PAGE,
    max_chars: int = MAX_SEARCH_BODY,
) -> list[dict[str, Any]]:
    """Search requests finding the records whose ``property_name`` is one of ``keys``.

    One ``IN`` filter per request; its values are lower-cased, as HubSpot requires for ``IN``
    on a string property (the matching ignores case, so results are compared with the keys
    exactly afterwards). Keys are spread over as many requests as keep each body, with room
    for a paging ``after``, within HubSpot's 3,000 characters.
    """
    bodies: list[dict[str, Any]] = []
    values: list[str] = []
    room = max_chars - len(',"after":"9999999999"')

    def body(chunk: list[str]) -> dict[str, Any]:
        return {
            "filterGroups": [
                {"filters": [{"propertyName": property_name, "operator": "IN", "values": chunk}]}
            ],
            "properties": [property_name],
            "limit": limit,
        }

    for value in dict.fromkeys(key.lower() for key in keys):
        if values and len(encode(body([*values, value]))) > room:
            bodies.append(body(values))
            values = []
        values.append(value)
    if values:
        bodies.append(body(values))
    return bodies


def search_matches(
    payload: Any, property_name: str, keys: Iterable[str]
) -> tuple[dict[str, list[tuple[str, str]]], str | None]:
    """The records of one search page by key (``(createdAt, id)`` each), and the next page's
    ``after`` (None on the last page). Keys compare exactly, although HubSpot matched them
    ignoring case."""
    wanted = set(keys)
    payload = payload if isinstance(payload, Mapping) else {}
    found: dict[str, list[tuple[str, str]]] = {}
    for result in payload.get("results") or ():
        if not isinstance(result, Mapping) or result.get("id") is None:
            continue
        properties = result.get("properties")
        value = properties.get(property_name) if isinstance(properties, Mapping) else None
        if isinstance(value, str) and value in wanted:
            created = result.get("createdAt")
            found.setdefault(value, []).append(
                (created if isinstance(created, str) else "", str(result["id"]))
            )
    paging = payload.get("paging")
    following = paging.get("next") if isinstance(paging, Mapping) else None
    after = following.get("after") if isinstance(following, Mapping) else None
    return found, (str(after) if after not in (None, "") else None)


def oldest(records: Sequence[tuple[str, str]]) -> str:
    """The id of the first created of several records (ids break ties: HubSpot's grow)."""
    return min(records, key=lambda r: (r[0], int(r[1]) if r[1].isdigit() else 0, r[1]))[1]


def create_body(items: Sequence[EngagementInput], *, association_type_id: int) -> dict[str, Any]:
    """A batch create whose inputs carry their contact association, so none is ever created
    without it; ``objectWriteTraceId`` (the input's position) lets HubSpot answer 207 naming
    the inputs that failed."""
    inputs = []
    for position, item in enumerate(items):
        entry: dict[str, Any] = {"properties": item.properties, "objectWriteTraceId": str(position)}
        if item.contact_id is not None:
            entry["associations"] = [
                {
                    "to": {"id": item.contact_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": association_type_id,
                        }
                    ],
                }
            ]
        inputs.append(entry)
    return {"inputs": inputs}


def update_body(updates: Sequence[tuple[str, Mapping[str, str]]]) -> dict[str, Any]:
    """A batch update by record id: ``(id, properties)`` each."""
    return {
        "inputs": [{"id": record_id, "properties": dict(props)} for record_id, props in updates]
    }


def property_group(name: str) -> dict[str, Any]:
    return {"name": name, "label": "eventrouter", "displayOrder": -1}


def property_definition(name: str, *, group: str, description: str, unique: bool) -> dict[str, Any]:
    """A single-line text property, as the properties API creates one.

    ``unique`` only where HubSpot supports unique values (contacts, companies, deals, tickets,
    custom objects); calls and notes get a plain property.
    """
    definition: dict[str, Any] = {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "description": description,
        "groupName": group,
        "type": "string",
        "fieldType": "text",
    }
    if unique:
        definition["hasUniqueValue"] = True
    return definition


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
        error = _error_naming(item.id_value, errors) or _only_error(items, errors)
        if error is not None:
            answers.append(_batch_error(error))
        else:
            answers.append(
                RetryableError(
                    f"HubSpot's answer did not include the {object_type} upserted by {id_property}"
                )
            )
    return answers


def create_results(
    items: Sequence[EngagementInput], payload: Any, *, id_property: str, object_type: str
) -> list[str | DeliveryError]:
    """Each created record's id, or the error HubSpot gave for its input.

    Results are matched on the ``objectWriteTraceId`` when HubSpot echoes it, else on the
    ``id_property`` value the record holds; errors on the trace id their ``context`` names.
    An input neither answered nor named may have been created: its error is retryable, no
    sooner than the caller decides (search must see it first).
    """
    payload = payload if isinstance(payload, Mapping) else {}
    results = [r for r in payload.get("results") or () if isinstance(r, Mapping)]
    by_trace: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for result in results:
        if result.get("id") is None:
            continue
        trace = result.get("objectWriteTraceId")
        if isinstance(trace, str | int):
            by_trace[str(trace)] = str(result["id"])
        properties = result.get("properties")
        value = properties.get(id_property) if isinstance(properties, Mapping) else None
        if isinstance(value, str):
            by_key[value] = str(result["id"])
    single = len(items) == 1 and len(results) == 1 and results[0].get("id") is not None
    if single and not by_trace and not by_key:
        by_trace["0"] = str(results[0]["id"])
    errors = [e for e in payload.get("errors") or () if isinstance(e, Mapping)]
    answers: list[str | DeliveryError] = []
    for position, item in enumerate(items):
        record_id = by_trace.get(str(position)) or by_key.get(item.key)
        if record_id is not None:
            answers.append(record_id)
            continue
        error = _error_tracing(str(position), errors) or _only_error(items, errors)
        if error is not None:
            answers.append(_batch_error(error))
        else:
            answers.append(
                HubSpotRetryable(
                    f"HubSpot's answer did not include the {object_type} created for "
                    f"{id_property} {item.key}",
                    status=None,
                )
            )
    return answers


def update_results(record_ids: Sequence[str], payload: Any) -> list[str | DeliveryError]:
    """Each updated record's id (matched on the ids HubSpot answers), or its error."""
    payload = payload if isinstance(payload, Mapping) else {}
    updated = {
        str(r["id"])
        for r in payload.get("results") or ()
        if isinstance(r, Mapping) and r.get("id") is not None
    }
    errors = [e for e in payload.get("errors") or () if isinstance(e, Mapping)]
    answers: list[str | DeliveryError] = []
    for record_id in record_ids:
        if record_id in updated:
            answers.append(record_id)
            continue
        error = _error_naming(record_id, errors) or _only_error(record_ids, errors)
        answers.append(
            _batch_error(error)
            if error is not None
            else RetryableError(
                f"HubSpot's answer did not include the update of record {record_id}"
            )
        )
    return answers


def association_results(links: Sequence[Link], payload: Any) -> list[str | DeliveryError]:
    """``"ok"`` for each link HubSpot made, or its error (a 207 answer lists both).

    HubSpot answers ``{"results": [{"from": {"id"}, "to": {"id"}, "associationSpec": {...}}],
    "errors": [...]}``; the older ``fromObjectId``/``toObjectId`` form is read too. A link
    neither listed as made nor named by an error is retryable: it is not known to exist.
    """
    payload = payload if isinstance(payload, Mapping) else {}
    made: set[tuple[str, str]] = set()
    for result in payload.get("results") or ():
        if not isinstance(result, Mapping):
            continue
        source, target = result.get("from"), result.get("to")
        if isinstance(source, Mapping) and isinstance(target, Mapping):
            made.add((str(source.get("id")), str(target.get("id"))))
        elif "fromObjectId" in result and "toObjectId" in result:
            made.add((str(result["fromObjectId"]), str(result["toObjectId"])))
    errors = [e for e in payload.get("errors") or () if isinstance(e, Mapping)]
    answers: list[str | DeliveryError] = []
    for link in links:
        if (link.from_id, link.to_id) in made:
            answers.append("ok")
            continue
        error = _error_naming(link.from_id, errors) or _error_naming(link.to_id, errors)
        answers.append(
            _batch_error(error)
            if error is not None
            else RetryableError(
                f"HubSpot's answer did not include the association of {link.from_id} "
                f"with contact {link.to_id}"
            )
        )
    return answers


def unknown_properties(payload: Any) -> list[str]:
    """The properties an error says do not exist (PROPERTY_DOESNT_EXIST).

    HubSpot names them twice: in ``errors[].context.propertyName`` (code
    ``PROPERTY_DOESNT_EXIST``), and in the JSON list its ``message`` ends with
    ("Property values were not valid: [{..., "error": "PROPERTY_DOESNT_EXIST", "name": ...}]").
    """
    payload = payload if isinstance(payload, Mapping) else {}
    names: list[str] = []
    for error in payload.get("errors") or ():
        if not isinstance(error, Mapping) or error.get("code") != "PROPERTY_DOESNT_EXIST":
            continue
        context = error.get("context")
        values = context.get("propertyName") if isinstance(context, Mapping) else None
        for name in values if isinstance(values, list) else ():
            if isinstance(name, str) and name not in names:
                names.append(name)
    message = payload.get("message")
    start = message.find("[") if isinstance(message, str) else -1
    if start >= 0:
        try:
            problems = json.loads(message[start:])
        except ValueError:
            problems = None
        for problem in problems if isinstance(problems, list) else ():
            if (
                isinstance(problem, Mapping)
                and problem.get("error") == "PROPERTY_DOESNT_EXIST"
                and isinstance(problem.get("name"), str)
                and problem["name"] not in names
            ):
                names.append(problem["name"])
    return names


def error_for_response(
    status: int, payload: Any, *, text: str, headers: Mapping[str, str]
) -> DeliveryError:
    """The error a failed HubSpot answer means: retryable (429, 423, 477, 408, 5xx) or not.

    HubSpot's error body is ``{"status": "error", "message": ..., "category": ...}``; the
    message and category are kept, the rest (correlation ids, echoed input) is not. The answer
    itself is the error's ``response_excerpt`` (the core masks and bounds it in the attempt
    history).
    """
    error = _classified(status, payload, text=text, headers=headers)
    error.response_excerpt = text or None
    return error


def _classified(
    status: int, payload: Any, *, text: str, headers: Mapping[str, str]
) -> DeliveryError:
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
        return HubSpotRetryable(
            f"HubSpot rate limit reached ({policy}, HTTP 429): {detail}",
            status=status,
            retry_after=retry_after,
            policy=policy.upper(),
        )
    if status == 423:
        wait = _LOCKED_WAIT if retry_after is None else retry_after
        return HubSpotRetryable(
            f"HubSpot record locked (HTTP 423): {detail}", status=status, retry_after=wait
        )
    if status in (408, 477) or status >= 500:
        return HubSpotRetryable(
            f"HubSpot HTTP {status}: {detail}", status=status, retry_after=retry_after
        )
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
    return HubSpotRefused(
        f"HubSpot HTTP {status}: {detail}",
        status=status,
        category=category,
        unknown_properties=unknown_properties(payload) if status == 400 else (),
    )


def _rate_limit_wait(policy: str, headers: Mapping[str, str]) -> float:
    if policy.upper() == "DAILY":
        return _DAILY_WAIT
    if policy.upper() == "SECONDLY":
        return _SECONDLY_WAIT
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
        f"HubSpot refused one record of the batch: {detail}",
        status=207,
        category=category,
        unknown_properties=unknown_properties(error),
    )


def _only_error(
    items: Sequence[Any], errors: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The error of a one-input request, which need not name its input."""
    return errors[0] if len(items) == 1 and len(errors) == 1 else None


def _error_tracing(trace: str, errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The error whose ``context.objectWriteTraceId`` lists ``trace``."""
    for error in errors:
        context = error.get("context")
        traces = context.get("objectWriteTraceId") if isinstance(context, Mapping) else None
        if isinstance(traces, list | str | int) and trace in (
            [str(t) for t in traces] if isinstance(traces, list) else [str(traces)]
        ):
            return error
    return None


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


def encode(body: Any) -> str:
    """A request body as sent: compact JSON (HubSpot counts a search body's characters)."""
    return json.dumps(body, separators=(",", ":"))
