"""Downloading campaign reports (``data.campaign.report_url``) into the archive, SSRF-safe.

Every hop (the URL and each redirect) is checked: http(s) only, host on the allow-list, and
every address the name resolves to public unless private hosts are allowed. The request then
goes to the checked address (pinned), so a second DNS answer cannot swap in another host.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from attrs import frozen
from yarl import URL

from eventrouter import PermanentError, RetryableError, error_for_status
from eventrouter_csv.files import fsync_directory, make_directories
from eventrouter_csv.paths import safe_name

__all__ = [
    "ReportPolicy",
    "ReportRefused",
    "download_report",
    "embedded_ipv4",
    "is_public_address",
    "parse_report_url",
    "report_name",
]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
#: what a host may hold once yarl has parsed it (RFC 3986 reg-name, IP literals, zone ids)
_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=:-]+")


class ReportRefused(Exception):
    """The report will never be fetched as it is (refused host, 4xx, too large)."""


@frozen
class ReportPolicy:
    """Where reports may come from and how much of them to take."""

    hosts: Sequence[str] = ()
    max_bytes: int = 50 * 1024 * 1024
    timeout: float = 20.0
    allow_private: bool = False

    def host_allowed(self, host: str) -> bool:
        """True when ``host`` matches the allow-list (``*.example.com`` globs), or it is empty."""
        host = host.lower().rstrip(".")
        return not self.hosts or any(
            fnmatch.fnmatchcase(host, pattern.lower().rstrip(".")) for pattern in self.hosts
        )


#: NAT64's well-known prefix (RFC 6052): 64:ff9b::a.b.c.d reaches IPv4 a.b.c.d
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped (``::ffff:a.b.c.d``), 6to4
    (``2002:AABB:CCDD::``), Teredo (server and client) and NAT64 (``64:ff9b::a.b.c.d``)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_public_address(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved or unspecified addresses.

    An IPv6 address that embeds IPv4 addresses is public only when every one of them is: an
    IPv4-mapped, NAT64 or 6to4 address is judged by its IPv4 address alone (it is only a way of
    writing it, or of reaching it: a 6to4 address is the relay in front of that IPv4 router;
    and Python's own view of 2002::/16 changed between 3.11 patch releases: 3.11.2 calls it
    private, 3.11.7 global), a Teredo address by itself and by the IPv4 addresses it leads to.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public(ip)
    embedded = embedded_ipv4(ip)
    if ip.ipv4_mapped is not None or ip in _NAT64 or ip.sixtofour is not None:
        return _is_public(embedded[0])
    return _is_public(ip) and all(_is_public(inner) for inner in embedded)


def parse_report_url(url: str | URL) -> URL:
    """``url`` as a URL with a host and a usable port; ReportRefused for anything else.

    A report URL is whatever the sender put in the payload (``http://[::1/x``, a backslash in
    the host, port 99999): its problems are refusals like any other, never exceptions.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        port = parsed.port
    except (ValueError, TypeError):  # UnicodeError (an IDNA host) is a ValueError too
        raise ReportRefused("report URL is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ReportRefused("report URL is not an http(s) URL")
    if not _HOST.fullmatch(parsed.raw_host):
        # the resolver stops at a NUL: "evil.test\0.example.com" would pass the allow-list
        # ("*.example.com") and then reach evil.test
        raise ReportRefused("report URL is not a valid URL (unexpected characters in the host)")
    if not port:
        raise ReportRefused("report URL has no valid port")
    return parsed


def report_name(event_id: str, url: URL) -> str:
    """``<event_id>-<last segment of the URL path>``, sanitised; ``report`` when there is none."""
    last = url.path.rstrip("/").rsplit("/", 1)[-1]
    return f"{safe_name(event_id)}-{safe_name(last) if last else 'report'}"


async def _checked_addresses(url: URL, policy: ReportPolicy) -> list[str]:
    """The addresses to connect to for ``url``, once the URL and all of them pass the policy."""
    url = parse_report_url(url)  # a redirect's Location is as untrusted as the first URL
    host = url.raw_host or ""
    if not policy.host_allowed(host):
        raise ReportRefused(f"report host {host} is not in report_hosts")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, url.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            raise ReportRefused(f"report host {host} does not exist") from None
        raise RetryableError(f"report host {host}: cannot resolve ({exc.strerror})") from None
    except ValueError:  # "a..b", a label over 63 characters: no name the IDNA codec can encode
        raise ReportRefused(f"report host {host} is not a valid host name") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise RetryableError(f"report host {host}: no address")
    if not policy.allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise ReportRefused(
                    f"report host {host} resolves to a non-public address "
                    "(set allow_private_report_hosts = true to allow it)"
                )
    return addresses


async def _get(
    http: aiohttp.ClientSession, url: URL, addresses: Sequence[str]
) -> aiohttp.ClientResponse:
    """GET ``url`` from the first of ``addresses`` that accepts a connection (pinned)."""
    host = url.raw_host or ""
    headers = {"Host": host if url.is_default_port() else f"{host}:{url.port}"}
    extra: dict[str, Any] = {"server_hostname": host} if url.scheme == "https" else {}
    failure: aiohttp.ClientConnectorError | None = None
    for address in addresses:
        try:
            return await http.get(
                url.with_host(address), headers=headers, allow_redirects=False, **extra
            )
        except aiohttp.ClientConnectorError as exc:
            failure = exc
    assert failure is not None
    raise failure


async def download_report(
    http: aiohttp.ClientSession, url: str | URL, destination: Path, policy: ReportPolicy
) -> Path:
    """GET ``url`` into ``destination`` (atomically); an existing file is kept as it is.

    Raises :class:`ReportRefused` when fetching can never work, RetryableError when it may
    later (network errors, timeouts, 408/429/5xx).
    """
    if await asyncio.to_thread(destination.exists):
        return destination
    current = parse_report_url(url)
    host = current.raw_host or "?"
    try:
        async with asyncio.timeout(policy.timeout):
            for _ in range(MAX_REDIRECTS + 1):
                host = current.raw_host or "?"
                addresses = await _checked_addresses(current, policy)
                async with await _get(http, current, addresses) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise ReportRefused(f"report host {host} redirected nowhere")
                        try:
                            current = current.join(URL(location))
                        except (ValueError, TypeError):
                            raise ReportRefused(
                                f"report host {host} redirected to an invalid URL"
                            ) from None
                        continue
                    if not 200 <= response.status < 300:
                        error = error_for_status(
                            response.status,
                            detail=f"report download from {host}",
                            retry_after=response.headers.get("Retry-After"),
                        )
                        if isinstance(error, PermanentError):
                            raise ReportRefused(error.message)
                        raise error
                    await _save(response, destination, policy.max_bytes, host)
                    return destination
            raise ReportRefused(f"report host {host}: more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise RetryableError(
            f"report download from {host} timed out after {policy.timeout:g}s"
        ) from None
    except aiohttp.ClientError as exc:
        raise RetryableError(f"report download from {host} failed: {type(exc).__name__}") from None
    except OSError as exc:
        raise RetryableError(
            f"report download from {host}: cannot save it ({exc.strerror or type(exc).__name__})"
        ) from None


async def _save(
    response: aiohttp.ClientResponse, destination: Path, max_bytes: int, host: str
) -> None:
    """Stream the body into ``destination``; refuse it past ``max_bytes``."""
    length = response.content_length
    if length is not None and length > max_bytes:
        raise ReportRefused(f"report from {host} is {length} bytes, over report_max_bytes")
    await asyncio.to_thread(make_directories, destination.parent)
    # a partial file of its own: a retry may download the same report while the first attempt
    # still runs (in this process or another one delivering into the directory), and two
    # writers of one partial file would truncate and interleave each other's bytes
    partial = destination.with_name(f"{destination.name}.{secrets.token_hex(4)}.part")
    file = await asyncio.to_thread(open, partial, "xb")
    try:
        received = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise ReportRefused(f"report from {host} is over report_max_bytes ({max_bytes})")
            await asyncio.to_thread(file.write, chunk)
        await asyncio.to_thread(_finish, file, partial, destination)
    except BaseException:
        await asyncio.to_thread(_discard, file, partial)
        raise


def _finish(file: Any, partial: Path, destination: Path) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    os.replace(partial, destination)
    fsync_directory(destination.parent)


def _discard(file: Any, partial: Path) -> None:
    file.close()
    partial.unlink(missing_ok=True)
