"""Overload and limits: ingest refuses (503, Retry-After) what it cannot keep; slow clients
cannot hold the server.

- The store cannot keep up (another process holds SQLite's write lock): once
  ``[store] max_pending_writes`` writes wait, further requests are answered 503 with
  ``Retry-After`` at once, and nothing answered 2xx is lost.
- The disk is full (SQLite answers SQLITE_FULL: the database may not grow past
  ``PRAGMA max_page_count``): ingest answers 503, what was acknowledged stays stored and is
  delivered, and once space returns the refused events are accepted when resent.
- A real ``eventrouter serve`` process with ``[server] header_timeout``, ``read_timeout`` and
  ``max_connections``: a slowloris gets 408 and is disconnected, a client that stalls half-way
  through its body gets 408, connections beyond the cap get 503, and a normal signed request
  succeeds meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.processes import WHSEC, EventRouterProcess, signed_requests

EVENT = {"type": "order.paid", "timestamp": "2026-06-08T18:00:00Z", "data": {"order": 1}}


def demo(sinks: dict[str, Any] | None = None, **store: Any) -> dict[str, Any]:
    return {
        "store": store,
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": sinks or {},
        "routes": [{"sinks": list(sinks)}] if sinks else [],
    }


async def pending_writes(router: Any) -> int:
    async with router.client.get("/metrics") as answer:
        text = await answer.text()
    [line] = [x for x in text.splitlines() if x.startswith("eventrouter_store_pending_writes ")]
    return int(float(line.split()[1]))


async def test_a_store_that_cannot_keep_up_gets_503_with_retry_after(make_router, tmp_path):
    router = await make_router(demo(max_pending_writes=5))
    status, _ = await router.post("demo", EVENT)
    assert status == 200  # the store works, and its start-up writes are done

    # another process takes the write lock and keeps it: every write has to wait
    blocker = sqlite3.connect(tmp_path / "eventrouter.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        waiting = [
            asyncio.create_task(router.post("demo", {**EVENT, "data": {"order": n}}))
            for n in range(5)
        ]
        deadline = time.monotonic() + 5
        while await pending_writes(router) < 5:
            assert time.monotonic() < deadline, "the writes did not queue up"
            await asyncio.sleep(0.02)
        assert not any(task.done() for task in waiting)

        # beyond the limit: refused at once, with Retry-After, and not stored
        started = time.monotonic()
        refused = []
        for n in range(10):
            status, body = await router.post("demo", {**EVENT, "data": {"order": 100 + n}})
            refused.append((status, body))
        assert time.monotonic() - started < 2.0
        for status, body in refused:
            assert status == 503
            assert body == {
                "error": "unavailable",
                "message": "the event could not be stored; retry later",
                "retry_after": 2,
            }
        async with router.client.post(
            router.config.source_paths["demo"],
            data=json.dumps(EVENT),
            headers=_signed(router, json.dumps(EVENT).encode()),
        ) as answer:
            assert answer.status == 503
            assert answer.headers["Retry-After"] == "2"
            assert answer.content_type == "application/json"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    # the lock is released: the queued writes complete, and were acknowledged only then
    answers = await asyncio.gather(*waiting)
    assert [status for status, _ in answers] == [200] * 5
    for _, body in answers:
        stored = await router.store.get_event(body["event_id"])
        assert stored is not None
        assert stored.event.raw["data"]["order"] in range(5)
    events = await router.store.list_events(limit=100)
    # the first event (order 1) and the five queued ones (0 to 4); none of the refused
    assert sorted(e.event.raw["data"]["order"] for e in events) == [0, 1, 1, 2, 3, 4]
    status, _ = await router.post("demo", {**EVENT, "data": {"order": 7}})
    assert status == 200


async def test_a_write_lock_held_past_the_operation_timeout_gets_503_in_time(make_router, tmp_path):
    """Another process keeps SQLite's write lock longer than ``[store] operation_timeout``: the
    waiting requests are answered 503 when it runs out (not after the 30 s busy timeout), what
    they carried is not written once the lock is free, and the provider's retry is accepted."""
    router = await make_router(demo(operation_timeout="0.5s"))
    status, _ = await router.post("demo", EVENT)
    assert status == 200

    blocker = sqlite3.connect(tmp_path / "eventrouter.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    body = json.dumps({**EVENT, "data": {"order": 2}}).encode()
    headers = _signed(router, body)  # the same webhook-id when the provider sends it again
    try:
        started = time.monotonic()
        async with router.client.post(
            router.config.source_paths["demo"],
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=5),
        ) as answer:
            assert answer.status == 503
            assert answer.headers["Retry-After"]
            refused = await answer.json()
        assert 0.5 <= time.monotonic() - started < 2.0
        assert refused["error"] == "unavailable"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    # the write behind the lock was given up before it began: nothing of it is stored
    await asyncio.sleep(0.2)
    orders = [e.event.raw["data"]["order"] for e in await router.store.list_events(limit=10)]
    assert orders == [1]
    async with router.client.post(
        router.config.source_paths["demo"], data=body, headers=headers
    ) as answer:
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["status"] == "accepted"


