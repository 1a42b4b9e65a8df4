"""Test kit for eventrouter and its plugins, loaded by pytest through the ``pytest11`` entry point.

Fixtures:

- ``make_router``: an async factory; ``await make_router(config_dict)`` starts a real server on
  127.0.0.1 with a temporary SQLite store and returns a :class:`RouterHarness`.
- ``recorded``: the :class:`Recorder` every ``recording`` sink of the test writes into.
- ``register_plugin``: ``register_plugin(obj)`` adds a plugin object for this test only.

Functions: ``installed_types()``, ``installed_plugins()``, ``parse_config(document, types)``,
``structure_options(table, Options)`` and ``sign_request``. This module's ``__all__`` is public
API for plugin tests (docs/plugin-api.md); the core modules it draws on are not.

A config may use ``plugin = "recording"`` sinks (options: ``fail_times``, ``fail_with`` =
``"retryable"`` | ``"permanent"``, ``delay``) to capture what would be delivered, and
``plugin = "recording-batch"`` sinks (the same, through ``deliver_batch``; ``refuse_types``: the
event types it refuses one by one, with ``fail_with``) for batch delivery.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from attrs import define, field, frozen

from eventrouter.app import STORE, create_app
from eventrouter.config import Config, parse_config
from eventrouter.converter import EMPTY_SECRET, Duration, converter
from eventrouter.errors import DeliveryError, PermanentError, RetryableError
from eventrouter.events import Event, new_event_id
from eventrouter.hookspecs import hookimpl
from eventrouter.plugins import PluginInfo, Registry, create_plugin_manager, plugin_infos
from eventrouter.sinks import Sink
from eventrouter.sources import SignedRequest, Source
from eventrouter.store import Store
from eventrouter.store.base import DeliveryState

__all__ = [
    "EMPTY_SECRET",
    "DeliveryState",
    "Recorder",
    "RecordingBatchSink",
    "RecordingSink",
    "RouterHarness",
    "installed_plugins",
    "installed_types",
    "new_event_id",
    "parse_config",
    "sign_request",
    "structure_options",
]

T = TypeVar("T")


@define
class Recorder:
    """What ``recording`` sinks received: ``events[sink_name]`` in delivery order."""

    events: dict[str, list[Event]] = field(factory=dict)
    attempts: dict[str, int] = field(factory=dict)
    #: the size of each batch ``recording-batch`` sinks were handed, in order
    batches: dict[str, list[int]] = field(factory=dict)
    changed: asyncio.Event | None = None

    def record(self, sink: str, event: Event) -> None:
        self.events.setdefault(sink, []).append(event)
        self._notify()

    def attempt(self, sink: str) -> int:
        self.attempts[sink] = self.attempts.get(sink, 0) + 1
        self._notify()
        return self.attempts[sink]

    def _notify(self) -> None:
        if self.changed is not None:
            self.changed.set()

    async def wait_for(self, sink: str, count: int, *, timeout: float = 10.0) -> list[Event]:
        """Wait until ``sink`` has received ``count`` events; AssertionError after ``timeout``."""
        await self.wait_until(
            lambda: len(self.events.get(sink, [])) >= count,
            timeout=timeout,
            what=f"{count} events at sink {sink!r}",
        )
        return self.events[sink]

    async def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever a recording sink is called."""
        if self.changed is None:
            self.changed = asyncio.Event()
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; got {self.summary()}"
                )
            self.changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.2)):
                    await self.changed.wait()
            except TimeoutError:
                pass

    def summary(self) -> dict[str, int]:
        return {sink: len(events) for sink, events in self.events.items()}


@frozen
class RecordingOptions:
    #: fail this many attempts before succeeding
    fail_times: int = 0
    #: how the failing attempts fail
    fail_with: str = "retryable"
    #: seconds each attempt takes
    delay: Duration = Duration(0)
    #: Retry-After (seconds) to report on retryable failures
    retry_after: float | None = None


class RecordingSink(Sink):
    """A sink that records what it is given, optionally failing first (for tests)."""

    type_name = "recording"
    Options = RecordingOptions
    recorder: Recorder  # set per test on the subclass the test kit registers

    def check(self) -> Iterable[str]:
        if self.options.fail_with not in ("retryable", "permanent"):
            yield "fail_with: expected 'retryable' or 'permanent'"

    async def deliver(self, event: Event) -> None:
        attempt = self.recorder.attempt(self.name)
        if self.options.delay:
            await asyncio.sleep(self.options.delay)
        if attempt <= self.options.fail_times:
            raise self._failure(attempt)
        self.recorder.record(self.name, event)

    def _failure(self, attempt: int) -> DeliveryError:
        if self.options.fail_with == "permanent":
            return PermanentError(f"recording sink refused attempt {attempt}")
        return RetryableError(
            f"recording sink failed attempt {attempt}", retry_after=self.options.retry_after
        )


