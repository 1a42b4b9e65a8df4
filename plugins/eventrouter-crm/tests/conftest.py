"""A local stand-in for HubSpot's CRM API (the shapes its docs show), and event builders."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from attrs import define, field

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
    SinkContext,
    TranscriptTurn,
)
from eventrouter.testing import new_event_id, structure_options
from eventrouter_crm import CRMSink
from eventrouter_crm.options import CRMOptions

TOKEN = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
OBJECT_TYPE_IDS = {"contacts": "0-1", "calls": "0-48", "notes": "0-46"}
#: HubSpot-defined association types from an engagement to a contact
ASSOCIATION_TYPES = {("calls", "contacts"): 194, ("notes", "contacts"): 202}
#: HubSpot supports unique values on these (not on engagements such as calls and notes)
UNIQUE_CAPABLE = {"contacts"}
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


def _invalid_properties(problems: list[dict[str, Any]]) -> dict[str, Any]:
    """HubSpot's 400 for invalid property values: the problems as JSON inside ``message``, and
    one ``errors`` entry each (the shape of developers.hubspot.com's object API guide)."""
    return {
        "status": "error",
        "message": f"Property values were not valid: {json.dumps(problems)}",
        "correlationId": "8a3f6c3a-8296-4002-b0a6-2a06fecf7c0c",
        "errors": [
            {
                "message": problem["message"],
                "code": problem["error"],
                "context": {"propertyName": [problem["name"]]},
            }
            for problem in problems
        ],
        "category": "VALIDATION_ERROR",
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@define
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any
    #: time.monotonic() when it arrived
    at: float = 0.0


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
    #: record id -> (createdAt, time.monotonic() of the write)
    created: dict[str, tuple[str, float]] = field(factory=dict)
    associations: set[tuple[str, str, str, str]] = field(factory=set)
    failures: list[Failure] = field(factory=list)
    properties: dict[str, dict[str, dict[str, Any]]] = field(factory=dict)
    groups: dict[str, set[str]] = field(factory=dict)
    #: path -> seconds to wait before answering (a slow HubSpot)
    delays: dict[str, float] = field(factory=dict)
    #: path -> seconds to hold the answer after the work is done (an answer that gets lost)
    answer_delays: dict[str, float] = field(factory=dict)
    #: search does not see a record until this many seconds after it was created
    index_lag: float = 0.0
    #: the most results one search page holds here (HubSpot: 200)
    search_page_cap: int = 200
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
                    "eventrouter_event_id",
                )
            }
            | {"hs_call_duration": text(type_="number")},
            "notes": {
                "hs_timestamp": text(),
                "hs_note_body": text(),
                "eventrouter_event_id": text(),
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

    def add(self, object_type: str, properties: dict[str, str]) -> str:
        """A record written before the test (by another process, or a person)."""
        record_id = self._id()
        self.objects[object_type][record_id] = dict(properties)
        self.created[record_id] = (_now(), time.monotonic())
        return record_id

    # the server

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/crm/v3/objects/{object}/batch/upsert", self._upsert)
        app.router.add_post("/crm/v3/objects/{object}/batch/create", self._create)
        app.router.add_post("/crm/v3/objects/{object}/batch/update", self._update)
        app.router.add_post("/crm/v3/objects/{object}/search", self._search)
        app.router.add_post(
            "/crm/v4/associations/{from}/{to}/batch/associate/default", self._associate
        )
        app.router.add_post("/crm/v3/properties/{object}/groups", self._create_group)
        app.router.add_get("/crm/v3/properties/{object}/{name}", self._read_property)
        app.router.add_post("/crm/v3/properties/{object}", self._create_property)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        authorization = request.headers.get("Authorization")
        self.requests.append(
            Recorded(request.method, request.path, authorization, body, time.monotonic())
        )
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
        if body is not None and request.content_type != "application/json":
            return _error(415, "Content-Type must be application/json", "VALIDATION_ERROR")
        response = await handler(request)
        if request.path in self.answer_delays:
            await asyncio.sleep(self.answer_delays[request.path])
        return response

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _object_type(self, request: web.Request) -> str | None:
        object_type = request.match_info["object"]
        return object_type if object_type in self.properties else None

    async def _upsert(self, request: web.Request) -> web.Response:
        object_type = self._object_type(request)
        if object_type is None:
            return _error(
                404,
                f"Unable to infer object type from: {request.match_info['object']}",
                "OBJECT_NOT_FOUND",
            )
        known = self.properties[object_type]
        inputs = (await request.json() or {}).get("inputs") or []
        if not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 records", "VALIDATION_ERROR")
        seen: set[str] = set()
        for item in inputs:
            id_property = item.get("idProperty")
            if id_property not in known or not known[id_property]["hasUniqueValue"]:
                # the answer developers get (HubSpot/hubspot-api-nodejs#548)
                return _error(
                    400,
                    f"Unable to perform update/upsert by non-unique "
                    f"{OBJECT_TYPE_IDS[object_type]} property",
                    "VALIDATION_ERROR",
                )
            value = str(item["id"]).lower() if id_property == "email" else str(item["id"])
            if value in seen:
                return _error(
                    400, f"Duplicate IDs found in batch input: [{item['id']}]", "VALIDATION_ERROR"
                )
            seen.add(value)
            problems = self._problems(object_type, item.get("properties") or {})
            if problems:
                return web.json_response(_invalid_properties(problems), status=400)
        now = _now()
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
            self.created.setdefault(record_id, (now, time.monotonic()))
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

    async def _create(self, request: web.Request) -> web.Response:
        """Batch create; inputs that all carry an ``objectWriteTraceId`` get a 207 naming the
        failed ones (HubSpot's multi-status), else one invalid input fails the batch (400)."""
        object_type = self._object_type(request)
        if object_type is None:
            return _error(404, "Unable to infer object type", "OBJECT_NOT_FOUND")
        inputs = (await request.json() or {}).get("inputs") or []
        if not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 records", "VALIDATION_ERROR")
        traced = all("objectWriteTraceId" in item for item in inputs)
        now = _now()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        valid = []
        for item in inputs:
            properties = item.get("properties") or {}
            problem = self._problems(object_type, properties) or self._association_problem(
                object_type, item.get("associations") or []
            )
            if not problem:
                valid.append(item)
                continue
            if not traced:
                if isinstance(problem, str):
                    return _error(400, problem, "VALIDATION_ERROR")
                return web.json_response(_invalid_properties(problem), status=400)
            body = (
                {"status": "error", "category": "VALIDATION_ERROR", "message": problem}
                if isinstance(problem, str)
                else {"status": "error", **_invalid_properties(problem)}
            )
            body.pop("errors", None)
            body.pop("correlationId", None)
            errors.append({**body, "context": {"objectWriteTraceId": [item["objectWriteTraceId"]]}})
        for item in valid:
            record_id = self._id()
            self.objects[object_type][record_id] = dict(item.get("properties") or {})
            self.created[record_id] = (now, time.monotonic())
            for association in item.get("associations") or []:
                self.associations.add(
                    (object_type, record_id, "contacts", str(association["to"]["id"]))
                )
            results.append(
                {
                    "id": record_id,
                    "properties": {
                        **self.objects[object_type][record_id],
                        "hs_object_id": record_id,
                        "hs_createdate": now,
                        "hs_lastmodifieddate": now,
                    },
                    "createdAt": now,
                    "updatedAt": now,
                    "archived": False,
                }
            )
        results = results[1:] + results[:1]  # not in input order
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        answer |= {"startedAt": now, "completedAt": now}
        return web.json_response(answer, status=207 if errors else 201)

    def _association_problem(
        self, object_type: str, associations: list[dict[str, Any]]
    ) -> str | None:
        for association in associations:
            to_id = str(association["to"]["id"])
            types = association.get("types") or []
            expected = ASSOCIATION_TYPES.get((object_type, "contacts"))
            if types != [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": expected}]:
                return f"invalid association type {types!r} for {object_type} to contacts"
            if to_id not in self.objects["contacts"]:
                return f"No contacts with ID {to_id} exist"
        return None

    async def _update(self, request: web.Request) -> web.Response:
        object_type = self._object_type(request)
        if object_type is None:
            return _error(404, "Unable to infer object type", "OBJECT_NOT_FOUND")
        inputs = (await request.json() or {}).get("inputs") or []
        if not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 records", "VALIDATION_ERROR")
        for item in inputs:
            if "idProperty" in item:
                return _error(400, "update by id only here", "VALIDATION_ERROR")
            problems = self._problems(object_type, item.get("properties") or {})
            if problems:
                return web.json_response(_invalid_properties(problems), status=400)
        now = _now()
        results, errors = [], []
        for item in inputs:
            record_id = str(item["id"])
            stored = self.objects[object_type].get(record_id)
            if stored is None:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"Object not found. objectId are usually numeric. {record_id}",
                        "context": {"ids": [record_id]},
                    }
                )
                continue
            stored.update(item.get("properties") or {})
            results.append(
                {
                    "id": record_id,
                    "properties": {**stored, "hs_object_id": record_id},
                    "createdAt": self.created[record_id][0],
                    "updatedAt": now,
                    "archived": False,
                }
            )
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results[::-1]}
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        return web.json_response(answer, status=207 if errors else 200)

    async def _search(self, request: web.Request) -> web.Response:
        """CRM search, for ``IN``/``EQ`` filters: like HubSpot, ``IN`` on a string property
        matches only lower-case values, a body over 3,000 characters or a page over 200 is a
        400, and a record written less than ``index_lag`` seconds ago is not seen yet."""
        object_type = self._object_type(request)
        if object_type is None:
            return _error(404, "Unable to infer object type", "OBJECT_NOT_FOUND")
        raw = await request.text()
        if len(raw) > 3000:
            return _error(400, "Request body exceeds 3000 characters", "VALIDATION_ERROR")
        body = json.loads(raw)
        limit = body.get("limit", 10)
        if not 1 <= limit <= 200:
            return _error(400, "limit must be 1 to 200", "VALIDATION_ERROR")
        known = self.properties[object_type]
        groups = body.get("filterGroups") or []
        for group in groups:
            for condition in group["filters"]:
                if condition["propertyName"] not in known:
                    return _error(
                        400,
                        f"There was a problem with the request: unknown property "
                        f"{condition['propertyName']}",
                        "VALIDATION_ERROR",
                    )

        def holds(condition: dict[str, Any], props: dict[str, str]) -> bool:
            value = props.get(condition["propertyName"])
            if value is None:
                return False
            if condition["operator"] == "IN":
                return value.lower() in condition["values"]
            if condition["operator"] == "EQ":
                return value.lower() == str(condition["value"]).lower()
            raise AssertionError(f"operator {condition['operator']} not faked")

        now = time.monotonic()
        matching = [
            (record_id, props)
            for record_id, props in sorted(
                self.objects[object_type].items(), key=lambda pair: int(pair[0])
            )
            if now - self.created[record_id][1] >= self.index_lag
            and (not groups or any(all(holds(c, props) for c in g["filters"]) for g in groups))
        ]
        start = int(body.get("after", 0))
        end = start + min(limit, self.search_page_cap)
        wanted = body.get("properties") or []
        results = [
            {
                "id": record_id,
                "properties": {name: props.get(name) for name in wanted}
                | {
                    "hs_object_id": record_id,
                    "hs_createdate": self.created[record_id][0],
                    "hs_lastmodifieddate": self.created[record_id][0],
                },
                "createdAt": self.created[record_id][0],
                "updatedAt": self.created[record_id][0],
                "archived": False,
            }
            for record_id, props in matching[start:end]
        ]
        answer: dict[str, Any] = {"total": len(matching), "results": results}
        if end < len(matching):
            answer["paging"] = {"next": {"after": str(end), "link": "?after=" + str(end)}}
        return web.json_response(answer)

    def _problems(self, object_type: str, properties: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            problem
            for name, value in properties.items()
            if (problem := self._invalid(object_type, name, value)) is not None
        ]

    def _invalid(self, object_type: str, name: str, value: Any) -> dict[str, Any] | None:
        definition = self.properties[object_type].get(name)
        if definition is None:
            return {
                "isValid": False,
                "message": f'Property "{name}" does not exist',
                "error": "PROPERTY_DOESNT_EXIST",
                "name": name,
                "localizedErrorMessage": f'Property "{name}" does not exist',
                "portalId": 891936587,
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
        """v4 default associations: ``results`` lists each link made as ``from``/``to`` ids and
        its ``associationSpec``; links that fail are ``errors`` of a 207."""
        from_type, to_type = request.match_info["from"], request.match_info["to"]
        inputs = (await request.json() or {}).get("inputs") or []
        results, errors = [], []
        for item in inputs:
            from_id, to_id = str(item["from"]["id"]), str(item["to"]["id"])
            if from_id not in self.objects.get(from_type, {}) or to_id not in self.objects.get(
                to_type, {}
            ):
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": f"No {from_type} with ID {from_id} or no {to_type} with ID {to_id}",
                        "context": {"fromObjectId": [from_id]},
                    }
                )
                continue
            self.associations.add((from_type, from_id, to_type, to_id))
            results.append(
                {
                    "from": {"id": from_id},
                    "to": {"id": to_id},
                    "associationSpec": {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": ASSOCIATION_TYPES[(from_type, to_type)],
                    },
                }
            )
        now = _now()
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        answer |= {"startedAt": now, "completedAt": now}
        return web.json_response(answer, status=207 if errors else 200)

    async def _create_group(self, request: web.Request) -> web.Response:
        object_type = request.match_info["object"]
        body = await request.json()
        if body["name"] in self.groups[object_type]:
            return _error(
                409, f"Property group {body['name']} already exists", "OBJECT_ALREADY_EXISTS"
            )
        self.groups[object_type].add(body["name"])
        return web.json_response({**body, "archived": False}, status=201)

    async def _read_property(self, request: web.Request) -> web.Response:
        object_type, name = request.match_info["object"], request.match_info["name"]
        definition = self.properties.get(object_type, {}).get(name)
        if definition is None:
            return _error(
                404, f"Unable to find property {name} for object type", "OBJECT_NOT_FOUND"
            )
        return web.json_response(
            {
                "name": name,
                "label": name,
                "type": definition["type"],
                "fieldType": "text",
                "groupName": "eventrouter",
                "hasUniqueValue": definition["hasUniqueValue"],
                "hidden": False,
                "formField": False,
            }
        )

    async def _create_property(self, request: web.Request) -> web.Response:
        object_type = request.match_info["object"]
        body = await request.json()
        if body["name"] in self.properties[object_type]:
            return _error(
                409, f"Property named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS"
            )
        if body.get("groupName") not in self.groups[object_type]:
            return _error(400, f"group {body.get('groupName')} does not exist", "VALIDATION_ERROR")
        if body.get("hasUniqueValue") and object_type not in UNIQUE_CAPABLE:
            # HubSpot documents unique values for contacts, companies, deals, tickets and
            # custom objects only; this fake refuses them elsewhere
            return _error(
                400, f"Unique values are not supported for {object_type}", "VALIDATION_ERROR"
            )
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
        sink = CRMSink("crm", structure_options(document, CRMOptions))
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
    """A ``call.ended`` event shaped like the Altur source's (docs/provider-reference.md's on_call_end)."""
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
