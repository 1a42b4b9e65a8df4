"""A local stand-in for HubSpot's CRM API (the shapes its docs show), and event builders."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from attrs import define, field

from eventrouter.converter import converter
from eventrouter.events import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
    TranscriptTurn,
    new_event_id,
)
from eventrouter.sinks import SinkContext
from eventrouter_crm import CRMSink
from eventrouter_crm.options import CRMOptions

TOKEN = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
OBJECT_TYPE_IDS = {"contacts": "0-1", "calls": "0-48", "notes": "0-46"}
STARTED = datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC)
ENDED = datetime(2024, 12, 19, 15, 0, 55, tzinfo=UTC)

CALL_STATUSES = {
    "BUSY",
    "CALLING_CRM_USER",
    "CANCELED",
    "COMPLETED",
    "CONNECTING",
    "FAILED",
    "IN_PROGRESS",
    "NO_ANSWER",
    "QUEUED",
    "RINGING",
}


def _error(status: int, message: str, category: str, **extra: Any) -> web.Response:
    body = {
        "status": "error",
        "message": message,
        "correlationId": "3f1c0f9e-2a51-4c8e-9d4a-0c6f3b5e7a10",
        "category": category,
        **extra,
    }
    return web.json_response(body, status=status)


@define
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any


@define
class Failure:
    path_part: str
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@define
class FakeHubSpot:
    """HubSpot's CRM as far as the crm sink uses it: state, requests seen, injected failures."""

    requests: list[Recorded] = field(factory=list)
    objects: dict[str, dict[str, dict[str, str]]] = field(
        factory=lambda: {"contacts": {}, "calls": {}, "notes": {}}
    )
    associations: set[tuple[str, str, str, str]] = field(factory=set)
    failures: list[Failure] = field(factory=list)
    properties: dict[str, dict[str, dict[str, Any]]] = field(factory=dict)
    groups: dict[str, set[str]] = field(factory=dict)
    #: path -> seconds to wait before answering (a slow HubSpot)
    delays: dict[str, float] = field(factory=dict)
    url: str = ""
    _next_id: int = 1000

    def __attrs_post_init__(self) -> None:
        def text(unique: bool = False, type_: str = "string") -> dict[str, Any]:
            return {"type": type_, "hasUniqueValue": unique}

        self.properties = {
            "contacts": {
                "email": text(unique=True),
                "firstname": text(),
                "lastname": text(),
                "phone": text(),
                "payment_amount": text(type_="number"),
                "payment_date": text(),
                "payment_medium": text(),
                "eventrouter_phone": text(unique=True),
            },
            "calls": {
                name: text()
                for name in (
                    "hs_timestamp",
                    "hs_call_title",
                    "hs_call_body",
                    "hs_call_direction",
                    "hs_call_status",
                    "hs_call_recording_url",
                    "hs_call_from_number",
                    "hs_call_to_number",
                    "hs_call_disposition",
                )
            }
            | {"hs_call_duration": text(type_="number"), "eventrouter_event_id": text(unique=True)},
            "notes": {
                "hs_timestamp": text(),
                "hs_note_body": text(),
                "eventrouter_event_id": text(unique=True),
            },
        }
        self.groups = {name: {"contactinformation"} for name in self.properties}

    # test helpers

    def fail(
        self,
        path_part: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests whose path holds ``path_part`` with ``status``."""
        self.failures.append(Failure(path_part, status, body, headers or {}, times))

    def posted(self, path_part: str) -> list[Recorded]:
        return [r for r in self.requests if path_part in r.path]

    def find(self, object_type: str, prop: str, value: str) -> tuple[str, dict[str, str]]:
        matches = [
            (record_id, props)
            for record_id, props in self.objects[object_type].items()
            if props.get(prop) == value
        ]
        assert len(matches) == 1, f"{len(matches)} {object_type} with {prop}={value!r}"
        return matches[0]

    def linked(self, object_type: str, object_id: str) -> list[str]:
        return sorted(
            to_id
            for from_type, from_id, to_type, to_id in self.associations
            if from_type == object_type and from_id == object_id and to_type == "contacts"
        )

    def without_custom_properties(self) -> None:
        del self.properties["contacts"]["eventrouter_phone"]
        del self.properties["calls"]["eventrouter_event_id"]
        del self.properties["notes"]["eventrouter_event_id"]

    # the server

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/crm/v3/objects/{object}/batch/upsert", self._upsert)
        app.router.add_post(
            "/crm/v4/associations/{from}/{to}/batch/associate/default", self._associate
        )
        app.router.add_post("/crm/v3/properties/{object}/groups", self._create_group)
        app.router.add_post("/crm/v3/properties/{object}", self._create_property)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        authorization = request.headers.get("Authorization")
        self.requests.append(Recorded(request.method, request.path, authorization, body))
        if request.path in self.delays:
            await asyncio.sleep(self.delays[request.path])
        for failure in self.failures:
            if failure.times > 0 and failure.path_part in request.path:
                failure.times -= 1
                if isinstance(failure.body, dict | list):
                    return web.json_response(
                        failure.body, status=failure.status, headers=failure.headers
                    )
                return web.Response(
                    text=failure.body or "", status=failure.status, headers=failure.headers
                )
        if authorization != f"Bearer {TOKEN}":
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        return await handler(request)

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    async def _upsert(self, request: web.Request) -> web.Response:
        object_type = request.match_info["object"]
        known = self.properties.get(object_type)
        if known is None:
            return _error(
                404, f"Unable to infer object type from: {object_type}", "OBJECT_NOT_FOUND"
            )
        inputs = (await request.json() or {}).get("inputs") or []
        if not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 records", "VALIDATION_ERROR")
        seen: set[str] = set()
        for item in inputs:
            id_property = item.get("idProperty")
            if id_property not in known or not known[id_property]["hasUniqueValue"]:
                return _error(
                    400,
                    f"Property {id_property} is not a unique identifier property",
                    "VALIDATION_ERROR",
                )
            value = str(item["id"]).lower() if id_property == "email" else str(item["id"])
            if value in seen:
                return _error(
                    400, f"Duplicate IDs found in batch input: [{item['id']}]", "VALIDATION_ERROR"
                )
            seen.add(value)
            for name, prop_value in (item.get("properties") or {}).items():
                problem = self._invalid(object_type, name, prop_value)
                if problem:
                    return _error(
                        400,
                        f"Property values were not valid: {json.dumps([problem])}",
                        "VALIDATION_ERROR",
                    )
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        results = []
        for item in inputs:
            id_property = item["idProperty"]
            value = str(item["id"]).lower() if id_property == "email" else str(item["id"])
            properties = {
                k: (v.lower() if k == "email" else v) for k, v in item["properties"].items()
            }
            properties[id_property] = value
            existing = [
                rid
                for rid, props in self.objects[object_type].items()
                if props.get(id_property) == value
            ]
            record_id = existing[0] if existing else self._id()
            conflict = self._unique_conflict(object_type, record_id, properties)
            if conflict:
                return _error(409, conflict, "CONFLICT")
            stored = self.objects[object_type].setdefault(record_id, {})
            stored.update(properties)
            results.append(
                {
                    "id": record_id,
                    "properties": {**stored, "hs_object_id": record_id},
                    "createdAt": now,
                    "updatedAt": now,
                    "archived": False,
                    "new": not existing,
                }
            )
        # HubSpot does not promise the input order: answer in an order of our own (not the same
        # for every object type, so that two wrong matchings cannot cancel out)
        if object_type == "contacts":
            results.reverse()
        else:
            results = results[1:] + results[:1]
        return web.json_response(
            {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        )

    def _invalid(self, object_type: str, name: str, value: Any) -> dict[str, Any] | None:
        definition = self.properties[object_type].get(name)
        if definition is None:
            return {
                "isValid": False,
                "message": f'Property "{name}" does not exist',
                "error": "PROPERTY_DOESNT_EXIST",
                "name": name,
            }
        if definition["type"] == "number":
            try:
                float(value)
            except (TypeError, ValueError):
                return {
                    "isValid": False,
                    "message": f"{value} was not a valid number.",
                    "error": "INVALID_FLOAT",
                    "name": name,
                }
        if name == "hs_call_direction" and value not in ("INBOUND", "OUTBOUND"):
            return {
                "isValid": False,
                "message": "bad direction",
                "error": "INVALID_OPTION",
                "name": name,
            }
        if name == "hs_call_status" and value not in CALL_STATUSES:
            return {
                "isValid": False,
                "message": "bad status",
                "error": "INVALID_OPTION",
                "name": name,
            }
        if name == "hs_call_recording_url" and not str(value).startswith("https://"):
            return {"isValid": False, "message": "not https", "error": "INVALID_URL", "name": name}
        return None

    def _unique_conflict(
        self, object_type: str, record_id: str, properties: dict[str, str]
    ) -> str | None:
        for name, value in properties.items():
            if not self.properties[object_type][name]["hasUniqueValue"]:
                continue
            for other_id, other in self.objects[object_type].items():
                if other_id != record_id and other.get(name) == value:
                    return f"A {object_type} record with {name} already exists. Existing ID: {other_id}"
        return None

    async def _associate(self, request: web.Request) -> web.Response:
        from_type, to_type = request.match_info["from"], request.match_info["to"]
        inputs = (await request.json() or {}).get("inputs") or []
        results = []
        for item in inputs:
            from_id, to_id = str(item["from"]["id"]), str(item["to"]["id"])
            if from_id not in self.objects.get(from_type, {}) or to_id not in self.objects.get(
                to_type, {}
            ):
                return _error(
                    400,
                    f"No {from_type} with ID {from_id} or no {to_type} with ID {to_id}",
                    "VALIDATION_ERROR",
                )
            self.associations.add((from_type, from_id, to_type, to_id))
            results.append(
                {
                    "fromObjectTypeId": OBJECT_TYPE_IDS[from_type],
                    "fromObjectId": int(from_id),
                    "toObjectTypeId": OBJECT_TYPE_IDS[to_type],
                    "toObjectId": int(to_id),
                    "labels": [],
                }
            )
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        )

    async def _create_group(self, request: web.Request) -> web.Response:
        object_type = request.match_info["object"]
        body = await request.json()
        if body["name"] in self.groups[object_type]:
            return _error(
                409, f"Property group {body['name']} already exists", "OBJECT_ALREADY_EXISTS"
            )
        self.groups[object_type].add(body["name"])
        return web.json_response({**body, "archived": False}, status=201)

    async def _create_property(self, request: web.Request) -> web.Response:
        object_type = request.match_info["object"]
        body = await request.json()
        if body["name"] in self.properties[object_type]:
            return _error(
                409, f"Property named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS"
            )
        if body.get("groupName") not in self.groups[object_type]:
            return _error(400, f"group {body.get('groupName')} does not exist", "VALIDATION_ERROR")
        self.properties[object_type][body["name"]] = {
            "type": body["type"],
            "hasUniqueValue": bool(body.get("hasUniqueValue")),
        }
        return web.json_response({**body, "hidden": False}, status=201)


@pytest.fixture
async def hubspot() -> AsyncIterator[FakeHubSpot]:
    """A fake HubSpot on 127.0.0.1; ``hubspot.url`` is its base URL."""
    fake = FakeHubSpot()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def make_sink(hubspot: FakeHubSpot) -> AsyncIterator[Callable[..., Any]]:
    """``await make_sink(**options)``: a started crm sink pointed at the fake HubSpot."""
    session = aiohttp.ClientSession()
    sinks: list[CRMSink] = []

    async def factory(**options: Any) -> CRMSink:
        document = {"token": TOKEN, "api_base": hubspot.url, "batch_window": 0.05, **options}
        sink = CRMSink("crm", converter.structure(document, CRMOptions))
        assert list(sink.check()) == []
        await sink.start(
            SinkContext(http=session, base_dir=Path.cwd(), logger=logging.getLogger("test.crm"))
        )
        sinks.append(sink)
        return sink

    yield factory
    for sink in sinks:
        await sink.close()
    await session.close()


def build_call_event(
    *,
    key: str = "cll_gBoLtd02pUI50QwXkFjB",
    phone: str | None = "+521234567890",
    email: str | None = None,
    name: str | None = "John Doe",
    extracted: dict[str, Any] | None = None,
    source: str = "altur",
    **call_changes: Any,
) -> Event:
    """A ``call.ended`` event shaped like the Altur source's (PROVIDERS.md's on_call_end)."""
    call = {
        "id": key,
        "direction": CallDirection.OUTBOUND,
        "status": CallStatus.COMPLETED,
        "provider_status": "ended",
        "answered_by": AnsweredBy.HUMAN,
        "started_at": STARTED,
        "ended_at": ENDED,
        "duration_seconds": 45,
        "recording_url": f"https://api.altur.io/api/v1.0/call/{key}/recording",
        "transcript": (
            TranscriptTurn("agent", "Hello am I speaking with Sofía?", STARTED),
            TranscriptTurn("contact", "Yes, who is this?", ENDED),
        ),
        "from_number": "+15550000001",
        "to_number": phone,
        **call_changes,
    }
    attributes = {"extracted_data": extracted} if extracted is not None else {}
    return Event(
        id=new_event_id(),
        source=source,
        type="call.ended",
        time=ENDED,
        provider="altur",
        provider_type="on_call_end",
        idempotency_key=key,
        received_at=ENDED,
        data=EventData(
            contact=Contact(phone=phone, email=email, name=name),
            call=Call(**call),
            attributes=attributes,
        ),
        raw={"event_type": "on_call_end", "id": key},
    )


def build_campaign_event(
    *,
    key: str = "evt_5tH9aB2nQ8vR3mZ1cP0k",
    event_type: str = "campaign.triggered",
    email: str | None = "ana@example.com",
    phone: str | None = None,
    name: str | None = "Ana Díaz",
) -> Event:
    """A campaign event about one contact, shaped like the Pelcro source's."""
    contact = Contact(email=email, phone=phone, name=name) if (email or phone) else None
    return Event(
        id=new_event_id(),
        source="pelcro",
        type=event_type,
        time=datetime(2026, 6, 8, 18, 0, tzinfo=UTC),
        provider="pelcro",
        provider_type=event_type,
        idempotency_key=key,
        received_at=datetime(2026, 6, 8, 18, 0, 1, tzinfo=UTC),
        data=EventData(
            contact=contact,
            campaign=Campaign(
                id="542",
                name="Spring <Promo>",
                status=CampaignStatus.ACTIVE,
                run_id="run_77",
                stats={"targeted": 120, "rate": 0.25},
            ),
        ),
        raw={"type": event_type, "id": key},
    )


@pytest.fixture
def call_event() -> Callable[..., Event]:
    return build_call_event


@pytest.fixture
def campaign_event() -> Callable[..., Event]:
    return build_campaign_event
