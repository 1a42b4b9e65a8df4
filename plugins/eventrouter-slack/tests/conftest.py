"""A fake Slack on 127.0.0.1 (incoming webhooks and chat.postMessage), and sink/event factories."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from attrs import define, field
from multidict import CIMultiDictProxy

from eventrouter import Event, EventData, SinkContext
from eventrouter.testing import structure_options
from eventrouter_slack import SlackOptions, SlackSink

TOKEN = "xoxb-1111-2222-SeCrEtToKeNvAlUe"
WEBHOOK_SECRET = "XXXXwebhookSECRETxxxx"
WEBHOOK_PATH = f"/services/T0001/B0001/{WEBHOOK_SECRET}"


@define
class Reply:
    """A scripted answer of the fake Slack."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(factory=dict)
    content_type: str = "text/html"
    delay: float = 0.0

    @classmethod
    def api(cls, status: int = 200, headers: dict[str, str] | None = None, **payload: Any) -> Reply:
        return cls(status, json.dumps(payload), headers or {}, "application/json")


@define
class Received:
    path: str
    headers: CIMultiDictProxy[str]
    json: Any
    at: float


@define
class FakeSlack:
    """Speaks Slack's shapes: ``ok`` from a webhook, ``{"ok": true}`` from chat.postMessage."""

    Reply: ClassVar[type[Reply]] = Reply
    token: str = TOKEN
    webhook_secret: str = WEBHOOK_SECRET
    url: str = ""
    requests: list[Received] = field(factory=list)
    scripts: dict[str, deque[Reply]] = field(factory=dict)
    changed: asyncio.Event = field(factory=asyncio.Event)

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, then as usual."""
        self.scripts.setdefault(path, deque()).extend(replies)

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            self.changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.2)):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return self.requests

    async def _record(self, request: web.Request) -> Reply | None:
        body = await request.read()
        self.requests.append(
            Received(request.path, request.headers, json.loads(body), time.monotonic())
        )
        self.changed.set()
        queue = self.scripts.get(request.path)
        return queue.popleft() if queue else None

    async def webhook(self, request: web.Request) -> web.Response:
        reply = await self._record(request)
        if reply is None:
            reply = Reply() if request.path == WEBHOOK_PATH else Reply(404, "no_service")
        return await _response(reply)

    async def post_message(self, request: web.Request) -> web.Response:
        reply = await self._record(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            reply = Reply.api(ok=False, error="invalid_auth")
        elif reply is None:
            payload = self.requests[-1].json
            reply = Reply.api(
                ok=True,
                channel="C0123456789",
                ts="1700000000.000100",
                message={"type": "message", "text": payload.get("text")},
            )
        return await _response(reply)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/{tail:.+}", self.webhook)
        app.router.add_post("/api/chat.postMessage", self.post_message)
        return app


async def _response(reply: Reply) -> web.Response:
    if reply.delay:
        await asyncio.sleep(reply.delay)
    return web.Response(
        status=reply.status,
        text=reply.body,
        headers=reply.headers,
        content_type=reply.content_type,
    )


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load only this plugin's entry point (still found through the ``eventrouter`` group),
    so another plugin installed in the same environment cannot change these tests."""
    monkeypatch.setenv("EVENTROUTER_LOAD_PLUGINS", "slack")


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_sink(
    http: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_sink(webhook_url=..., ...)``: a started slack sink on the shared session."""
    sinks: list[SlackSink] = []

    async def factory(name: str = "alerts", **options: Any) -> SlackSink:
        sink = SlackSink(name, structure_options(options, SlackOptions))
        assert list(sink.check()) == []
        await sink.start(
            SinkContext(http=http, base_dir=tmp_path, logger=logging.getLogger("test.sink"))
        )
        sinks.append(sink)
        return sink

    yield factory
    for sink in sinks:
        await sink.close()


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """``make_event(type, data=EventData(...))``: an event with fixed times."""
    return _make_event


def _make_event(
    type: str = "call.ended",
    *,
    data: EventData | None = None,
    id: str = "evt_0001",
    source: str = "altur",
    provider: str = "altur",
    provider_type: str | None = None,
    time: datetime = datetime(2026, 6, 8, 18, 0, tzinfo=UTC),
) -> Event:
    """An event as a source would make it, with fixed times so messages can be compared."""
    return Event(
        id=id,
        source=source,
        type=type,
        time=time,
        provider=provider,
        provider_type=provider_type or type,
        idempotency_key=f"key-{id}",
        received_at=time,
        data=data or EventData(),
    )
