"""Hostile connections against a real ``eventrouter serve`` process (issue 11, "Connections").

- kept-alive idle connections: closed after ``keepalive_timeout``; every request on a kept-alive
  connection has its headers timed, not only the first;
- the per-client cap: one address cannot take every slot; behind a trusted proxy the cap and
  source allow-lists use the client ``X-Forwarded-For`` names, and nobody else's is read;
- headers larger than 4 KiB: no unsolicited 408 after the answer, no false 408 with a slow body;
- a client that disconnects mid-body or truncates a chunked body: one INFO line, its own outcome
  in ``/metrics``, no traceback;
- every answer aiohttp builds itself (``Expect: 200-ok``, a malformed request line...) is JSON;
- the default config against 1,024 idle kept-alive connections from one address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from eventrouter.connections import client_address, client_key, parse_address
from tests.processes import WHSEC, EventRouterProcess, signed_requests, write_demo_config

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 0.5
READ_TIMEOUT = 3.0
PER_CLIENT = 8
PROXY = "127.0.0.3"
EXOTEL_TOKEN = "tok_3q9VnD8xKp2LmW7rTz5Y"
EXOTEL_BODY = (
    Path(__file__).parents[1]
    / "plugins/eventrouter-exotel/tests/fixtures/call_status_completed.json"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventRouterProcess]:
    directory = tmp_path_factory.mktemp("limited")
    config = directory / "eventrouter.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
header_timeout = "{HEADER_TIMEOUT:g}s"
keepalive_timeout = "{KEEPALIVE_TIMEOUT * 1000:g}ms"
read_timeout = "{READ_TIMEOUT:g}s"
max_connections = 64
max_connections_per_client = {PER_CLIENT}
trusted_proxies = ["{PROXY}"]

[store]
path = "eventrouter.db"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]

[sources.exotel]
plugin = "exotel"
tokens = ["{EXOTEL_TOKEN}"]
allowed_networks = ["198.51.100.0/24"]
"""
    )
    process = EventRouterProcess(config=config).start()
    yield process
    process.stop()


# -- a raw HTTP/1.1 client -------------------------------------------------------------------