def _signed(router: Any, body: bytes) -> dict[str, str]:
    signature = router.config.sources["demo"].sign(body)
    return {"Content-Type": "application/json", **signature.headers}


async def test_a_full_disk_gets_503_and_loses_nothing_acknowledged(make_router, recorded):
    router = await make_router(
        demo({"archive": {"plugin": "recording", "delivery": {"retry_schedule": ["50ms"] * 20}}})
    )
    store = router.store

    # the disk fills up: the database may grow only a few pages more (a real SQLITE_FULL)
    def page_count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])

    pages = await store._write(page_count)
    await store._write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 12}"))

    padding = "x" * 3000  # each event takes a page or more
    accepted: dict[int, str] = {}
    refused: list[int] = []
    for n in range(60):
        status, body = await router.post("demo", {**EVENT, "data": {"order": n, "pad": padding}})
        if status == 200:
            assert not refused, "accepted after a refusal while the disk was still full"
            accepted[n] = body["event_id"]
        else:
            assert status == 503, body
            assert body == {
                "error": "unavailable",
                "message": "the event could not be stored; retry later",
                "retry_after": 5,
            }
            refused.append(n)
    assert accepted, "the disk was full from the start"
    assert len(refused) >= 10, "the disk never filled up"
    async with router.client.get("/readyz") as answer:
        assert answer.status == 200  # reads still work; only growth is refused

    # what was acknowledged is stored and delivered, full disk or not
    delivered = await recorded.wait_for("archive", len(accepted), timeout=15)
    assert {e.id for e in delivered} == set(accepted.values())
    for event_id in accepted.values():
        stored = await store.get_event(event_id)
        assert stored is not None
        assert stored.event.id == event_id

    # space returns: the sender retries what was refused, and it is accepted (not a duplicate)
    await store._write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    resent: dict[int, str] = {}
    for n in refused:
        status, body = await router.post("demo", {**EVENT, "data": {"order": n, "pad": padding}})
        assert status == 200, body
        assert body["status"] == "accepted"
        resent[n] = body["event_id"]
    delivered = await recorded.wait_for("archive", len(accepted) + len(refused), timeout=15)
    assert {e.id for e in delivered} == set(accepted.values()) | set(resent.values())
    assert sorted(e.raw["data"]["order"] for e in delivered) == list(range(60))
    print(f"disk full: {len(accepted)} accepted, {len(refused)} refused with 503, all resent")


# -- slow clients against a real process ---------------------------------------------------

HEADER_TIMEOUT = 1.0
READ_TIMEOUT = 1.0
MAX_CONNECTIONS = 12


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventRouterProcess]:
    directory = tmp_path_factory.mktemp("guarded")
    config = directory / "eventrouter.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
