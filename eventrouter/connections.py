"""Who may hold a connection, and for how long: the guard every connection passes through.

aiohttp bounds request bodies, but not how many connections one client holds, how long it may
take to send its headers, or how long a kept-alive connection may sit idle (an hour by default).
Every connection is a :class:`GuardedConnection`, aiohttp's request handler with these limits:

- beyond ``max_connections`` open connections, or ``max_connections_per_client`` from one client
  (one IPv4 address, or one IPv6 /64: a single host is usually given a whole /64), a new
  connection is answered 503 with ``Retry-After`` and closed;
- every request's headers must arrive within ``header_timeout`` seconds, counted from the
  connection's start or from the first byte after the previous response: else 408 and close;
- a kept-alive connection that has not started another request within ``keepalive_timeout`` of
  its last response is closed (silently: it asked nothing).

Behind a reverse proxy every connection comes from the proxy. A peer in ``trusted_proxies`` is
not limited by its address; each request it forwards counts, while it runs, against the client
its ``X-Forwarded-For`` names (the right-most hop that is not a trusted proxy: hops further left
are whatever the client wrote), which also becomes the request's ``remote`` (what source plugins
see as :attr:`WebhookRequest.remote`). Nobody else's ``X-Forwarded-For`` is read.

The error answers aiohttp builds itself (a malformed request line, ``Expect: 200-ok``) are JSON
like every other answer.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web

from eventrouter.app import http_error_response
from eventrouter.config import ServerConfig
from eventrouter.metrics import Metrics

__all__ = ["ConnectionGuard", "GuardedConnection", "client_address", "client_key"]

log = logging.getLogger("eventrouter.connections")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _raw_response(
    status: str, error: str, message: str, *, retry_after: int | None = None
) -> bytes:
    """A whole HTTP response, written straight to a connection aiohttp never sees."""
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
_TOO_MANY_FROM_CLIENT = _raw_response(
    "503 Service Unavailable",
    "too_many_connections",
    "too many connections from your address; retry shortly",
    retry_after=1,
)
_TOO_SLOW = _raw_response(
    "408 Request Timeout", "request_timeout", "request headers not received in time"
)


def parse_address(text: str | None) -> IPAddress | None:
    """An address as peers and proxies write it (``[::1]:80`` and ``1.2.3.4:80`` too), or None;
    an IPv4-mapped IPv6 address is read as the IPv4 address."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(address: IPAddress) -> str:
    """What the per-client limit counts by: the IPv4 address, or the IPv6 address's /64."""
    if address.version == 4:
        return str(address)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: IPAddress, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client behind a trusted ``peer``: the right-most ``X-Forwarded-For`` hop that is not a
    trusted proxy (the ones further left can be forged by it); the peer itself without one;
    None when a hop that must be believed is not an address."""
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    hops = [hop for hop in hops if hop]
    if not hops:
        return peer
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return None
        if not _within(address, trusted_proxies):
            return address
    return parse_address(hops[0])


class _Phase(enum.Enum):
    HEADERS = "waiting for request headers"
    BUSY = "handling a request"
    IDLE = "idle between requests"


class GuardedConnection(web.RequestHandler):
    """aiohttp's handler of one connection, admitted and timed by a :class:`ConnectionGuard`."""

    def __init__(self, guard: ConnectionGuard, server: web.Server, **options: Any) -> None:
        super().__init__(server, **options)
        self.event_loop = asyncio.get_running_loop()
        self.guard = guard
        self.admitted = False
        #: what the per-client limit counts this connection as; None for a trusted proxy
        self.client: str | None = None
        self.peer: IPAddress | None = None
        self.phase = _Phase.HEADERS
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when the timer fires (kept: TimerHandle.when() is a call)

    # -- the connection's life, as asyncio reports it ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        peername = transport.get_extra_info("peername")
        self.peer = parse_address(peername[0] if peername else None)
        refusal = guard.admit(self)
        if refusal is not None:
            # a stream transport (uvloop's is one without subclassing asyncio.Transport)
            cast(asyncio.Transport, transport).write(refusal)
            transport.close()
            return
        self.admitted = True
        super().connection_made(transport)
        self._wait(_Phase.HEADERS, guard.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.phase is _Phase.IDLE:  # the next request has begun: its headers are timed
            self._wait(_Phase.HEADERS, self.guard.header_timeout)
        if self.admitted:
            _data_received(self, data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.phase = _Phase.BUSY  # nothing more to time
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.guard.release(self)
        self._headers_in()
        super().connection_lost(exc)

    # -- requests, as the guard's middleware and aiohttp report them -----------------------------

    def request_started(self) -> None:
        """The request's headers are in and its handler runs: no timer until it is answered."""
        self.phase = _Phase.BUSY
        if self.guard.headers_in is not None:
            self._headers_in()

    def request_finished(self) -> None:
        """Its handler has answered: the connection waits for the next request, or is idle."""
        if self.admitted:
            self._wait(_Phase.IDLE, self.guard.keepalive_timeout)

    def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # the handler has answered (aiohttp calls this for every answer, its own errors too):
        # from here the connection waits for its next request
        self.request_finished()
        # an HTTP error aiohttp raised outside the app's middlewares (an Expect header it cannot
        # meet) is answered as JSON like every other error
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            resp = http_error_response(resp, request.method)
            resp.force_close()
        return _finish_response(self, request, resp, start_time)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to what never reaches the app (a malformed request line, oversized
        headers, a body that cannot be decoded), as JSON."""
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs the traceback
        else:
            # the client's mistake: one line at INFO, not a traceback at ERROR per request
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

    # -- one timer per connection, moved rather than re-created on every request -----------------
    # The timer ticks no more than the shorter timeout ahead: a deadline set later is never
    # earlier than the tick, so a request moves only ``deadline``, and the tick that finds the
    # deadline still ahead re-arms itself (exactly on it once it is that close).

    def _wait(self, phase: _Phase, seconds: float) -> None:
        self.phase = phase
        if self.guard.headers_in is not None and phase is not _Phase.HEADERS:
            self._headers_in()
        loop = self.event_loop
        now = loop.time()
        self.deadline = deadline = now + seconds
        if self.timer is not None:
            if self.timer_at <= deadline:
                return  # it fires first and moves itself on to the deadline
            self.timer.cancel()
        self._arm(min(deadline, now + self.guard.shortest_timeout))

    def _arm(self, when: float) -> None:
        self.timer_at = when
        self.timer = self.event_loop.call_at(when, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.phase is _Phase.BUSY or not self.admitted:
            return
        now = self.event_loop.time()
        if now < self.deadline:
            self._arm(min(self.deadline, now + self.guard.shortest_timeout))
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.phase is _Phase.HEADERS:
            self.phase = _Phase.BUSY  # answered: it owes no headers any more
            self._headers_in()
            self.guard.count_timeout()
            transport.write(_TOO_SLOW)
        transport.close()

    def _headers_in(self) -> None:
        """This connection owes no request headers any more: a graceful stop may be waiting for
        the last one that did (see :meth:`ConnectionGuard.wait_for_headers`)."""
        guard = self.guard
        if guard.headers_in is not None and not guard.awaiting_headers:
            guard.headers_in.set()


# aiohttp's own, called straight: these run on every request, and super() is a lookup each time
_data_received = web.RequestHandler.data_received
_finish_response = web.RequestHandler.finish_response


class ConnectionGuard:
    """The limits of ``[server]``, applied to every connection (see the module's docstring)."""

    def __init__(self, options: ServerConfig, *, metrics: Metrics) -> None:
        self.max_connections = options.max_connections
        self.max_per_client = options.max_connections_per_client
        self.header_timeout = float(options.header_timeout)
        self.keepalive_timeout = float(options.keepalive_timeout)
        #: how far ahead a connection's timer may tick (see GuardedConnection._wait)
        self.shortest_timeout = min(self.header_timeout, self.keepalive_timeout)
        self.trusted_proxies = options.trusted_networks
        self.active = 0
        self.per_client: dict[str, int] = {}
        #: the admitted connections
        self.connections: set[GuardedConnection] = set()
        self.headers_in: asyncio.Event | None = None
        self._refused = metrics.connections_refused
        self._timed_out = metrics.connections_timed_out
        metrics.connections_open.set_function(lambda: self.active)
        self._factory: Callable[[], GuardedConnection] | None = None

    def serve(self, server: web.Server, **handler_options: Any) -> None:
        """Hand every admitted connection to ``server`` (an app runner's), built with these
        options (what ``web.AppRunner`` was given)."""
        loop = asyncio.get_running_loop()
        self._factory = lambda: GuardedConnection(self, server, loop=loop, **handler_options)

    def __call__(self) -> GuardedConnection:
        """A protocol for one new connection (what ``loop.create_server`` calls)."""
        assert self._factory is not None, "serve() first"
        return self._factory()

    def admit(self, connection: GuardedConnection) -> bytes | None:
        """Count a new connection in; or the answer that refuses it."""
        peer = connection.peer
        if self.active >= self.max_connections:
            self._refused.labels("max_connections").inc()
            return _TOO_MANY
        if peer is not None and not (self.trusted_proxies and _within(peer, self.trusted_proxies)):
            key = client_key(peer)
            held = self.per_client.get(key, 0)
            if held >= self.max_per_client:
                self._refused.labels("max_connections_per_client").inc()
                return _TOO_MANY_FROM_CLIENT
            self.per_client[key] = held + 1
            connection.client = key
        self.active += 1
        self.connections.add(connection)
        return None

    def release(self, connection: GuardedConnection) -> None:
        self.active -= 1
        self.connections.discard(connection)
        if connection.client is not None:
            self._forget(connection.client)

    def _forget(self, key: str) -> None:
        held = self.per_client[key] - 1
        if held:
            self.per_client[key] = held
        else:
            del self.per_client[key]

    @property
    def awaiting_headers(self) -> set[GuardedConnection]:
        """Admitted connections whose current request's headers have not arrived yet (looked
        for only while stopping: keeping a set up to date would cost every request)."""
        return {c for c in self.connections if c.phase is _Phase.HEADERS}

    def count_timeout(self) -> None:
        self._timed_out.inc()

    @web.middleware
    def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Awaitable[web.StreamResponse]:
        """Tells each connection when its request's handler starts (its answer, in
        :meth:`GuardedConnection.finish_response`, tells when it ends); counts a request forwarded
        by a trusted proxy against its client, whose address becomes ``request.remote``."""
        # a plain function handing back the handler's own coroutine: one frame less per request
        connection = request.protocol
        if not isinstance(connection, GuardedConnection):  # not served by this guard
            return handler(request)
        connection.request_started()
        if connection.client is not None or connection.peer is None:
            return handler(request)
        return self._forwarded(request, handler, connection, connection.peer)

    async def _forwarded(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        connection: GuardedConnection,
        peer: IPAddress,
    ) -> web.StreamResponse:
        """A request from a trusted proxy, counted against the client it forwards for."""
        client = client_address(
            peer, request.headers.getall("X-Forwarded-For", ()), self.trusted_proxies
        )
        # a hop that is not an address: the request is counted as the proxy's own, and the
        # proxy's address is what sources see (an allow-list then refuses it)
        client = client or peer
        key = client_key(client)
        held = self.per_client.get(key, 0)
        if held >= self.max_per_client:
            self._refused.labels("max_connections_per_client").inc()
            response = http_error_response(
                web.HTTPServiceUnavailable(
                    text="too many connections from your address; retry shortly"
                ),
                request.method,
                error="too_many_connections",
            )
            response.headers["Retry-After"] = "1"
            return response
        self.per_client[key] = held + 1
        try:
            return await handler(request.clone(remote=str(client)))
        finally:
            self._forget(key)

    async def wait_for_headers(self, grace: float) -> int:
        """Wait until every admitted connection that owes request headers has sent them (or
        gone); how many still had not when ``grace`` ran out (their header timer answers 408)."""
        if self.awaiting_headers:
            self.headers_in = asyncio.Event()
            try:
                async with asyncio.timeout(grace):
                    await self.headers_in.wait()
            except TimeoutError:
                pass
            self.headers_in = None
        return len(self.awaiting_headers)
