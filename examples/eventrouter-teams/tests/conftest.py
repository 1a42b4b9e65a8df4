"""A fake Microsoft Teams webhook on 127.0.0.1, a factory of started sinks, and a hook observer."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from attrs import define, field

from eventrouter import Sink, SinkContext, hookimpl
from eventrouter_teams import TeamsOptions, TeamsSink

# A Workflows webhook URL carries its credential in the query (sig=...), a legacy Incoming
# Webhook in the path: the fake uses both, so tests can check neither leaks into an error.
WEBHOOK_PATH = "/workflows/0a1b2c3d4e/triggers/manual/paths/invoke"
WEBHOOK_SECRET = "SeCrEtSiGnAtUrE0123456789"
WEBHOOK_QUERY = f"api-version=2016-06-01&sig={WEBHOOK_SECRET}"


@define
class Reply:
    """One scripted answer of the fake Teams."""

    status: int = 202
    body: str = ""
    headers: dict[str, str] = field(factory=dict)
    delay: float = 0.0


@define
class Received:
    """One request the fake Teams received."""

    path_qs: str
    content_type: str
    json: Any


@define
class FakeTeams:
    """Answers each POST with the next scripted reply, then with 202 (as Workflows does)."""

    url: str = ""
    path: str = WEBHOOK_PATH
    query: str = WEBHOOK_QUERY
    secret: str = WEBHOOK_SECRET
    replies: list[Reply] = field(factory=list)
    received: list[Received] = field(factory=list)
    arrived: asyncio.Event = field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path_qs, request.content_type, await request.json()))
        self.arrived.set()
        reply = self.replies.pop(0) if self.replies else Reply()
        await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    def reply(
        self, status: int, body: str = "", headers: dict[str, str] | None = None, delay: float = 0
    ) -> None:
        """Script the answer to the next request not yet answered."""
        self.replies.append(Reply(status, body, headers or {}, delay))

    async def wait_for(self, count: int, *, within: float = 10.0) -> list[Received]:
        """The first ``count`` requests; AssertionError after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while len(self.received) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"fake Teams got {len(self.received)} requests, expected {count}"
            ) from None
        return self.received[:count]


@pytest.fixture
async def fake_teams() -> AsyncIterator[FakeTeams]:
    fake = FakeTeams()
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = f"{server.make_url(WEBHOOK_PATH)}?{WEBHOOK_QUERY}"
    yield fake
    await server.close()


@pytest.fixture
def refused_url() -> str:
    """A webhook URL on a 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{WEBHOOK_PATH}?{WEBHOOK_QUERY}"


StartSink = Callable[..., Coroutine[Any, Any, TeamsSink]]


@pytest.fixture
async def start_sink(tmp_path: Path) -> AsyncIterator[StartSink]:
    """``await start_sink(webhook_url=..., **options)``: a started sink with its own session."""
    session = aiohttp.ClientSession()

    async def start(**options: Any) -> TeamsSink:
        sink = TeamsSink("teams", TeamsOptions(**options))
        assert list(sink.check()) == []
        await sink.start(
            SinkContext(http=session, base_dir=tmp_path, logger=logging.getLogger("test"))
        )
        return sink

    yield start
    await session.close()


@define
class Observer:
    """A plugin recording what the core reports of each delivery (one sink per test router)."""

    failed: list[tuple[int, str, bool]] = field(factory=list)
    succeeded: list[int] = field(factory=list)
    dead: list[str] = field(factory=list)
    changed: asyncio.Event = field(factory=asyncio.Event)

    @hookimpl
    def delivery_failed(self, sink: Sink, attempt: int, error: str, retry_at: Any) -> None:
        self.failed.append((attempt, error, retry_at is not None))
        self.changed.set()

    @hookimpl
    def delivery_succeeded(self, sink: Sink, attempt: int) -> None:
        self.succeeded.append(attempt)
        self.changed.set()

    @hookimpl
    def event_dead_lettered(self, sink: Sink, reason: str) -> None:
        self.dead.append(reason)
        self.changed.set()

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 10.0) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out; observed {self!r}") from None


@pytest.fixture
def observer(register_plugin: Callable[[Any], None]) -> Observer:
    """An :class:`Observer` registered for this test's routers (``register_plugin`` is eventrouter's)."""
    watcher = Observer()
    register_plugin(watcher)
    return watcher