header_timeout = "{HEADER_TIMEOUT:g}s"
read_timeout = "{READ_TIMEOUT:g}s"
max_connections = {MAX_CONNECTIONS}

[store]
path = "eventrouter.db"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]
"""
    )
    process = EventRouterProcess(config=config).start()
    yield process
    process.stop()


def _connect(process: EventRouterProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _response(data: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


async def _normal_request(process: EventRouterProcess, tag: str) -> tuple[int, Any]:
    [(body, headers)] = signed_requests(1, tag=tag)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{process.url}/hooks/demo", data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


@pytest.mark.slow
async def test_slowloris_gets_408_and_is_disconnected(guarded):
    def slowloris() -> tuple[float, bytes]:
        with _connect(guarded) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /hooks/demo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            # one header byte every 100 ms (never a complete header block) until an answer comes
            sock.settimeout(0.1)
            for byte in b"X-Trickle: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                    first = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            else:
                raise AssertionError("the server let a slowloris trickle for 10 s")
            elapsed = time.monotonic() - started
            sock.settimeout(5)
            return elapsed, first + _read_all(sock)

    clients = [asyncio.to_thread(slowloris) for _ in range(3)]
    normal = asyncio.create_task(_normal_request(guarded, "beside-slowloris"))
    results = await asyncio.gather(*clients)
    status, body = await normal
    assert status == 200
    assert body["status"] == "accepted"
    for elapsed, data in results:
        assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + 2.0
        status, headers, payload = _response(data)
        assert status == 408
        assert headers["connection"] == "close"
        assert payload == {
            "error": "request_timeout",
            "message": "request headers not received in time",
        }


@pytest.mark.slow
async def test_a_body_stalled_half_way_gets_408(guarded):
    [(body, headers)] = signed_requests(1, tag="stalled")

    def stall() -> tuple[float, bytes]:
        with _connect(guarded) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(
                f"POST /hooks/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"{head}\r\n".encode()
                + body[: len(body) // 2]
            )
            started = time.monotonic()
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) == 0:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return time.monotonic() - started, data

    stalled = asyncio.create_task(asyncio.to_thread(stall))
    status, answer = await _normal_request(guarded, "beside-stalled")
    assert status == 200
    assert answer["status"] == "accepted"
    elapsed, data = await stalled
    assert READ_TIMEOUT - 0.1 <= elapsed <= READ_TIMEOUT + 2.0
    status, _, payload = _response(data)
    assert status == 408
    assert payload == {
        "error": "request_timeout",
        "message": f"body not received within {READ_TIMEOUT:g}s",
    }
    # the half-sent event was not stored: its sender's retry is accepted as new
    status, answer = await _normal_request(guarded, "stalled")
    assert status == 200
    assert answer["status"] == "accepted"


@pytest.mark.slow
async def test_connections_beyond_the_cap_get_503(guarded):
    await asyncio.sleep(HEADER_TIMEOUT + 0.5)  # connections of earlier tests are gone
    held = [_connect(guarded) for _ in range(MAX_CONNECTIONS)]
    try:
        await asyncio.sleep(0.1)
        extra = [_connect(guarded) for _ in range(3)]
        for sock in extra:
            with sock:
                status, headers, payload = _response(_read_all(sock))
                assert status == 503
                assert headers["retry-after"] == "1"
                assert headers["connection"] == "close"
                assert payload == {
                    "error": "too_many_connections",
                    "message": "connection limit reached; retry shortly",
                }
        status, _ = await _normal_request(guarded, "at-the-cap")
        assert status == 503
    finally:
        for sock in held:
            sock.close()
    # the cap frees up as soon as connections close
    deadline = time.monotonic() + 5
    while True:
        status, answer = await _normal_request(guarded, "after-the-cap")
        if status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert status == 200
    assert answer["status"] == "accepted"
