"""Pelcro webhook bodies to normalised event fields: pure functions, no I/O.

Every Pelcro webhook is an envelope ``{type, id, created, data}``. ``campaign.triggered`` and
``campaign.run_completed`` map onto the normalised campaign events; any other type is kept as a
generic ``pelcro.<type>`` event, never dropped. ``magic_link_token`` is a credential: it stays in
the raw payload (so the store keeps it) and its dotted paths go into ``Event.sensitive``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from eventrouter import (
    REDACTED,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
    EventParts,
    EventType,
    Payload,
    PayloadError,
    describe,
    email_address,
    phone_e164,
)

__all__ = [
    "CAMPAIGN_TRIGGERED",
    "CREDENTIAL_KEY",
    "RUN_COMPLETED",
    "Envelope",
    "campaign_triggered",
    "credentials",
    "other_event",
    "parse_webhook",
    "run_completed",
]

CAMPAIGN_TRIGGERED = "campaign.triggered"
RUN_COMPLETED = "campaign.run_completed"
#: the one credential Pelcro puts in a payload (a passwordless log-in link's token)
CREDENTIAL_KEY = "magic_link_token"

_MAX_TYPE = 200
_MAX_ID = 255
_PERSON_OBJECTS = ("user", "customer")
# type and id end up in log lines and routing globs: no whitespace or control characters
_UNPRINTABLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# run fields that are numbers but identify or date the run rather than count anything
_NOT_STATS = re.compile(r"^(id|key|date)$|_(id|at|date)$")


@frozen
class Envelope:
    """The fields every Pelcro webhook shares; ``payload`` is the whole decoded body."""

    type: str
    id: str
    created: datetime
    data: Any
    payload: dict[str, Any]

    @classmethod
    def from_body(cls, body: bytes) -> Envelope:
        """Decode and check the envelope, or raise PayloadError naming the bad field."""
        reader = Payload.from_body(body)
        payload = dict(reader.data)
        event_type = payload.get("type")
        if not isinstance(event_type, str) or not event_type.strip():
            raise PayloadError(_expected("a non-empty string", event_type), field="type")
        if len(event_type) > _MAX_TYPE:
            raise PayloadError(f"longer than {_MAX_TYPE} characters", field="type")
        if _UNPRINTABLE.search(event_type):
            raise PayloadError("expected an event name such as subscription.created", field="type")
        event_id = payload.get("id")
        if isinstance(event_id, bool) or not isinstance(event_id, str | int) or event_id == "":
            raise PayloadError(
                _expected('a non-empty string such as "evt_..."', event_id), field="id"
            )
        event_id = str(event_id)
        if len(event_id) > _MAX_ID:
            raise PayloadError(f"longer than {_MAX_ID} characters", field="id")
        if _UNPRINTABLE.search(event_id):
            raise PayloadError("expected an event id such as evt_...", field="id")
        created = payload.get("created")
        # isdigit() holds for "²", which int() refuses; and int() refuses over 4,300 digits
        if isinstance(created, str) and created.strip().isdecimal() and len(created) < 20:
            reader = Payload({**payload, "created": int(created.strip())})  # Unix seconds as text
        time = reader.timestamp("created", required=True)
        return cls(
            type=event_type, id=event_id, created=time, data=payload.get("data"), payload=payload
        )


def parse_webhook(body: bytes) -> EventParts:
    """Read one (already authenticated) Pelcro webhook body into the parts of an event."""
    envelope = Envelope.from_body(body)
    data = Payload({"data": envelope.data})
    if envelope.type == CAMPAIGN_TRIGGERED:
        event_type = EventType.CAMPAIGN_TRIGGERED.value
        event_data, subject = campaign_triggered(data)
    elif envelope.type == RUN_COMPLETED:
        event_type = EventType.CAMPAIGN_COMPLETED.value
        event_data, subject = run_completed(data)
    else:
        event_type = f"pelcro.{envelope.type}"
        event_data, subject = other_event(envelope.data)
    raw, sensitive = credentials(envelope.payload)
    return EventParts(
        type=event_type,
        provider_type=envelope.type,
        idempotency_key=envelope.id,
        time=envelope.created,
        subject=subject,
        data=event_data,
        raw=raw,
        sensitive=sensitive,
    )


def campaign_triggered(envelope: Payload) -> tuple[EventData, str | None]:
    """``campaign.triggered``: the campaign, the subscriber as contact, the subscription as attributes."""
    data = envelope.nested("data", required=True)
    campaign = data.nested("campaign", required=True)
    subscription = data.nested("subscription")
    user = _person(data, subscription)
    address = (subscription and subscription.nested("address")) or data.nested("address")

    attributes: dict[str, Any] = {}
    campaign_extra = _with_objects(
        _scalars(campaign.data, drop=("id", "name")),
        campaign,
        ("site", "plan", "product", "coupon"),
    )
    if campaign_extra:
        attributes["campaign"] = campaign_extra
    if subscription is not None:
        attributes["subscription"] = _with_objects(
            _scalars(subscription.data), subscription, ("plan", "product", "coupon")
        )
    if address is not None:
        attributes["address"] = _scalars(address.data)
    if user is not None:
        attributes["user"] = _scalars(user.data)

    contact = _contact(user, region=_region(address)) if user is not None else None
    campaign_id = campaign.text("id", numbers=True)
    subscription_id = subscription.text("id", numbers=True) if subscription else None
    subject = (
        f"subscription/{subscription_id}"
        if subscription_id
        else (f"campaign/{campaign_id}" if campaign_id else None)
    )
    event_data = EventData(
        contact=contact,
        campaign=Campaign(id=campaign_id, name=campaign.text("name", numbers=True)),
        attributes=attributes,
    )
    return event_data, subject


def run_completed(envelope: Payload) -> tuple[EventData, str | None]:
    """``campaign.run_completed``, with the campaign under ``data.campaign`` or directly in ``data``."""
    data = envelope.nested("data", required=True)
    campaign = data.nested("campaign") or data
    run = campaign.nested("run", required=True)
    report_url = run.get("download_link")
    if report_url is not None and not isinstance(report_url, str):
        raise PayloadError(_expected("a URL string", report_url), field=run.field("download_link"))
    campaign_id = campaign.text("id", numbers=True)
    attributes: dict[str, Any] = {}
    campaign_extra = _scalars(campaign.data, drop=("id", "name"))
    if campaign_extra:
        attributes["campaign"] = campaign_extra
    attributes["run"] = _scalars(run.data)
    event_data = EventData(
        campaign=Campaign(
            id=campaign_id,
            name=campaign.text("name", numbers=True),
            status=CampaignStatus.COMPLETED,
            run_id=run.text("id", numbers=True),
            report_url=report_url or None,
            stats=_stats(dict(run.data)),
        ),
        attributes=attributes,
    )
    return event_data, (f"campaign/{campaign_id}" if campaign_id else None)


def other_event(data: Any) -> tuple[EventData, str | None]:
    """Any other type: best effort, never an error; a contact when a user or customer is present."""
    candidates = list(_candidates(data))
    main = next((c for c in candidates if isinstance(c.get("object"), str)), None)
    if main is None and candidates:
        main = candidates[0]
    attributes: dict[str, Any] = {}
    subject = None
    if main is not None:
        attributes = _scalars(main)
        kind, ident = _loose_text(main.get("object")), _loose_text(main.get("id"))
        if kind and ident:
            subject = f"{kind}/{ident}"
    return EventData(contact=_loose_contact(candidates), attributes=attributes), subject


def credentials(payload: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The payload to keep as ``raw`` and the dotted paths of every credential in it.

    A credential a dotted path cannot reach (inside an array, or under a key holding a ``.``)
    could not be redacted later, so it is blanked in the returned copy instead.
    """
    paths: list[str] = []
    unreachable = False
    stack: list[tuple[Any, tuple[str, ...], bool]] = [(payload, (), True)]
    while stack:
        node, parts, reachable = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                here = reachable and "." not in key
                if _is_credential(key):
                    if here:
                        paths.append(".".join((*parts, key)))
                    elif value is not None:
                        unreachable = True
                elif isinstance(value, dict | list):
                    stack.append((value, (*parts, key), here))
        else:
            stack.extend((item, parts, False) for item in node if isinstance(item, dict | list))
    raw = _blank_unreachable(payload) if unreachable else payload
    return raw, tuple(sorted(set(paths)))