@frozen
class RecordingBatchOptions(RecordingOptions):
    #: events of these types are refused one by one (as ``fail_with`` says), the rest delivered
    refuse_types: list[str] = field(factory=list)


class RecordingBatchSink(RecordingSink):
    """A ``recording`` sink that takes its events in batches (``deliver_batch``), for tests."""

    type_name = "recording-batch"
    Options = RecordingBatchOptions

    async def deliver_batch(self, events: Sequence[Event]) -> dict[str, DeliveryError]:
        recorder = self.recorder
        attempt = recorder.attempt(self.name)
        recorder.batches.setdefault(self.name, []).append(len(events))
        if self.options.delay:
            await asyncio.sleep(self.options.delay)
        if attempt <= self.options.fail_times:
            raise self._failure(attempt)
        refused: dict[str, DeliveryError] = {}
        for event in events:
            if event.type in self.options.refuse_types:
                refused[event.id] = self._failure(attempt)
            else:
                recorder.record(self.name, event)
        return refused


class _RecordingPlugin:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    @hookimpl
    def register_sinks(self, register: Callable[[type[Sink]], None]) -> None:
        recorder = self.recorder

        class BoundRecordingSink(RecordingSink):
            pass

        class BoundRecordingBatchSink(RecordingBatchSink):
            pass

        for bound in (BoundRecordingSink, BoundRecordingBatchSink):
            bound.recorder = recorder
            register(bound)


def installed_types() -> Registry:
    """The source and sink types installed plugins provide (a plugin's first test checks its own)."""
    return Registry.collect(create_plugin_manager())


def installed_plugins() -> list[PluginInfo]:
    """What ``eventrouter plugins`` lists: each installed plugin, its distribution and types."""
    return plugin_infos(create_plugin_manager())


def structure_options(table: Mapping[str, Any], options_class: type[T]) -> T:
    """A plugin's ``Options`` from a config table's keys, read exactly as the config file's are."""
    return converter.structure(table, options_class)


def sign_request(
    source: Source, body: bytes | str | Mapping[str, Any], *, content_type: str = "application/json"
) -> tuple[bytes, SignedRequest]:
    """``body`` as bytes and the headers/query that make it genuine to ``source``."""
    if isinstance(body, Mapping):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return body, source.sign(body, content_type=content_type)


@define
class RouterHarness:
    """A running router: post signed webhooks to it, look into its store, stop it."""

    config: Config
    client: TestClient[web.Request, web.Application]
    recorder: Recorder

    @property
    def store(self) -> Store:
        return self.client.app[STORE]

    @property
    def url(self) -> str:
        return str(self.client.make_url(""))

    async def post(
        self,
        source: str,
        body: bytes | str | Mapping[str, Any],
        *,
        signed: bool = True,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST ``body`` to ``source``'s path, signed with its configured secret unless told not to.

        Returns the status and the decoded JSON answer.
        """
        instance = self.config.sources[source]
        data, signature = (
            sign_request(instance, body, content_type=content_type)
            if signed
            else (_bytes(body), SignedRequest())
        )
        all_headers = {"Content-Type": content_type, **signature.headers, **(headers or {})}
        params = {**signature.query, **(query or {})}
        async with self.client.post(
            self.config.source_paths[source], data=data, headers=all_headers, params=params
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


def _bytes(body: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(body, Mapping):
        return json.dumps(body).encode()
    return body.encode() if isinstance(body, str) else body


@pytest.fixture
def recorded() -> Recorder:
    """The recorder of this test's ``recording`` sinks."""
    return Recorder()


@pytest.fixture
def extra_plugins() -> list[Any]:
    """Plugin objects registered for this test only (see ``register_plugin``)."""
    return []


@pytest.fixture
def register_plugin(extra_plugins: list[Any]) -> Callable[[Any], None]:
    """Register a plugin object (a module or an object with ``@hookimpl`` methods) for this test."""
    return extra_plugins.append


@pytest.fixture
async def make_router(
    tmp_path: Path, recorded: Recorder, extra_plugins: list[Any]
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_router(config_dict, environ={...})``: a running router on 127.0.0.1."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def factory(
        document: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        deliver: bool = True,
    ) -> RouterHarness:
        document = dict(document)
        document.setdefault("store", {})
        document["store"] = {"path": str(tmp_path / "eventrouter.db"), **document["store"]}
        pm = create_plugin_manager(plugins=[_RecordingPlugin(recorded), *extra_plugins])
        config = parse_config(
            document, Registry.collect(pm), base_dir=tmp_path, environ=environ or {}
        )
        app = create_app(config, pm=pm, deliver=deliver)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return RouterHarness(config=config, client=client, recorder=recorded)

    yield factory
    for client in clients:
        await client.close()
