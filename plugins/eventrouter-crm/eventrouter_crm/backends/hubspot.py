"""HubSpot CRM v3 (objects, batch upsert) and v4 (associations), with a private app token."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from eventrouter.errors import DeliveryError, RetryableError
from eventrouter.sinks import SinkContext
from eventrouter_crm.backends.hubspot_shapes import (
    CALLS,
    CONTACTS,
    DEFAULT_DISPOSITIONS,
    DISPOSITION_KEYS,
    NOTES,
    HubSpotRefused,
    Link,
    UpsertInput,
    association_body,
    association_results,
    call_properties,
    contact_input,
    error_for_response,
    note_properties,
    property_definition,
    property_group,
    upsert_body,
    upsert_results,
)
from eventrouter_crm.batching import Batcher
from eventrouter_crm.options import CRMOptions
from eventrouter_crm.ratelimit import RateGate
from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord

__all__ = ["HubSpotBackend", "HubSpotClient"]

log = logging.getLogger("eventrouter_crm.hubspot")
T = TypeVar("T")

#: a pause after a 429 longer than this fails deliveries at once instead of waiting
MAX_PAUSE_WAIT = 10.0
RATE_PERIOD = 10.0
#: the group the properties ``create_properties`` makes are put in
PROPERTY_GROUP = "eventrouter"
#: HubSpot's upsert batches take up to 100 inputs
MAX_BATCH = 100


class HubSpotClient:
    """Sends JSON requests with the bearer token; answers (status, JSON) or raises a classified error.

    The token is sent in the ``Authorization`` header only, and scrubbed from every message
    this client raises.
    """

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_base: str,
        token: str,
        timeout: float,
        gate: RateGate,
    ) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._gate = gate

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        await self._gate.acquire()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with self._http.request(
                method,
                self._api_base + path,
                json=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                text = await response.text(errors="replace")
                status, response_headers = response.status, response.headers
        except TimeoutError:
            raise RetryableError(
                f"HubSpot did not answer {method} {path} within {self._timeout.total:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(
                self._scrub(f"HubSpot unreachable ({method} {path}): {type(exc).__name__}: {exc}")
            ) from None
        payload = _json(text)
        if 200 <= status < 300:
            return status, payload
        error = error_for_response(status, payload, text=text, headers=response_headers)
        error = _scrubbed(error, self._scrub)
        if status == 429 and isinstance(error, RetryableError) and error.retry_after:
            # every request of this sink waits, not only the deliveries of this batch
            self._gate.pause(error.retry_after)
            log.info("HubSpot rate limit: pausing requests for %.1fs", error.retry_after)
        else:
            log.debug("HubSpot refused %s %s: %s", method, path, error.message)
        raise error

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[redacted]") if self._token else text


class HubSpotBackend:
    """Contacts by batch upsert; calls and notes by batch upsert on a unique event id property,
    linked to their contact with v4 default associations. Concurrent writes share requests."""

    def __init__(self, options: CRMOptions, context: SinkContext) -> None:
        self.options = options
        self.client = HubSpotClient(
            http=context.http,
            api_base=options.api_base,
            token=options.token,
            timeout=float(options.request_timeout),
            gate=RateGate(
                limit=options.requests_per_10s, period=RATE_PERIOD, max_wait=MAX_PAUSE_WAIT
            ),
        )
        self.dispositions = {
            key: value
            for key, value in {**DEFAULT_DISPOSITIONS, **options.dispositions}.items()
            if value
        }
        window, size = float(options.batch_window), min(options.batch_size, MAX_BATCH)

        def upserter(object_type: str, id_property: str) -> Batcher[UpsertInput, str]:
            return Batcher(
                partial(self._upsert, object_type, id_property),
                window=window,
                max_size=size,
                key=lambda item: item.id_value.casefold(),
                merge=UpsertInput.merge,
            )

        def linker(object_type: str) -> Batcher[Link, str]:
            return Batcher(partial(self._associate, object_type), window=window, max_size=size)

        self._contacts = {
            "email": upserter(CONTACTS, "email"),
            options.phone_id_property: upserter(CONTACTS, options.phone_id_property),
        }
        self._calls = upserter(CALLS, options.event_id_property)
        self._notes = upserter(NOTES, options.event_id_property)
        self._links = {CALLS: linker(CALLS), NOTES: linker(NOTES)}
        self._properties_ready = not options.create_properties
        self._properties_lock = asyncio.Lock()

    @staticmethod
    def check(options: CRMOptions) -> Iterable[str]:
        if not options.token.strip():
            yield "token: required (a HubSpot private app access token)"
        parts = urlsplit(options.api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            yield f"api_base: expected an http:// or https:// URL, got {options.api_base!r}"
        if options.phone_id_property in ("email", "phone"):
            yield (
                "phone_id_property: must be a unique custom property (e.g. eventrouter_phone); "
                "HubSpot's phone is not unique and email is matched already"
            )
        for name in ("phone_id_property", "event_id_property"):
            value = getattr(options, name)
            if not value or any(c.isspace() for c in value):
                yield f"{name}: expected a property's internal name, got {value!r}"
        if not 1 <= options.batch_size <= MAX_BATCH:
            yield f"batch_size: HubSpot takes 1 to {MAX_BATCH} records per batch"
        unknown = sorted(set(options.dispositions) - DISPOSITION_KEYS)
        if unknown:
            yield (
                f"dispositions: unknown call outcome {', '.join(map(repr, unknown))} "
                f"(expected one of {', '.join(sorted(DISPOSITION_KEYS))})"
            )

    async def upsert_contact(self, contact: ContactRecord) -> str:
        await self._ensure_properties()
        id_property, item = contact_input(contact, phone_id_property=self.options.phone_id_property)
        return await self._contacts[id_property].submit(item)

    async def record_call(self, call: CallRecord, *, contact_id: str | None) -> str:
        await self._ensure_properties()
        properties = call_properties(
            call, event_id_property=self.options.event_id_property, dispositions=self.dispositions
        )
        call_id = await self._calls.submit(UpsertInput(call.external_id, properties))
        if contact_id is not None:
            await self._links[CALLS].submit(Link(call_id, contact_id))
        return call_id

    async def add_note(self, note: NoteRecord, *, contact_id: str) -> str:
        await self._ensure_properties()
        properties = note_properties(note, event_id_property=self.options.event_id_property)
        note_id = await self._notes.submit(UpsertInput(note.external_id, properties))
        await self._links[NOTES].submit(Link(note_id, contact_id))
        return note_id

    async def close(self) -> None:
        # all at once: a delivery whose contact is sent now goes on to the calls batcher,
        # which must not hold it for a window any more
        batchers = [*self._contacts.values(), self._calls, self._notes, *self._links.values()]
        await asyncio.gather(*(batcher.close() for batcher in batchers))

    async def _upsert(
        self, object_type: str, id_property: str, items: list[UpsertInput]
    ) -> Sequence[str | DeliveryError]:
        path = f"/crm/v3/objects/{object_type}/batch/upsert"
        try:
            _, payload = await self.client.request("POST", path, upsert_body(id_property, items))
        except HubSpotRefused as exc:
            if exc.status == 400 and len(items) > 1:
                # one invalid record fails HubSpot's whole batch: send each alone so the
                # others are written and only the invalid one is dead-lettered
                return await self._one_by_one(
                    partial(self._upsert, object_type, id_property), items
                )
            raise
        return upsert_results(items, payload, id_property=id_property, object_type=object_type)

    async def _associate(
        self, object_type: str, links: list[Link]
    ) -> Sequence[str | DeliveryError]:
        path = f"/crm/v4/associations/{object_type}/{CONTACTS}/batch/associate/default"
        try:
            _, payload = await self.client.request("POST", path, association_body(links))
        except HubSpotRefused as exc:
            if exc.status == 400 and len(links) > 1:
                return await self._one_by_one(partial(self._associate, object_type), links)
            raise
        return association_results(links, payload)

    @staticmethod
    async def _one_by_one(
        send: Callable[[list[T]], Awaitable[Sequence[str | DeliveryError]]], items: Sequence[T]
    ) -> list[str | DeliveryError]:
        async def one(item: T) -> str | DeliveryError:
            try:
                return (await send([item]))[0]
            except DeliveryError as exc:
                return exc

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _ensure_properties(self) -> None:
        """Create the unique properties this sink matches on, once, before the first write."""
        if self._properties_ready:
            return
        async with self._properties_lock:
            if self._properties_ready:
                return
            wanted = [
                (
                    CONTACTS,
                    self.options.phone_id_property,
                    "Phone number eventrouter matches contacts known only by phone on",
                ),
                (
                    CALLS,
                    self.options.event_id_property,
                    "The webhook this call was logged from (keeps re-deliveries from logging it twice)",
                ),
                (
                    NOTES,
                    self.options.event_id_property,
                    "The webhook this note was written from (keeps re-deliveries from writing it twice)",
                ),
            ]
            for object_type, name, description in wanted:
                await self._create(
                    f"/crm/v3/properties/{object_type}/groups", property_group(PROPERTY_GROUP)
                )
                await self._create(
                    f"/crm/v3/properties/{object_type}",
                    property_definition(name, group=PROPERTY_GROUP, description=description),
                )
                log.info("HubSpot %s property %s is ready", object_type, name)
            self._properties_ready = True

    async def _create(self, path: str, body: dict[str, Any]) -> None:
        try:
            await self.client.request("POST", path, body)
        except HubSpotRefused as exc:
            if exc.status != 409:  # 409: it exists already
                raise


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _scrubbed(error: DeliveryError, scrub: Any) -> DeliveryError:
    clean = scrub(error.message)
    if clean == error.message:
        return error
    error.message = clean
    error.args = (clean,)
    return error
