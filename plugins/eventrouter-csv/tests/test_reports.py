"""Campaign report downloads from a local server: saved, refused, capped, retried."""

from __future__ import annotations

import asyncio
import ipaddress
import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

import eventrouter_csv.reports
from eventrouter import RetryableError
from eventrouter_csv.reports import (
    ReportPolicy,
    _get,
    download_report,
    embedded_ipv4,
    is_public_address,
    report_name,
)

REPORT = b"number,status\n+919876543210,completed\n" * 50


@pytest.fixture
async def report_server():
    """A report server on 127.0.0.1; ``server.hits`` counts requests per path."""
    hits: dict[str, int] = {}
    hosts: list[str] = []

    async def count(request):
        hits[request.path] = hits.get(request.path, 0) + 1
        hosts.append(request.headers["Host"])

    async def report(request):
        await count(request)
        return web.Response(body=REPORT, content_type="text/csv")

    async def big(request):
        await count(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"y" * 1024)
        await response.write_eof()
        return response

    async def declared(request):
        await count(request)
        return web.Response(body=b"z" * 5000)

    async def unavailable(request):
        await count(request)
        return web.Response(status=503, headers={"Retry-After": "7"})

    async def missing(request):
        await count(request)
        return web.Response(status=404)

    async def redirect(request):
        await count(request)
        raise web.HTTPFound(request.query.get("to", "/reports/camp_42.csv"))

    app = web.Application()
    app.router.add_get("/reports/camp_42.csv", report)
    app.router.add_get("/big", big)
    app.router.add_get("/declared", declared)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/missing", missing)
    app.router.add_get("/redirect", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.hits = hits
    server.hosts = hosts
    yield server
    await server.close()


def _with_report(event, url):
    campaign = event.data.campaign.__class__(
        id="camp_42", status=event.data.campaign.status, report_url=url
    )
    return event.evolve(data=event.data.__class__(campaign=campaign))


def _url(server, path):
    return f"http://127.0.0.1:{server.port}{path}"


async def test_report_is_saved_beside_the_day(
    make_sink, tmp_path, read_rows, report_server, campaign_completed
):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    event = _with_report(campaign_completed, _url(report_server, "/reports/camp_42.csv"))
    await sink.deliver(event)
    saved = tmp_path / "archive" / "reports" / "evt_campaign_completed-camp_42.csv"
    assert saved.read_bytes() == REPORT
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == "reports/evt_campaign_completed-camp_42.csv"
    assert row["campaign_report_url"] == _url(report_server, "/reports/camp_42.csv")
    # a re-delivery reuses the file; the duplicate row carries the same event_id
    await sink.deliver(event)
    assert report_server.hits == {"/reports/camp_42.csv": 1}
    rows = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert [r["event_id"] for r in rows] == ["evt_campaign_completed"] * 2
    assert rows[0] == rows[1]


async def test_a_named_host_is_pinned_to_its_checked_address(
    make_sink, tmp_path, report_server, campaign_completed
):
    sink = await make_sink(
        download_reports=True, allow_private_report_hosts=True, report_hosts=["LOCALHOST"]
    )
    url = f"http://localhost:{report_server.port}/reports/camp_42.csv"
    await sink.deliver(_with_report(campaign_completed, url))
    saved = tmp_path / "archive" / "reports" / "evt_campaign_completed-camp_42.csv"
    assert saved.read_bytes() == REPORT
    # the request went to the resolved address, still naming the host it was for
    assert report_server.hosts == [f"localhost:{report_server.port}"]


async def test_the_next_address_is_tried_when_one_refuses(http, report_server):
    url = URL(f"http://localhost:{report_server.port}/reports/camp_42.csv")
    # 127.0.0.2 is loopback too, but nothing listens there on this port
    async with await _get(http, url, ["127.0.0.2", "127.0.0.1"]) as response:
        assert response.status == 200
        assert await response.read() == REPORT
    with pytest.raises(aiohttp.ClientConnectorError):
        await _get(http, url, ["127.0.0.2"])


async def test_reports_follow_redirects(make_sink, tmp_path, report_server, campaign_completed):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    await sink.deliver(_with_report(campaign_completed, _url(report_server, "/redirect")))
    saved = tmp_path / "archive" / "reports" / "evt_campaign_completed-redirect"
    assert saved.read_bytes() == REPORT
    assert report_server.hits == {"/redirect": 1, "/reports/camp_42.csv": 1}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_by_default(
    make_sink, tmp_path, read_rows, report_server, campaign_completed, host, caplog
):
    sink = await make_sink(download_reports=True)
    url = f"http://{host}:{report_server.port}/reports/camp_42.csv?token=s3cr3t-token"
    await sink.deliver(_with_report(campaign_completed, url))
    assert report_server.hits == {}
    assert not (tmp_path / "archive" / "reports").exists()
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""
    assert row["campaign_report_url"] == url
    assert f"report host {host} resolves to a non-public address" in caplog.text
    assert "s3cr3t-token" not in caplog.text


async def test_a_redirect_is_checked_again(
    make_sink, tmp_path, read_rows, report_server, campaign_completed
):
    sink = await make_sink(
        download_reports=True, allow_private_report_hosts=True, report_hosts=["127.0.0.1"]
    )
    to = f"http://localhost:{report_server.port}/reports/camp_42.csv"
    await sink.deliver(_with_report(campaign_completed, _url(report_server, f"/redirect?to={to}")))
    assert report_server.hits == {"/redirect": 1}
    assert not (tmp_path / "archive" / "reports").exists()
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""


async def test_hosts_off_the_allow_list_are_refused(
    make_sink, tmp_path, report_server, campaign_completed
):
    sink = await make_sink(
        download_reports=True,
        allow_private_report_hosts=True,
        report_hosts=["*.exotel.com", "reports.example.com"],
    )
    await sink.deliver(
        _with_report(campaign_completed, _url(report_server, "/reports/camp_42.csv"))
    )
    assert report_server.hits == {}
    assert not (tmp_path / "archive" / "reports").exists()


@pytest.mark.parametrize("path", ["/big", "/declared"])
async def test_reports_over_the_cap_are_dropped(
    make_sink, tmp_path, read_rows, report_server, campaign_completed, path
):
    sink = await make_sink(
        download_reports=True, allow_private_report_hosts=True, report_max_bytes=4000
    )
    await sink.deliver(_with_report(campaign_completed, _url(report_server, path)))
    assert report_server.hits == {path: 1}
    reports = tmp_path / "archive" / "reports"
    assert not reports.exists() or list(reports.iterdir()) == []
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""


async def test_a_missing_report_does_not_fail_the_delivery(
    make_sink, tmp_path, read_rows, report_server, campaign_completed
):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    await sink.deliver(_with_report(campaign_completed, _url(report_server, "/missing")))
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["event_id"] == "evt_campaign_completed"
    assert row["campaign_report_file"] == ""


async def test_unavailable_report_is_retried_before_any_row(
    make_sink, tmp_path, report_server, campaign_completed
):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(_with_report(campaign_completed, _url(report_server, "/unavailable")))
    assert caught.value.retry_after == 7
    assert "HTTP 503" in caught.value.message
    assert not (tmp_path / "archive" / "2024-12-19.csv").exists()


async def test_unreachable_report_host_is_retryable(make_sink, tmp_path, campaign_completed):
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    port = server.port
    await server.close()
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    with pytest.raises(RetryableError, match=re.escape("report download from 127.0.0.1 failed")):
        await sink.deliver(
            _with_report(campaign_completed, f"http://127.0.0.1:{port}/reports/camp_42.csv")
        )
    assert not (tmp_path / "archive" / "2024-12-19.csv").exists()


async def test_slow_report_times_out_as_retryable(make_sink, campaign_completed):
    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(body=b"late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        sink = await make_sink(
            download_reports=True, allow_private_report_hosts=True, report_timeout="200ms"
        )
        with pytest.raises(RetryableError, match=re.escape("timed out after 0.2s")):
            await sink.deliver(_with_report(campaign_completed, _url(server, "/slow")))
    finally:
        await server.close()


async def test_reports_are_left_alone_unless_asked(
    make_sink, tmp_path, read_rows, report_server, campaign_completed
):
    sink = await make_sink()
    await sink.deliver(
        _with_report(campaign_completed, _url(report_server, "/reports/camp_42.csv"))
    )
    assert report_server.hits == {}
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""


async def test_non_http_urls_are_refused(make_sink, tmp_path, read_rows, campaign_completed):
    sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
    await sink.deliver(_with_report(campaign_completed, "file:///etc/passwd"))
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""
    assert not (tmp_path / "archive" / "reports").exists()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to classify, not to bind
        ("240.0.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        # 6to4 (2002::/16) reaches the IPv4 address in its next 32 bits
        ("2002:7f00:1::", False),  # 127.0.0.1
        ("2002:a01:203::1", False),  # 10.1.2.3
        ("2002:a9fe:a9fe::", False),  # 169.254.169.254, the cloud metadata service
        ("2002:808:808::1", True),  # 8.8.8.8
        # Teredo (2001::/32): server 65.54.227.120, client 127.0.0.1 (stored inverted)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),
        # NAT64 (64:ff9b::/96, what DNS64 answers for IPv4-only hosts): the IPv4 address decides
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a01:203", False),
        ("64:ff9b::808:808", True),
    ],
)
def test_public_addresses(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:127.0.0.1", ["127.0.0.1"]),
        ("2002:7f00:1::", ["127.0.0.1"]),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", ["65.54.227.120", "127.0.0.1"]),
        ("64:ff9b::7f00:1", ["127.0.0.1"]),
        ("2001:4860:4860::8888", []),
    ],
)
def test_embedded_ipv4_addresses_are_unwrapped(address, embedded):
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert [str(ip) for ip in found] == embedded


