"""Running the application: graceful shutdown, a connection cap and a header-read timeout.

aiohttp bounds request bodies but not how long a client may take to send its headers, nor how
many connections it holds: a slow client could pin connections forever. Every connection goes
through a guard that answers 503 beyond ``max_connections`` and 408 to a client that has not
sent complete request headers within ``header_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["ConnectionGuard", "serve"]

log = logging.getLogger("eventrouter.server")


def _raw_response(
    status: str, error: str, message: str, *, retry_after: int | None = None
) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    headers = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        headers.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


_TOO_MANY = _raw_response(
    "503 Service Unavailable",
    "too_many_connections",
    "connection limit reached; retry shortly",
    retry_after=1,
)
_TOO_SLOW = _raw_response(
    "408 Request Timeout", "request_timeout", "request headers not received in time"
)


class _GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection; hands it every event once admitted."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.guard.active >= self.guard.max_connections:
            self.guard.refused += 1
            transport.write(_TOO_MANY)
            transport.close()
            return
        self.guard.active += 1
        self.inner = self.guard.factory()
        self.inner.connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(
            self.guard.header_timeout, self._too_slow
        )

    def _too_slow(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.guard.timed_out += 1
            self.transport.write(_TOO_SLOW)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            # the first request's headers end at a blank line; after that aiohttp's own
            # keep-alive and body timeouts take over
            seen = self.tail + data[:4096]
            if b"\r\n\r\n" in seen:
                self.timer.cancel()
                self.timer = None
            else:
                self.tail = seen[-3:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.inner is not None:
            self.guard.active -= 1
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class ConnectionGuard:
    """A protocol factory around aiohttp's, counting and policing connections."""

    def __init__(
        self, factory: Callable[[], Any], *, max_connections: int, header_timeout: float
    ) -> None:
        self.factory = factory
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.active = 0
        self.refused = 0
        self.timed_out = 0

    def __call__(self) -> _GuardedProtocol:
        return _GuardedProtocol(self)


class _JSONErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering protocol-level errors (a malformed request line,
    oversized headers) as JSON like every other error, instead of plain text."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(
            request, status, exc, message
        )  # logs, and refuses if a response started
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        if status >= 500:
            body = {
                "error": "internal_error",
                "message": "the request could not be processed; retry later",
            }
        else:
            detail = (message or phrase).split("\n", 1)[0][:300]
            body = {"error": phrase.lower().replace(" ", "_"), "message": detail}
        response = web.json_response(body, status=status)
        response.force_close()
        return response


def _json_errors_factory(server: web.Server) -> Callable[[], RequestHandler]:
    # web.Server.__call__ builds RequestHandler(server, loop=..., **handler_kwargs); build ours
    # the same way (its _loop and _kwargs are what run_app passes through)
    return lambda: _JSONErrorsHandler(server, loop=server._loop, **server._kwargs)


class _GuardedRunner(web.AppRunner):
    """An AppRunner whose sites accept connections through a :class:`ConnectionGuard`."""

    def __init__(
        self, app: web.Application, *, guard_options: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._guard_options = guard_options
        self.guard: ConnectionGuard | None = None

    @property
    def server(self) -> Any:  # what TCPSite passes to loop.create_server
        inner = super().server
        if inner is None:
            return None
        if self.guard is None:
            self.guard = ConnectionGuard(_json_errors_factory(inner), **self._guard_options)
        return self.guard


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    header_timeout: float,
    max_connections: int,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully.

    On the signal: stop accepting, let in-flight requests finish (up to ``shutdown_timeout``),
    then run the app's cleanup (the dispatcher lets running delivery attempts finish).
    """
    runner = _GuardedRunner(
        app,
        guard_options={"max_connections": max_connections, "header_timeout": header_timeout},
        shutdown_timeout=shutdown_timeout,
        access_log=logging.getLogger("aiohttp.access"),
        handle_signals=False,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = (
            site._server.sockets[0].getsockname()[1]
            if site._server and site._server.sockets
            else port
        )
        if on_started is not None:
            on_started(bound)
        await stop.wait()
        log.info("shutting down: no new connections; finishing in-flight requests and deliveries")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")
