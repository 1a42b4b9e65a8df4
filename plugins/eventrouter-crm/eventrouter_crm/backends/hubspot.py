"""HubSpot CRM v3 (objects, search, properties) and v4 (associations), with a private app token."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from eventrouter import DeliveryError, SinkContext
from eventrouter_crm.backends.hubspot_shapes import (
    ACCOUNT_POLICIES,
    ASSOCIATION_TYPE_IDS,
    CALLS,
    CONTACTS,
    DEFAULT_DISPOSITIONS,
    DISPOSITION_KEYS,
    NOTES,
    EngagementInput,
    HubSpotRefused,
    HubSpotRetryable,
    Link,
    UpsertInput,
    association_body,
    association_results,
    call_properties,
    contact_input,
    create_body,
    create_results,
    encode,
    error_for_response,
    note_properties,
    oldest,
    property_definition,
    property_group,
    search_bodies,
    search_matches,
    update_body,
    update_results,
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
#: HubSpot's batch endpoints take up to 100 inputs
MAX_BATCH = 100
#: how long HubSpot's search may take to see a record just written ("a few moments"); a
#: create whose answer was lost is retried no sooner, so the retry's search finds it
INDEX_LAG = 15.0
#: how long this process trusts its own memory of a call or note it wrote over search
RECENT_WRITES = 60.0
#: a mapped contact property HubSpot said does not exist is left out for this long
MISSING_PROPERTY_RECHECK = 600.0
#: the most search pages read for one request (HubSpot stops at 10,000 results)
MAX_SEARCH_PAGES = 50


class HubSpotClient:
    """Sends JSON requests with the bearer token; answers (status, JSON) or raises a classified error.

    Every request waits for a slot of ``gate``; searches also for one of ``search_gate``
    (HubSpot limits searches per second on their own). The token is sent in the
    ``Authorization`` header only, and scrubbed from every message this client raises.
    """

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_base: str,
        token: str,
        timeout: float,
        gate: RateGate,
        search_gate: RateGate | None = None,
    ) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._gate = gate
        self._search_gate = search_gate or gate

    async def request(
        self, method: str, path: str, body: Any = None, *, search: bool = False
    ) -> tuple[int, Any]:
        if search:
            await self._search_gate.acquire()
        await self._gate.acquire()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = encode(body)
        try:
            async with self._http.request(
                method,
                self._api_base + path,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                text = await response.text(errors="replace")
                status, response_headers = response.status, response.headers
        except TimeoutError:
            raise HubSpotRetryable(
                f"HubSpot did not answer {method} {path} within {self._timeout.total:g}s",
                status=None,
            ) from None
        except aiohttp.ClientError as exc:
            raise HubSpotRetryable(
                self._scrub(f"HubSpot unreachable ({method} {path}): {type(exc).__name__}: {exc}"),
                status=None,
            ) from None
        payload = _json(text)
        if 200 <= status < 300:
            return status, payload
        error = error_for_response(status, payload, text=text, headers=response_headers)
        error = _scrubbed(error, self._scrub)
        if status == 429 and isinstance(error, HubSpotRetryable) and error.retry_after:
            # a search limit pauses the searches; an account limit every request of this sink
            searches_only = search and error.policy not in ACCOUNT_POLICIES
            (self._search_gate if searches_only else self._gate).pause(error.retry_after)
            log.info(
                "HubSpot rate limit: pausing %s for %.1fs",
                "searches" if searches_only else "requests",
                error.retry_after,
            )
        else:
            log.debug("HubSpot refused %s %s: %s", method, path, error.message)
        raise error

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[redacted]") if self._token else text


class HubSpotBackend:
    """Contacts by batch upsert; calls and notes found again by the event id property (search),
    then updated, or created with their contact association. Concurrent writes share requests."""

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
            search_gate=_per_second_gate(options.search_requests_per_second),
        )
        self.dispositions = {
            key: value
            for key, value in {**DEFAULT_DISPOSITIONS, **options.dispositions}.items()
            if value
        }
        window, size = float(options.batch_window), min(options.batch_size, MAX_BATCH)

        def contacts(id_property: str) -> Batcher[UpsertInput, str]:
            return Batcher(
                partial(self._upsert_contacts, id_property),
                window=window,
                max_size=size,
                key=lambda item: item.id_value.casefold(),
                merge=UpsertInput.merge,
            )

        def linker(object_type: str) -> Batcher[Link, str]:
            return Batcher(partial(self._associate, object_type), window=window, max_size=size)

        self._contacts = {
            "email": contacts("email"),
            options.phone_id_property: contacts(options.phone_id_property),
        }
        self._links = {CALLS: linker(CALLS), NOTES: linker(NOTES)}
        self.calls = Engagements(self, CALLS, window=window, size=size)
        self.notes = Engagements(self, NOTES, window=window, size=size)
        #: contact properties the sink writes itself; never left out
        own = {"email", "phone", "firstname", "lastname", options.phone_id_property}
        self._mapped = set(options.property_mapping.values()) - own
        #: mapped contact property HubSpot said does not exist -> when it said so
        self._missing: dict[str, float] = {}
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
        rate = options.search_requests_per_second
        if not (math.isfinite(rate) and rate > 0):
            yield "search_requests_per_second: expected more than 0 (HubSpot allows 5 per account)"
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
        return await self.calls.write(EngagementInput(call.external_id, properties, contact_id))

    async def add_note(self, note: NoteRecord, *, contact_id: str) -> str:
        await self._ensure_properties()
        properties = note_properties(note, event_id_property=self.options.event_id_property)
        return await self.notes.write(EngagementInput(note.external_id, properties, contact_id))

    async def close(self) -> None:
        # all at once: a delivery whose contact is sent now goes on to the calls batcher,
        # which must not hold it for a window any more
        batchers = [
            *self._contacts.values(),
            self.calls.batcher,
            self.notes.batcher,
            *self._links.values(),
        ]
        await asyncio.gather(*(batcher.close() for batcher in batchers))

    # contacts

    async def _upsert_contacts(
        self, id_property: str, items: list[UpsertInput]
    ) -> list[str | DeliveryError]:
        """Upsert contacts, leaving out mapped properties HubSpot does not have.

        One wrong ``property_mapping`` entry must not stop every call from being logged: when
        HubSpot answers PROPERTY_DOESNT_EXIST naming mapped properties, the contacts are sent
        again without them (and later ones left without them for a while), with a warning.
        """
        missing = self._missing_properties()
        if missing:
            items = [item.without(missing) for item in items]
        path = f"/crm/v3/objects/{CONTACTS}/batch/upsert"
        try:
            _, payload = await self.client.request("POST", path, upsert_body(id_property, items))
        except HubSpotRefused as exc:
            if self._learn_missing(exc, items):
                return await self._upsert_contacts(id_property, items)
            if exc.status == 400 and len(items) > 1:
                # one invalid record fails HubSpot's whole batch: send each alone so the
                # others are written and only the invalid one is dead-lettered
                return await self._one_by_one(partial(self._upsert_contacts, id_property), items)
            raise
        answers = upsert_results(items, payload, id_property=id_property, object_type=CONTACTS)
        again = [
            position
            for position, answer in enumerate(answers)
            if isinstance(answer, HubSpotRefused) and self._learn_missing(answer, [items[position]])
        ]
        if again:
            retried = await self._upsert_contacts(id_property, [items[p] for p in again])
            for position, answer in zip(again, retried, strict=True):
                answers[position] = answer
        return answers

    def _missing_properties(self) -> set[str]:
        now = time.monotonic()
        for name, since in list(self._missing.items()):
            if now - since >= MISSING_PROPERTY_RECHECK:
                del self._missing[name]
        return set(self._missing)

    def _learn_missing(self, error: HubSpotRefused, items: Sequence[UpsertInput]) -> bool:
        """Whether ``error`` names mapped properties ``items`` hold that HubSpot lacks (they
        are then left out from now on)."""
        names = [
            name
            for name in error.unknown_properties
            if name in self._mapped and any(name in item.properties for item in items)
        ]
        new = [name for name in names if name not in self._missing]
        now = time.monotonic()
        for name in names:
            self._missing[name] = now
        if new:
            log.warning(
                "HubSpot has no contact property %s (named in property_mapping): contacts are "
                "written without it for the next %d minutes; create the property in HubSpot or "
                "correct property_mapping",
                ", ".join(new),
                MISSING_PROPERTY_RECHECK // 60,
            )
        return bool(names)

    # shared by contacts, calls and notes

    async def _upsert(
        self, object_type: str, id_property: str, items: list[UpsertInput]
    ) -> Sequence[str | DeliveryError]:
        path = f"/crm/v3/objects/{object_type}/batch/upsert"
        try:
            _, payload = await self.client.request("POST", path, upsert_body(id_property, items))
        except HubSpotRefused as exc:
            if exc.status == 400 and len(items) > 1:
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
        """Create the properties this sink matches on, once, before the first write."""
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
                    True,
                ),
                (
                    CALLS,
                    self.options.event_id_property,
                    "The webhook this call was logged from (a re-delivery updates this call)",
                    False,
                ),
                (
                    NOTES,
                    self.options.event_id_property,
                    "The webhook this note was written from (a re-delivery updates this note)",
                    False,
                ),
            ]
            for object_type, name, description, unique in wanted:
                await self._create(
                    f"/crm/v3/properties/{object_type}/groups", property_group(PROPERTY_GROUP)
                )
                await self._create(
                    f"/crm/v3/properties/{object_type}",
                    property_definition(
                        name, group=PROPERTY_GROUP, description=description, unique=unique
                    ),
                )
                log.info("HubSpot %s property %s is ready", object_type, name)
            self._properties_ready = True

    async def _create(self, path: str, body: dict[str, Any]) -> None:
        try:
            await self.client.request("POST", path, body)
        except HubSpotRefused as exc:
            if exc.status != 409:  # 409: it exists already
                raise


class Engagements:
    """Calls or notes, written at most once per event although events arrive at least once.

    HubSpot has no unique values on engagements, so the event id property is a plain one:
    before creating, a batch looks its keys up with the CRM search API, updates what it finds
    and creates the rest, each created record carrying its contact association. Should the
    account's property be unique after all, batch upsert on it is used instead.

    HubSpot's search sees a write only after a few moments. Within this process that window
    is covered: a key's writes never overlap, and what was written is remembered for
    ``RECENT_WRITES`` seconds. A create whose answer was lost is retried no sooner than
    ``INDEX_LAG`` seconds later.
    """

    def __init__(
        self, backend: HubSpotBackend, object_type: str, *, window: float, size: int
    ) -> None:
        self.backend = backend
        self.client = backend.client
        self.object_type = object_type
        self.id_property = backend.options.event_id_property
        self.association_type_id = ASSOCIATION_TYPE_IDS[object_type]
        #: whether the account's event id property is unique (read once), None before
        self.unique: bool | None = None
        self.remember = RECENT_WRITES
        self.clock: Callable[[], float] = time.monotonic
        self.batcher: Batcher[EngagementInput, tuple[str, bool]] = Batcher(
            self._write,
            window=window,
            max_size=size,
            key=lambda item: item.key,
            merge=EngagementInput.merge,
        )
        self._mode_lock = asyncio.Lock()
        self._recent: dict[str, tuple[str, float]] = {}
        self._writing: dict[str, asyncio.Future[None]] = {}

    async def write(self, item: EngagementInput) -> str:
        """The id of the record holding ``item``, created or updated."""
        await self._read_mode()
        while (busy := self._writing.get(item.key)) is not None:
            await asyncio.shield(busy)  # the same event is being written: wait for its id
        record_id, link = await self.batcher.submit(item)
        if link and item.contact_id is not None:
            try:
                await self.backend._links[self.object_type].submit(Link(record_id, item.contact_id))
            except BaseException:
                # not linked yet: the retry must search again, and link what it finds
                self._recent.pop(item.key, None)
                raise
        return record_id

    async def _read_mode(self) -> None:
        if self.unique is not None:
            return
        async with self._mode_lock:
            if self.unique is not None:
                return
            path = f"/crm/v3/properties/{self.object_type}/{self.id_property}"
            try:
                _, payload = await self.client.request("GET", path)
            except HubSpotRefused as exc:
                if exc.status != 404:
                    raise
                raise HubSpotRefused(
                    f"HubSpot has no {self.object_type} property {self.id_property}: create it "
                    "(single-line text) or set create_properties = true",
                    status=404,
                    category=exc.category,
                ) from None
            self.unique = isinstance(payload, Mapping) and payload.get("hasUniqueValue") is True
            log.info(
                "HubSpot %s are matched on %s by %s",
                self.object_type,
                self.id_property,
                "batch upsert (a unique property)" if self.unique else "search",
            )

    async def _write(self, items: list[EngagementInput]) -> list[tuple[str, bool] | DeliveryError]:
        """Each item's record id and whether its contact must still be linked, or its error."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # a batch holding one of these keys may still be in flight (it was sent while this
        # one was collected): wait for all of them, then claim every key at once
        while busy := {self._writing[i.key] for i in items if i.key in self._writing}:
            await asyncio.gather(*(asyncio.shield(future) for future in busy))
        for item in items:
            self._writing[item.key] = done
        try:
            if self.unique:
                answers = await self.backend._upsert(
                    self.object_type,
                    self.id_property,
                    [UpsertInput(item.key, item.properties) for item in items],
                )
                return [a if isinstance(a, DeliveryError) else (a, True) for a in answers]
            return await self._search_then_write(items)
        finally:
            for item in items:
                if self._writing.get(item.key) is done:
                    del self._writing[item.key]
            done.set_result(None)

    async def _search_then_write(
        self, items: list[EngagementInput]
    ) -> list[tuple[str, bool] | DeliveryError]:
        now = self.clock()
        for key, (_, written) in list(self._recent.items()):
            if now - written < self.remember:
                break  # oldest first: the rest are younger
            del self._recent[key]
        known = {item.key: self._recent[item.key][0] for item in items if item.key in self._recent}
        unknown = [item.key for item in items if item.key not in known]
        found = await self._search(unknown) if unknown else {}
        updates = [
            (item, known.get(item.key) or found[item.key])
            for item in items
            if item.key in known or item.key in found
        ]
        creates = [item for item in items if item.key not in known and item.key not in found]
        updated, created = await asyncio.gather(self._update(updates), self._create(creates))
        answers: dict[str, tuple[str, bool] | DeliveryError] = {}
        for (item, record_id), answer in zip(updates, updated, strict=True):
            if isinstance(answer, DeliveryError):
                self._recent.pop(item.key, None)
                answers[item.key] = answer
            else:
                self._remember(item.key, record_id)
                # found by search: written before, perhaps by another process or version;
                # the default association makes sure it is linked (HubSpot keeps one)
                answers[item.key] = (record_id, item.key in found)
        for item, answer in zip(creates, created, strict=True):
            if isinstance(answer, DeliveryError):
                answers[item.key] = answer
            else:
                self._remember(item.key, answer)
                answers[item.key] = (answer, False)
        return [answers[item.key] for item in items]

    def _remember(self, key: str, record_id: str) -> None:
        self._recent.pop(key, None)
        self._recent[key] = (record_id, self.clock())

    async def _search(self, keys: list[str]) -> dict[str, str]:
        """The record id holding each key HubSpot's search knows (the first created one)."""
        path = f"/crm/v3/objects/{self.object_type}/search"
        found: dict[str, list[tuple[str, str]]] = {}
        for body in search_bodies(self.id_property, keys):
            for _ in range(MAX_SEARCH_PAGES):
                _, payload = await self.client.request("POST", path, body, search=True)
                page, after = search_matches(payload, self.id_property, keys)
                for key, records in page.items():
                    found.setdefault(key, []).extend(records)
                if after is None:
                    break
                body = {**body, "after": after}
        ids: dict[str, str] = {}
        for key, records in found.items():
            if len(records) > 1:
                log.info(
                    "HubSpot holds %d %s with %s %s; updating the first created",
                    len(records),
                    self.object_type,
                    self.id_property,
                    key,
                )
            ids[key] = oldest(records)
        return ids

    async def _update(
        self, updates: list[tuple[EngagementInput, str]]
    ) -> list[str | DeliveryError]:
        if not updates:
            return []
        try:
            return await self._update_batch(updates)
        except DeliveryError as exc:
            return [exc] * len(updates)

    async def _update_batch(
        self, updates: list[tuple[EngagementInput, str]]
    ) -> list[str | DeliveryError]:
        path = f"/crm/v3/objects/{self.object_type}/batch/update"
        body = update_body([(record_id, item.properties) for item, record_id in updates])
        try:
            _, payload = await self.client.request("POST", path, body)
        except HubSpotRefused as exc:
            if exc.status == 400 and len(updates) > 1:
                return await self.backend._one_by_one(self._update_batch, updates)
            raise
        return update_results([record_id for _, record_id in updates], payload)

    async def _create(self, items: list[EngagementInput]) -> list[str | DeliveryError]:
        """Each created record's id, or its error; never raises, so no created id is lost."""
        if not items:
            return []
        try:
            answers = await self._create_batch(items)
        except DeliveryError as exc:
            answers = [exc] * len(items)
        return [_after_index_lag(a) if isinstance(a, DeliveryError) else a for a in answers]

    async def _create_batch(self, items: list[EngagementInput]) -> list[str | DeliveryError]:
        path = f"/crm/v3/objects/{self.object_type}/batch/create"
        body = create_body(items, association_type_id=self.association_type_id)
        try:
            _, payload = await self.client.request("POST", path, body)
        except HubSpotRefused as exc:
            if exc.status == 400 and len(items) > 1:
                return await self.backend._one_by_one(self._create_batch, items)
            raise
        return create_results(
            items, payload, id_property=self.id_property, object_type=self.object_type
        )


def _after_index_lag(error: DeliveryError) -> DeliveryError:
    """A create HubSpot may have carried out is retried once its search can see the record."""
    if not isinstance(error, HubSpotRetryable) or not error.maybe_written:
        return error
    wait = max(INDEX_LAG, error.retry_after or 0.0)
    return HubSpotRetryable(
        f"{error.message} (it may have been created: retried in {wait:g}s at the earliest, "
        "once HubSpot's search sees it)",
        status=error.status,
        retry_after=wait,
        policy=error.policy,
    )


def _per_second_gate(rate: float) -> RateGate:
    """At most ``rate`` requests a second, ``rate`` below 1 included (one every 1/rate s)."""
    limit = max(1, math.floor(rate))
    return RateGate(limit=limit, period=limit / rate, max_wait=MAX_PAUSE_WAIT)


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