def _blank_unreachable(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` whose credentials out of a dotted path's reach read ``[redacted]``."""
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, bool]] = [(payload, root, True)]
    while stack:
        source, target, reachable = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            here = reachable and isinstance(key, str) and "." not in key
            copied: Any = value
            if isinstance(key, str) and _is_credential(key):
                if not here and value is not None:
                    copied = REDACTED
            elif isinstance(value, dict):
                copied = {}
                stack.append((value, copied, here))
            elif isinstance(value, list):
                copied = [None] * len(value)
                stack.append((value, copied, False))
            target[key] = copied
    return root


def _is_credential(key: str) -> bool:
    # magic_link_token, magicLinkToken, magic-link-token: one credential, however it is spelt
    return re.sub(r"[^a-z0-9]", "", key.lower()) == "magiclinktoken"


def _expected(what: str, value: Any) -> str:
    return f"expected {what}, got {describe(value)}"


def _person(data: Payload, subscription: Payload | None) -> Payload | None:
    """The subscriber of a triggered campaign: a user or customer, the subscription's first."""
    for parent in (subscription, data):
        for key in _PERSON_OBJECTS:
            found = parent.nested(key) if parent is not None else None
            if found is not None:
                return found
    return None


def _contact(user: Payload, *, region: str | None) -> Contact | None:
    phone = user.text("phone", numbers=True) or user.text("phone_number", numbers=True)
    contact = Contact(
        phone=phone_e164(phone, default_region=region),
        email=email_address(user.text("email", numbers=True)),
        name=_name(
            user.text("first_name", numbers=True),
            user.text("last_name", numbers=True),
            user.text("name", numbers=True),
        ),
        external_id=user.text("id", numbers=True),
    )
    return None if contact == Contact() else contact


def _name(first: str | None, last: str | None, full: str | None) -> str | None:
    joined = " ".join(part.strip() for part in (first, last) if part and part.strip())
    return joined or (full.strip() if full and full.strip() else None)


def _region(address: Payload | Mapping[str, Any] | None) -> str | None:
    """The two-letter country of an address, to read phone numbers given without ``+``."""
    if isinstance(address, Payload):
        address = address.data
    country = address.get("country") if address else None
    if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isalpha():
        return country.strip().upper()
    return None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _scalars(obj: Mapping[str, Any], *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scalar fields of ``obj`` (never a credential), for ``EventData.attributes``."""
    return {
        key: value
        for key, value in obj.items()
        if key not in drop and _is_scalar(value) and not _is_credential(key)
    }


def _with_objects(into: dict[str, Any], obj: Payload, keys: tuple[str, ...]) -> dict[str, Any]:
    """``into`` plus the scalar fields of the nested objects ``keys`` of ``obj``."""
    for key in keys:
        nested = obj.nested(key)
        if nested is not None:
            into[key] = _scalars(nested.data)
    return into


def _stats(run: dict[str, Any]) -> dict[str, int | float]:
    """The run's counts: its numeric fields (and those of a nested ``stats`` object), ids aside."""
    sources = [run]
    if isinstance(run.get("stats"), dict):
        sources.append(run["stats"])
    stats: dict[str, int | float] = {}
    for source in sources:
        for key, value in source.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if _NOT_STATS.search(key) or not math.isfinite(value):
                continue
            stats[key] = value
    return stats


def _candidates(data: Any, *, limit: int = 200) -> Iterator[dict[str, Any]]:
    """The objects of an unmodelled payload, breadth first: ``data`` itself, array items, ``object``s."""
    queue: list[Any] = [data]
    seen = 0
    while queue and seen < limit:
        node = queue.pop(0)
        seen += 1
        if isinstance(node, dict):
            yield node
            inner = node.get("object")
            if isinstance(inner, dict | list):
                queue.append(inner)
        elif isinstance(node, list):
            queue.extend(node[:10])


def _loose_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None
    return str(value)


def _loose_contact(candidates: list[dict[str, Any]]) -> Contact | None:
    """A contact from the first user or customer found, else from a ``user_id``; never an error."""
    person = None
    for candidate in candidates:
        if candidate.get("object") in _PERSON_OBJECTS:
            person = candidate
        else:
            holders = [candidate]
            if isinstance(candidate.get("subscription"), dict):
                holders.append(candidate["subscription"])
            person = next(
                (
                    holder[key]
                    for holder in holders
                    for key in _PERSON_OBJECTS
                    if isinstance(holder.get(key), dict)
                ),
                None,
            )
        if person is not None:
            break
    if person is None:
        external_id = next(
            (
                _loose_text(candidate.get(key))
                for candidate in candidates
                for key in ("user_id", "customer_id")
                if _loose_text(candidate.get(key))
            ),
            None,
        )
        return Contact(external_id=external_id) if external_id else None
    address = person.get("address") if isinstance(person.get("address"), dict) else None
    phone = _loose_text(person.get("phone")) or _loose_text(person.get("phone_number"))
    contact = Contact(
        phone=phone_e164(phone, default_region=_region(address)),
        email=email_address(_loose_text(person.get("email"))),
        name=_name(
            _loose_text(person.get("first_name")),
            _loose_text(person.get("last_name")),
            _loose_text(person.get("name")),
        ),
        external_id=_loose_text(person.get("id")),
    )
    return None if contact == Contact() else contact