async def test_a_6to4_address_of_loopback_is_refused(
    make_sink, tmp_path, read_rows, report_server, campaign_completed, caplog
):
    sink = await make_sink(download_reports=True, report_timeout="2s")
    url = f"http://[2002:7f00:1::]:{report_server.port}/reports/camp_42.csv"
    await sink.deliver(_with_report(campaign_completed, url))
    assert report_server.hits == {}
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""
    assert "report host 2002:7f00:1:: resolves to a non-public address" in caplog.text


def test_report_names():
    def name(event_id, url):
        return report_name(event_id, URL(url))

    assert name("evt_1", "https://x.example.com/a/report.csv?sig=1") == "evt_1-report.csv"
    assert name("evt_1", "https://x.example.com/") == "evt_1-report"
    assert name("evt_1", "https://x.example.com/a/..%2F..%2Fetc") == "evt_1-etc"
    assert name("evt/../1", "https://x.example.com/r%20one%5C..") == "evt_.._1-r_one_.."


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x.csv",  # an IPv6 literal never closed
        "http://reports.example.com\\@evil.test/x.csv",  # a backslash in the authority
        "http://reports.example.com:99999/x.csv",  # a port out of range
        "http://reports.example.com:8o/x.csv",  # a port that is no number
        "http://reports.example.com:0/x.csv",
        "http://a..b/x.csv",  # an empty label: no name the resolver can encode
        f"http://{'a' * 64}.example.com/x.csv",  # a label over 63 characters
        "http://reports\u202e.example.com/x.csv",  # a bidi control in the host
        "http://\udcff/x.csv",  # a lone surrogate (JSON can carry one)
    ],
)
async def test_a_malformed_report_url_is_refused_and_the_row_written(
    make_sink, tmp_path, read_rows, campaign_completed, url, caplog
):
    sink = await make_sink(download_reports=True)
    await sink.deliver(_with_report(campaign_completed, url))  # no exception: nothing to retry
    assert not (tmp_path / "archive" / "reports").exists()
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    written = url.encode("utf-8", "replace").decode()  # the archive holds UTF-8 only
    assert (row["campaign_report_file"], row["campaign_report_url"]) == ("", written)
    assert "report of evt_campaign_completed not downloaded" in caplog.text


