"""A lean open-loop HTTP/1.1 load client: what wrk2 does, in a few dozen lines of asyncio.

``bench/endtoend.py`` measures servers on the machine they share with their client. aiohttp's
client took about 220 µs of CPU per request here (its pool, its request and response objects,
its header parsing): at 2,000 requests/s almost half a core, taken from the server being
measured and making the client itself late. This one writes each request as bytes prepared
before the clock starts, on kept-alive connections, and reads an answer's status line and
``Content-Length`` only: a few tens of µs per request. Same semantics as the aiohttp client it
replaces: at most ``connections`` open at once (a request beyond waits for one to be free, its
wait counted in its latency), a connection the server closes is replaced, a request not
answered within ``timeout`` counts as failed.

The client must not pause either: a request sent late is charged to the server (its latency
counts from when it was due), and near a server's capacity the burst that follows a pause takes
the server far longer to absorb than the pause lasted. Python's garbage collector, walking the
run's tasks and futures, paused this client for 20-45 ms about twice per 15,000 requests (at
3,000 requests/s, the acks' p99 in three runs: 50-64 ms with it, 31-32 ms without, against the
same server). So while it sends, the collector is off (:func:`_collector_paused`): the garbage of
a run is freed by reference counting, and what a cycle holds is collected once it ends.

Only what the servers measured here answer needs reading: a status line, headers, a body of
``Content-Length`` bytes or a chunked one (read to its last chunk); no other framing.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = ["open_loop", "prepare"]


class _Connection(asyncio.Protocol):
    """One kept-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is not a subclass

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        """Write ``request``; the future gives its status and whether the server closes after."""
        assert self.transport is not None, "not connected"
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        start = end + 4
        if b"transfer-encoding: chunked" in head:
            last = self.buffer.find(b"\r\n0\r\n\r\n", start - 2)
            if last < 0:
                return
            size = last + 7 - start
        else:
            at = head.find(b"content-length:")
            if at < 0:
                return  # read to the close: connection_lost answers
            line_end = head.find(b"\r\n", at)
            size = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < start + size:
            return
        del self.buffer[: start + size]
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((status, b"connection: close" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is None or self.answer.done():
            return
        if exc is None and self.buffer.find(b"\r\n\r\n") >= 0:  # an answer read to the close
            self.answer.set_result((int(self.buffer[9:12]), True))
        else:
            self.answer.set_exception(ConnectionError("the server closed the connection"))


def prepare(url: str, requests: Sequence[tuple[bytes, dict[str, str]]]) -> list[bytes]:
    """Each (body, headers) as the bytes of one HTTP/1.1 POST to ``url``."""
    parts = urlsplit(url)
    start = f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    prepared = []
    for body, headers in requests:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"{start}{lines}Content-Length: {len(body)}\r\n\r\n"
        prepared.append(head.encode("latin-1") + body)
    return prepared


async def open_loop(
    url: str,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    rate: int,
    *,
    connections: int = 256,
    timeout: float = 30.0,
) -> tuple[list[float], list[float], int]:
    """Send request *i* at ``start + i / rate`` whatever the answers so far; return latencies
    from the scheduled time (s), how late each request started (s) and the non-200 count."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prepared = prepare(url, requests)
    latencies: list[float] = []
    lateness: list[float] = []
    failed = 0
    idle: list[_Connection] = []
    #: requests waiting for a connection, all ``connections`` being busy
    waiters: deque[asyncio.Future[_Connection]] = deque()
    opened = 0  # connections open or being opened

    async def connect() -> _Connection:
        nonlocal opened
        opened += 1
        try:
            _, connection = await loop.create_connection(_Connection, host, port)
        except BaseException:
            opened -= 1
            raise
        return connection

    async def acquire() -> _Connection:
        nonlocal opened
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            opened -= 1
        if opened < connections:
            return await connect()
        waiter = loop.create_future()
        waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over as the wait ended
                release(waiter.result(), close=False)
            raise

    def hand_over(connection: _Connection) -> bool:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def replace() -> None:
        try:
            connection = await connect()
        except OSError:
            return  # the waiters time out
        if not hand_over(connection):
            idle.append(connection)

    def release(connection: _Connection, *, close: bool) -> None:
        nonlocal opened
        if close or connection.closed:
            if connection.transport is not None:
                connection.transport.close()
            opened -= 1
            if waiters:
                replacing.add(task := asyncio.create_task(replace()))
                task.add_done_callback(replacing.discard)
        elif not hand_over(connection):
            idle.append(connection)

    replacing: set[asyncio.Task[None]] = set()

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal failed
        lateness.append(time.perf_counter() - scheduled)
        connection = None
        try:
            async with asyncio.timeout(timeout):
                connection = await acquire()
                status, close = await connection.send(request)
            failed += status != 200
            release(connection, close=close)
        except (OSError, TimeoutError, ValueError):
            failed += 1
            if connection is not None:
                release(connection, close=True)
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    with _collector_paused():
        begin = time.perf_counter() + 0.05
        for n, request in enumerate(prepared):
            scheduled = begin + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request, scheduled)))
        await asyncio.gather(*tasks)
    for connection in idle:
        if connection.transport is not None:
            connection.transport.close()
    return latencies, lateness, failed


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection inside: what exists is collected and frozen first (so that the
    collection after does not walk it again), the collector is off until the block ends."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
