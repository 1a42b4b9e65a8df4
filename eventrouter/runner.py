"""Running the application: bind first, serve through the connection guard, stop gracefully.

The listening socket is bound before the app starts, so a port that is taken fails ``serve``
before any delivery runs. Every connection goes through a :class:`ConnectionGuard` (connection
caps, header and keep-alive timers: see :mod:`eventrouter.connections`).

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
import ctypes
import gc
import logging
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from eventrouter.app import METRICS
from eventrouter.config import ServerConfig
from eventrouter.connections import ConnectionGuard

__all__ = ["YOUNG_COLLECTION_THRESHOLD", "PortUnavailable", "serve", "tune_collector"]

log = logging.getLogger("eventrouter.runner")


class PortUnavailable(OSError):
    """The address to listen on cannot be bound (taken, or not this machine's)."""


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


#: container objects allocated (net of those freed) before the collector walks the youngest
#: generation; Python's default is 700
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_collector() -> None:
    """Set the garbage collector up for a long-running server, once its app has started.

    What exists by then (modules, plugins, routes, the store's connections) lives as long as
    the process: freezing it spares every later full collection a walk through all of it.
    The youngest generation is collected after 700 new container objects by default: fewer
    than the deliveries in flight hold (a batch of 100 events, each with its payload's dicts
    and lists, several batches at once), so the collector kept walking objects still in use
    and moving them to older generations to walk them again: 550 collections per 20,000
    drained events. With 50,000 a batch comes and goes between collections, and garbage
    without cycles is freed at once either way (``bench/drainfloor.py`` counts the
    difference; a cycle left behind costs at most that many objects' memory for a while).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    options: ServerConfig,
    on_started: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully.

    ``host`` and ``port`` may override ``options`` (``[server]``), which gives every limit. On the
    signal: ``on_stopping()`` is called, new connections are turned away, in-flight requests
    finish (up to ``shutdown_timeout``), then the app's cleanup runs (the dispatcher lets running
    delivery attempts finish; delivery processes are stopped).
    """
    loop = asyncio.get_running_loop()
    guard = ConnectionGuard(options, metrics=app[METRICS])
    try:
        listener = await loop.create_server(guard, host, port, backlog=1024, start_serving=False)
    except OSError as exc:
        raise PortUnavailable(exc.errno, exc.strerror or str(exc)) from None
    app.middlewares.insert(0, guard.middleware)
    handler_options: dict[str, Any] = {
        "access_log": logging.getLogger("aiohttp.access"),
        # the guard closes idle connections after keepalive_timeout and times every request's
        # headers; aiohttp's own keep-alive timer (an hour by default) is only a backstop behind it
        "keepalive_timeout": float(options.keepalive_timeout + options.header_timeout) + 1,
    }
    runner = web.AppRunner(
        app,
        shutdown_timeout=float(options.shutdown_timeout),
        handle_signals=False,
        **handler_options,
    )
    try:
        await runner.setup()
    except BaseException:
        listener.close()
        raise
    try:
        assert runner.server is not None
        guard.serve(runner.server, **handler_options)
        tune_collector()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await listener.start_serving()
            if on_started is not None:
                on_started(listener.sockets[0].getsockname()[1] if listener.sockets else port)
            await stop.wait()
            log.info(
                "shutting down: no new connections; finishing in-flight requests and deliveries"
            )
            if on_stopping is not None:
                on_stopping()
            await stop_accepting(listener)
            grace = min(float(options.header_timeout), float(options.shutdown_timeout))
            late = await guard.wait_for_headers(grace)
            if late:
                log.info("closing %d connections that sent no request headers in time", late)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    finally:
        listener.close()
        await runner.cleanup()
        log.info("stopped")
