"""Running the application: graceful shutdown, a connection cap and a header-read timeout.

aiohttp bounds request bodies but not how long a client may take to send its headers, nor how
many connections it holds: a slow client could pin connections forever. Every connection goes
through a guard that answers 503 beyond ``max_connections`` and 408 to a client that has not
sent complete request headers within ``header_timeout`` seconds.

A graceful stop must not cut requests a client has already sent. Closing a listening socket
resets every connection still in the kernel's accept queue, and aiohttp's shutdown closes every
connection whose request has not been parsed yet — both are requests the provider sent before
the signal and would see fail. So the stop drains in order (:func:`serve`): new connection
attempts are turned away first (on Linux a socket filter drops incoming SYNs, so the client's
retransmission a second later finds the port closed: "connection refused", which every sender
retries), the accept queue is emptied, connections already accepted get their request headers
in, and only then does aiohttp finish in-flight requests and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterable
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
        self.guard.awaiting_headers.add(self)

    def _headers_done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.guard.awaiting_headers.discard(self)
        if not self.guard.awaiting_headers and self.guard.headers_in is not None:
            self.guard.headers_in.set()

    def _too_slow(self) -> None:
        self._headers_done()
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
                self._headers_done()
            else:
                self.tail = seen[-3:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
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
        #: admitted connections whose first request's headers have not arrived yet
        self.awaiting_headers: set[_GuardedProtocol] = set()
        self.headers_in: asyncio.Event | None = None

    def __call__(self) -> _GuardedProtocol:
        return _GuardedProtocol(self)

    async def wait_for_headers(self, grace: float) -> int:
        """Wait until every admitted connection has sent its first request's headers (or gone).

        Returns how many still had not when ``grace`` ran out; the header timer answers those
        408 as it would anyway.
        """
        if self.awaiting_headers:
            self.headers_in = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.headers_in.wait()
            self.headers_in = None
        return len(self.awaiting_headers)


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
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs the traceback
        else:
            # the client's mistake (a malformed request line, oversized headers, an encoding
            # that cannot be decoded): one line at INFO, not a traceback at ERROR per request
            log.info(
                "refused a malformed request from %s: %s",
                request.remote,
                (message or str(exc) or str(status)).strip().split("\n")[-1].strip()[:300],
            )
            if request.writer.output_size > 0:
                raise ConnectionError("a response was sent already; the connection is broken")
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


#: SO_ATTACH_FILTER (Linux, <asm-generic/socket.h>); not exported by the socket module
_SO_ATTACH_FILTER = 26

#: Loads at this offset (SKF_NET_OFF) are relative to the IP header, wherever the kernel has the
#: packet's data start when it runs a socket's filter.
_NET = -0x100000


def _net(offset: int) -> int:
    return (_NET + offset) & 0xFFFFFFFF


#: A classic BPF program for a listening TCP socket, run on every segment it receives: drop a
#: segment whose SYN flag is set and ACK flag is not (a new connection attempt), keep everything
#: else (handshakes already answered, data). It finds the TCP flags byte behind an IPv4 header
#: of any length, or behind a plain IPv6 header (IPv4-mapped connections on an IPv6 socket are
#: IPv4 packets). Instructions are ``struct sock_filter``: (code, jt, jf, k).
_REFUSE_NEW_CONNECTIONS = (
    (0x30, 0, 0, _net(0)),  # 0  ldb [net+0]            version and IHL
    (0x74, 0, 0, 4),  # 1  rsh #4                      the IP version
    (0x15, 0, 3, 4),  # 2  jeq #4, 3, 6
    (0xB1, 0, 0, _net(0)),  # 3  ldxb 4*([net+0]&0xf)   IPv4 header length
    (0x50, 0, 0, _net(13)),  # 4  ldb [x+net+13]        TCP flags behind IPv4
    (0x05, 0, 0, 2),  # 5  ja 8
    (0x15, 0, 3, 6),  # 6  jeq #6, 7, 10
    (0x30, 0, 0, _net(40 + 13)),  # 7  ldb [net+53]     TCP flags behind IPv6
    (0x54, 0, 0, 0x12),  # 8  and #0x12                 SYN | ACK
    (0x15, 1, 0, 0x02),  # 9  jeq #0x02, 11, 10         SYN without ACK: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # 10 ret #-1             keep the whole segment
    (0x06, 0, 0, 0),  # 11 ret #0                       drop it
)


def refuse_new_connections(sockets: Iterable[Any]) -> bool:
    """Make listening TCP sockets ignore new connection attempts; already-queued ones stay.

    A client whose SYN is ignored retransmits it about a second later; by then the socket is
    closed and the client gets "connection refused" — which a sender retries — instead of a
    connection that is reset after it has sent its request. Linux only: returns False (and does
    nothing) where socket filters are not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    code = b"".join(struct.pack("HBBI", *op) for op in _REFUSE_NEW_CONNECTIONS)
    program = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native alignment
    fprog = struct.pack("HP", len(_REFUSE_NEW_CONNECTIONS), ctypes.addressof(program))
    done = True
    for sock in sockets:
        if sock.type != socket.SOCK_STREAM:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        except OSError as exc:
            log.debug("could not filter new connections on %s: %s", sock, exc)
            done = False
    return done


#: after new connection attempts are refused, how long the listener keeps accepting: long enough
#: for handshakes already under way (SYN answered, ACK on its way) to complete and be accepted
HANDSHAKE_GRACE = 0.25


async def stop_accepting(server: asyncio.AbstractServer | None) -> None:
    """Stop accepting connections without resetting those the kernel has already queued."""
    if server is None:
        return
    sockets = list(getattr(server, "sockets", ()) or ())
    if refuse_new_connections(sockets):
        # the server keeps accepting meanwhile, emptying the queue; nothing new joins it
        await asyncio.sleep(HANDSHAKE_GRACE)
    server.close()


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
    # what exists once the app has started (modules, plugins, routes, the store's connections)
    # lives as long as the process: freezing it spares every later full collection a walk
    # through all of it
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        server = site._server
        bound = (
            server.sockets[0].getsockname()[1]
            if isinstance(server, asyncio.Server) and server.sockets
            else port
        )
        if on_started is not None:
            on_started(bound)
        await stop.wait()
        log.info("shutting down: no new connections; finishing in-flight requests and deliveries")
        await stop_accepting(site._server)
        if runner.guard is not None:
            late = await runner.guard.wait_for_headers(min(header_timeout, shutdown_timeout))
            if late:
                log.info("closing %d connections that sent no request headers in time", late)
        # let requests whose headers just arrived reach their handlers, which aiohttp's shutdown
        # then waits for; only connections idle between requests are closed
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")