class Connection:
    """One TCP connection speaking HTTP/1.1 byte by byte, from a chosen local address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, process: EventRouterProcess, *, local: str = "127.0.0.1") -> Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", process.port, local_addr=(local, 0)), 10
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 10) -> tuple[int, dict[str, str], Any]:
        """The next response: status, headers (lower-case names), body (parsed if JSON)."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("content-type", "").startswith("application/json"):
            return status, headers, json.loads(body)
        return status, headers, body

    async def closed(self, timeout: float) -> bytes:
        """Whatever arrives until the server closes the connection (TimeoutError if it does not)."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


def request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    head = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def signed(tag: str) -> tuple[bytes, dict[str, str]]:
    [(body, headers)] = signed_requests(1, tag=tag)
    return body, headers


async def post_webhook(
    process: EventRouterProcess, tag: str, *, local: str = "127.0.0.1", timeout: float = 10
) -> tuple[int, Any]:
    body, headers = signed(tag)
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.timeout(timeout),
        session.post(f"{process.url}/hooks/demo", data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


async def metric(process: EventRouterProcess, prefix: str) -> float:
    """The sum of every ``/metrics`` sample whose line starts with ``prefix``."""
    # from an address of its own: the tests' clients may be at their cap
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{process.url}/metrics") as answer,
    ):
        assert answer.status == 200
        text = await answer.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def settle(process: EventRouterProcess) -> None:
    """Let connections of earlier tests close (idle ones after keepalive_timeout)."""
    await asyncio.sleep(max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + 0.3)


# -- kept-alive idle connections -------------------------------------------------------------


async def test_an_idle_kept_alive_connection_is_closed_after_keepalive_timeout(limited):
    conn = await Connection.open(limited)
    try:
        await conn.send(request("GET", "/healthz"))
        status, headers, _ = await conn.response()
        assert status == 200
        assert headers.get("connection", "").lower() != "close"
        started = time.monotonic()
        # closed without a word: the client asked nothing (no 408 to misread as an answer)
        assert await conn.closed(timeout=KEEPALIVE_TIMEOUT + 3) == b""
        assert time.monotonic() - started < KEEPALIVE_TIMEOUT + 2
    finally:
        conn.close()


async def test_the_second_request_on_a_connection_has_its_headers_timed(limited):
    timed_out = await metric(limited, "eventrouter_connections_timed_out_total")
    conn = await Connection.open(limited)
    try:
        await conn.send(request("GET", "/healthz"))
        assert (await conn.response())[0] == 200
        # the next request starts within the keep-alive time, then trickles its headers
        await conn.send(b"POST /hooks/demo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        answer = None
        for byte in b"X-Trickle: " + b"a" * 100:
            try:
                await conn.send(bytes([byte]))
                answer = await conn.response(timeout=0.1)
                break
            except TimeoutError:
                continue
        assert answer is not None, "a kept-alive connection trickled its headers for 10 s"
        status, headers, body = answer
        assert status == 408
        assert headers["connection"] == "close"
        assert body == {
            "error": "request_timeout",
            "message": "request headers not received in time",
        }
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - started <= HEADER_TIMEOUT + 2
    finally:
        conn.close()
    assert await metric(limited, "eventrouter_connections_timed_out_total") == timed_out + 1


async def test_a_kept_alive_connection_serves_requests_slower_than_the_keepalive_timeout(limited):
    """The idle timer stops while a request is being handled or its headers arrive."""
    conn = await Connection.open(limited)
    try:
        for n in range(2):
            body, headers = signed(f"slow-kept-{n}")
            whole = request("POST", "/hooks/demo", body, headers)
            head, _, rest = whole.partition(b"\r\n\r\n")
            await conn.send(head[:20])
            await asyncio.sleep(KEEPALIVE_TIMEOUT + 0.2)  # slower than idle, within the header time
            await conn.send(head[20:] + b"\r\n\r\n")
            await asyncio.sleep(KEEPALIVE_TIMEOUT + 0.2)  # a slow body: read_timeout's business
            await conn.send(rest)
            status, _, answer = await conn.response()
            assert status == 200, answer
            assert answer["status"] == "accepted"
    finally:
        conn.close()


# -- the per-client cap ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 on a dual-stack socket
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one host has a whole /64
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ],
)
def test_clients_are_counted_by_ipv4_address_or_ipv6_64(peer, key):
    address = parse_address(peer)
    assert address is not None
    assert client_key(address) == key


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ([], "10.0.0.2"),  # the proxy's own request
        (["198.51.100.7"], "198.51.100.7"),
        (["1.2.3.4, 198.51.100.7"], "198.51.100.7"),  # the left hop is whatever the client wrote
        (["198.51.100.7, 10.0.0.9"], "198.51.100.7"),  # through two trusted proxies
        (["198.51.100.7", "10.0.0.9"], "198.51.100.7"),  # the header sent twice
        (["not-an-address"], None),
    ],
)
def test_the_client_behind_a_trusted_proxy_is_the_right_most_untrusted_hop(forwarded_for, client):
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    peer = ipaddress.ip_address("10.0.0.2")
    found = client_address(peer, forwarded_for, trusted)
    assert (str(found) if found else None) == client


async def test_one_address_cannot_take_every_connection(limited):
    await settle(limited)
    refused_before = await metric(
        limited, 'eventrouter_connections_refused_total{reason="max_connections_per_client"}'
    )
    held = [await Connection.open(limited) for _ in range(PER_CLIENT)]
    try:
        await asyncio.sleep(0.1)
        extra = await Connection.open(limited)
        status, headers, body = await extra.response()
        extra.close()
        assert status == 503
        assert headers["retry-after"] == "1"
        assert body == {
            "error": "too_many_connections",
            "message": "too many connections from your address; retry shortly",
        }
        # another address is served meanwhile
        status, answer = await post_webhook(limited, "beside-the-cap", local="127.0.0.2")
        assert status == 200, answer
        assert answer["status"] == "accepted"
        refused = await metric(
            limited, 'eventrouter_connections_refused_total{reason="max_connections_per_client"}'
        )
        assert refused == refused_before + 1
    finally:
        for conn in held:
            conn.close()


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(limited):
    await settle(limited)
    # the proxy's own connections are not capped by its address
    proxy = [await Connection.open(limited, local=PROXY) for _ in range(PER_CLIENT + 2)]
    try:
        for n, conn in enumerate(proxy):
            body, headers = signed(f"proxied-{n}")
            forwarded = {**headers, "X-Forwarded-For": f"203.0.113.{n}"}
            await conn.send(request("POST", "/hooks/demo", body, forwarded))
        for conn in proxy:
            status, _, answer = await conn.response()
            assert status == 200, answer
        # one client whose requests hold more connections than the cap: the extra one is refused
        slow = []
        for n in range(PER_CLIENT + 1):
            body, headers = signed(f"one-client-{n}")
            forwarded = {**headers, "X-Forwarded-For": "198.51.100.9, 203.0.113.99"}
            whole = request("POST", "/hooks/demo", body, forwarded)
            conn = proxy[n]
            await conn.send(whole[:-5])  # the handler runs, waiting for the end of the body
            slow.append((conn, whole[-5:]))
        await asyncio.sleep(0.2)
        answers = []
        for conn, rest in slow:
            await conn.send(rest)
            answers.append(await conn.response())
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200] * PER_CLIENT + [503]
        [refused] = [body for status, _, body in answers if status == 503]
        assert refused["error"] == "too_many_connections"
    finally:
        for conn in proxy:
            conn.close()


@pytest.mark.parametrize(
    ("local", "forwarded_for", "status"),
    [
        (PROXY, "198.51.100.7", 200),  # the proxy names a client in allowed_networks
        (PROXY, "198.51.100.7, 203.0.113.5", 403),  # the right-most hop is the client
        (PROXY, f"198.51.100.7, {PROXY}", 200),  # through a chain of trusted proxies
        (PROXY, "unknown", 403),  # a hop that is not an address: the proxy's own, not allowed
        ("127.0.0.1", "198.51.100.7", 403),  # not a trusted proxy: its header is not read
    ],
)
async def test_exotel_allow_list_uses_the_client_address_of_server_trusted_proxies(
    limited, local, forwarded_for, status
):
    body = EXOTEL_BODY.read_text().replace("call_def456", f"call_{local}_{len(forwarded_for)}")
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            f"{limited.url}/hooks/exotel?token={EXOTEL_TOKEN}",
            data=body,
            headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        ) as answer,
    ):
        assert answer.status == status, await answer.text()
        if status == 403:
            assert (await answer.json())["error"] == "forbidden"


# -- headers larger than 4 KiB ----------------------------------------------------------------


async def test_large_headers_get_their_answer_and_no_unsolicited_408(limited):
    conn = await Connection.open(limited)
    try:
        await conn.send(request("GET", "/healthz", headers={"X-Large": "a" * 5000}))
        assert (await conn.response())[0] == 200
        # the next bytes on the connection: none, then the quiet close of an idle connection
        assert await conn.closed(timeout=HEADER_TIMEOUT + KEEPALIVE_TIMEOUT + 3) == b""
    finally:
        conn.close()


async def test_large_headers_with_a_slow_body_are_not_a_header_timeout(limited):
    body, headers = signed("large-slow")
    whole = request("POST", "/hooks/demo", body, {**headers, "X-Large": "b" * 5000})
    split = whole.index(b"\r\n\r\n") + 4
    conn = await Connection.open(limited)
    try:
        await conn.send(whole[:split] + body[:10])
        await asyncio.sleep(HEADER_TIMEOUT + 0.5)  # past the header time, within read_timeout
        await conn.send(whole[split + 10 :])
        status, _, answer = await conn.response()
        assert status == 200, answer
    finally:
        conn.close()
    assert "Traceback" not in limited.logs()


# -- clients that disconnect ----------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_client_disconnecting_mid_body_is_one_info_line(limited, framing):
    label = 'eventrouter_requests_total{outcome="client_disconnected",source="demo"}'
    before = await metric(limited, label)
    body, headers = signed(f"gone-{framing}")
    if framing == "chunked":
        head = {**headers, "Transfer-Encoding": "chunked"}
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        data = f"POST /hooks/demo HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()
        data += f"{len(body):x}\r\n".encode() + body[:5]  # a chunk cut short
    else:
        data = request("POST", "/hooks/demo", body, headers)[: -len(body) // 2]
    logged = len(limited.logs())
    conn = await Connection.open(limited)
    await conn.send(data)
    await asyncio.sleep(0.2)
    conn.writer.transport.abort()  # reset, as a dropped client does
    deadline = time.monotonic() + 5
    while await metric(limited, label) < before + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await metric(limited, label) == before + 1
    new = limited.logs()[logged:]
    lines = [line for line in new.splitlines() if "disconnected" in line]
    assert len(lines) == 1, new
    assert "INFO" in lines[0]
    assert "Traceback" not in new
    assert "ERROR" not in new


# -- every answer is JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request("POST", "/hooks/demo", b"{}", {"Expect": "200-ok"}), 417),
        (request("POST", "/nowhere", b"{}", {"Expect": "200-ok"}), 417),
        (request("GET", "/healthz", headers={"Expect": "200-ok"}), 417),
        (b"NOT AN HTTP REQUEST\r\n\r\n", 400),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", 400),
        (request("POST", "/healthz", headers={"Content-Length": "x"}), 400),
        (
            b"POST /hooks/demo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (request("GET", "/nowhere"), 404),
        (request("DELETE", "/hooks/demo"), 405),
        (request("BREW", "/hooks/demo"), 400),
        (request("POST", "/hooks/demo", headers={"Content-Length": str(10**9)}), 413),
    ],
)
async def test_every_answer_aiohttp_builds_itself_is_json(limited, raw, status):
    conn = await Connection.open(limited)
    try:
        await conn.send(raw)
        got, headers, body = await conn.response()
    finally:
        conn.close()
    assert got == status
    assert headers["content-type"].startswith("application/json"), body
    assert set(body) >= {"error", "message"}, body


async def test_expect_100_continue_still_works(limited):
    body, headers = signed("expect-continue")
    conn = await Connection.open(limited)
    try:
        head = request("POST", "/hooks/demo", body, {**headers, "Expect": "100-continue"})
        await conn.send(head[: -len(body)])
        interim = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        await conn.send(body)
        status, _, answer = await conn.response()
        assert status == 200, answer
    finally:
        conn.close()


# -- the default config against 1,024 idle connections from one address -----------------------


@pytest.fixture
def defaults(tmp_path: Path) -> Iterator[EventRouterProcess]:
    """A server with nothing set in ``[server]`` but its host."""
    process = EventRouterProcess(config=write_demo_config(tmp_path)).start()
    yield process
    process.stop()


async def test_default_config_holds_against_1024_idle_connections_from_one_address(defaults):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    attackers: list[Connection] = []
    try:
        served = 0
        for _ in range(1024):
            conn = await Connection.open(defaults)
            attackers.append(conn)
            await conn.send(request("GET", "/healthz"))
        for conn in attackers:
            try:
                status, _, _ = await conn.response()
            except ConnectionResetError:  # refused and closed before its request arrived
                continue
            served += status == 200
        assert 0 < served < 1024  # the per-client cap refused the rest
        # while the attacker's connections sit idle, another address is served at once
        status, answer = await post_webhook(defaults, "past-1024", local="127.0.0.2", timeout=1)
        assert status == 200, answer
        assert answer["status"] == "accepted"
    finally:
        for conn in attackers:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