async def test_a_nul_in_the_host_does_not_pass_the_allow_list(
    make_sink, tmp_path, read_rows, report_server, campaign_completed, caplog
):
    """The resolver stops at the NUL: the allow-list saw *.example.com, the request went to
    127.0.0.1."""
    sink = await make_sink(
        download_reports=True, allow_private_report_hosts=True, report_hosts=["*.example.com"]
    )
    url = f"http://127.0.0.1\x00.example.com:{report_server.port}/reports/camp_42.csv"
    await sink.deliver(_with_report(campaign_completed, url))
    assert report_server.hits == {}
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""
    assert "unexpected characters in the host" in caplog.text


async def test_a_redirect_to_a_malformed_url_is_refused(
    make_sink, tmp_path, read_rows, campaign_completed, caplog
):
    async def bad_redirect(request):
        return web.Response(status=302, headers={"Location": "http://127.0.0.1:99999/x.csv"})

    app = web.Application()
    app.router.add_get("/r", bad_redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        sink = await make_sink(download_reports=True, allow_private_report_hosts=True)
        await sink.deliver(_with_report(campaign_completed, f"http://127.0.0.1:{server.port}/r"))
    finally:
        await server.close()
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["campaign_report_file"] == ""
    assert "not downloaded" in caplog.text


async def test_two_downloads_of_one_report_at_once_both_succeed(http, tmp_path, monkeypatch):
    """A retry that runs while the first attempt still downloads (in this process or another
    one delivering into the directory) writes a partial file of its own, not the first's."""
    body = [b"number,status\n", b"+919876543210,completed\n" * 500]
    both_open, first_done = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    opened = []

    def open_partial(path, mode):  # stands in for open() in reports.py, which runs in a thread
        file = open(path, mode)  # noqa: SIM115 - _save closes it
        opened.append(path)
        if len(opened) == 2:
            loop.call_soon_threadsafe(both_open.set)
        return file

    monkeypatch.setattr(eventrouter_csv.reports, "open", open_partial, raising=False)
    requests = []

    async def report(request):
        requests.append(request)
        first = len(requests) == 1  # known now: the other request may come in while this writes
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body[0])
        # the first finishes once both have begun their partial files, the second after that
        await asyncio.wait_for(both_open.wait() if first else first_done.wait(), 10)
        await response.write(body[1])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/report.csv", report)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = _url(server, "/report.csv")
        destination = tmp_path / "reports" / "evt_1-report.csv"
        policy = ReportPolicy(allow_private=True)
        first = asyncio.create_task(download_report(http, url, destination, policy))
        second = asyncio.create_task(download_report(http, url, destination, policy))
        assert await asyncio.wait_for(first, 10) == destination
        first_done.set()
        assert await asyncio.wait_for(second, 10) == destination
    finally:
        await server.close()
    assert len(set(opened)) == 2
    assert destination.read_bytes() == b"".join(body)
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]
