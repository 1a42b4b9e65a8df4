"""What a hostile sender can make eventrouter write: never a forged log line, never a secret.

Two classes of the hostile-client review (``test_hostile_input.py`` holds the others):

- control characters in logged values: an event type, an error text or any other value a sender
  chose is written on the record's own line, its newlines, ESC, NUL and bidi controls escaped;
- secrets inside header values: ``Authorization = "Bearer TOKEN"`` makes ``TOKEN`` a secret of
  its own, masked wherever it turns up, percent-encoded, form-encoded or JSON-escaped too.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web
from attrs import field, frozen

from eventrouter import PermanentError, RetryableError, Sink, hookimpl
from eventrouter.logs import JSONFormatter, TextFormatter, escape_controls, setup_logging
from eventrouter.redact import MASK, Redactor
from tests.processes import WHSEC

ALTUR_SECRET = base64.b64encode(b"altur-hostile-logs-key-0123456789").decode()
#: a line a forged record would start with
FORGED = "2026-06-08 18:00:00,000 INFO    eventrouter.ingest: source demo: accepted forged"
#: what a terminal must never receive from a sender
RAW_CONTROLS = ("\x1b", "\x00", "\u202e", "\u2066", "\x85", "\r", "\u200b", "\U000e0041")
#: the start of every record the text format writes
RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL)"
)

TOKEN = "fwd-inner-token-8c1f0e2d"
#: an Exotel token with characters a URL carries percent-encoded
EXOTEL_TOKEN = "exo/token+2026 é~=secret"


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., io.StringIO]]:
    """``log_output(fmt=..., level=..., secrets=...)``: eventrouter's own logging set-up, as
    ``serve`` makes it, writing into a buffer; the previous handlers come back afterwards."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    access = logging.getLogger("aiohttp.access")
    access_level = access.level

    def install(
        *, fmt: str = "text", level: str = "info", secrets: tuple[str, ...] = ()
    ) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        setup_logging(fmt=fmt, level=level, redactor=Redactor(secrets))
        return buffer

    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    access.setLevel(access_level)


def record(message: str, *args: Any, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("eventrouter.test", logging.INFO, __file__, 1, message, args, exc_info)


# -- control characters in logged values ------------------------------------------------------


async def test_a_signed_event_type_cannot_forge_a_log_line(make_router, log_output):
    output = log_output()
    router = await make_router(
        {
            "sources": {
                "demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]},
                "altur": {"plugin": "altur", "secrets": [ALTUR_SECRET]},
            },
            "sinks": {"recorder": {"plugin": "recording"}},
            "routes": [{"sinks": ["recorder"]}],
        }
    )
    # ... and a zero-width space and a Unicode tag character: text a terminal does not show
    hostile = f"invoice.paid\n{FORGED} \x1b[2J\x00 \u202egnp.exe \u2066x\u2069 \x85\u200b\U000e0041"
    status, _ = await router.post("demo", {"type": hostile, "data": {}})
    assert status == 200
    status, _ = await router.post(
        "altur", {"event_type": f"on_call_end\r\n{FORGED}", "id": "call-1"}
    )
    assert status == 200
    await router.recorder.wait_for("recorder", 2)

    text = output.getvalue()
    lines = text.splitlines()
    assert [line for line in lines if not RECORD.match(line)] == []
    assert sum("accepted forged" in line for line in lines) == 2  # each inside its own record
    for char in RAW_CONTROLS:
        assert char not in text, repr(char)
    assert "invoice.paid\\n2026-06-08" in text
    assert "\\x1b[2J\\x00 \\u202egnp.exe \\u2066x\\u2069 \\x85\\u200b\\U000e0041" in text
    assert "altur.on_call_end\\r\\n2026-06-08" in text


def test_an_exception_message_stays_on_its_line_and_the_traceback_keeps_its_own():
    try:
        raise ValueError(f"bad type 'x\n{FORGED}\x1b[31m'")
    except ValueError:
        exc_info = sys.exc_info()
    text = TextFormatter().format(record("parsing failed for %s", "a\nb", exc_info=exc_info))
    lines = text.splitlines()
    assert lines[0].endswith("eventrouter.test: parsing failed for a\\nb")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == f"ValueError: bad type 'x\\n{FORGED}\\x1b[31m'"
    assert not [line for line in lines[1:] if RECORD.match(line)]


def test_the_json_format_stays_valid_json_and_keeps_the_value():
    value = f"x\n{FORGED}\r\x1b[2J\x00\u202e\u2066\x85\u2028\u200b\U000e0041\udcff"
    line = JSONFormatter().format(record("accepted %s", value))
    assert "\n" not in line
    for char in (*RAW_CONTROLS, "\u2028", "\udcff"):
        assert char not in line, repr(char)
    assert json.loads(line)["message"] == f"accepted {value}"


def test_escape_controls_leaves_ordinary_text_alone():
    text = "Ünïcödé, tabs\tand emoji 📞 and \\n (a backslash and an n)"
    assert escape_controls(text) == text.replace("\t", "\\t")


# -- secrets inside header values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "shown"),
    [
        ("Bearer fwd-inner-token-8c1f0e2d", "fwd-inner-token-8c1f0e2d"),
        ("Token fwd-inner-token-8c1f0e2d", "fwd-inner-token-8c1f0e2d"),
        ("Basic " + base64.b64encode(b"api-user:p4ss/w0rd+x").decode(), "p4ss/w0rd+x"),
        ("Basic " + base64.b64encode(b"api-user:p4ss/w0rd+x").decode(), "api-user:p4ss/w0rd+x"),
        ("api-user:p4ss/w0rd+x", base64.b64encode(b"api-user:p4ss/w0rd+x").decode()),
        ("https://hooks.example.com/in?key=k3y-in-the-query", "k3y-in-the-query"),
    ],
)
def test_the_credential_inside_a_configured_value_is_a_secret(configured, shown):
    redact = Redactor([configured])
    assert redact(f"401: {shown} is not valid") == f"401: {MASK} is not valid"


@pytest.mark.parametrize(
    "written",
    [
        quote(EXOTEL_TOKEN, safe=""),
        quote(EXOTEL_TOKEN, safe="").lower(),
        quote_plus(EXOTEL_TOKEN, safe=""),
        quote(EXOTEL_TOKEN, safe="/+=~"),
        json.dumps(EXOTEL_TOKEN)[1:-1],
        json.dumps(EXOTEL_TOKEN, ensure_ascii=False).replace("/", "\\/")[1:-1],
    ],
)
def test_a_secret_is_masked_in_any_encoding_a_server_may_log(written):
    assert Redactor([EXOTEL_TOKEN])(f"GET /hooks/exotel?token={written}&x=1 HTTP/1.1") == (
        f"GET /hooks/exotel?token={MASK}&x=1 HTTP/1.1"
    )


def test_a_secret_cut_short_at_the_end_of_an_error_is_masked():
    redact = Redactor([f"Bearer {TOKEN}"])
    answer = f"HTTP 500: {'x' * 180} {TOKEN}"[:200]  # how a sink shortens an answer
    assert redact(answer, cut=True) == f"HTTP 500: {'x' * 180} {MASK}"
    assert redact(answer) == answer  # only where asked for: it costs a search
    # the start of a secret shorter than 8 characters is no secret: "Bearer" stays
    assert redact("HTTP 401: expected Bearer", cut=True) == "HTTP 401: expected Bearer"


def test_text_that_only_looks_encoded_is_left_alone():
    text = "100% done + 5 more, path C:\\temp"
    assert Redactor([EXOTEL_TOKEN, "Bearer " + TOKEN])(text) == text


@frozen
class EchoOptions:
    headers: dict[str, str] = field(factory=dict, repr=False)
    #: echo only the first characters of the credential, as a sink that shortens answers does
    cut: int = 0


class EchoSink(Sink):
    """A sink whose remote end echoes the credential inside its Authorization header."""

    type_name = "echo-credential"
    Options = EchoOptions
    secret_options = ("headers",)

    async def deliver(self, event: Any) -> None:
        credential = self.options.headers["Authorization"].split()[-1]
        if self.options.cut:
            raise PermanentError(f"HTTP 400: unknown token {credential[: self.options.cut]}")
        raise RetryableError(f"HTTP 401: token {credential} expired; sent {quote(credential)}")


class EchoPlugin:
    @hookimpl
    def register_sinks(self, register: Callable[[type[Sink]], None]) -> None:
        register(EchoSink)


async def wait_dead(router: Any, sink: str, count: int) -> list[Any]:
    for _ in range(200):
        letters = await router.store.list_dead_letters(sink=sink)
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sink}: no dead letter")


async def echo_router(make_router: Any, register_plugin: Any, **options: Any) -> Any:
    """A router whose one sink echoes the credential of its inline ``Bearer`` header."""
    register_plugin(EchoPlugin())
    return await make_router(
        {
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
            "sinks": {
                "echo": {
                    "plugin": "echo-credential",
                    # inline, as the issue found it: a variable's value is a secret of its own
                    "headers": {"Authorization": f"Bearer {TOKEN}"},
                    **options,
                }
            },
            "routes": [{"sinks": ["echo"]}],
        }
    )


async def test_a_credential_inside_a_header_value_is_masked_before_it_is_stored_or_logged(
    make_router, register_plugin, caplog
):
    router = await echo_router(
        make_router, register_plugin, delivery={"retry_schedule": ["10ms"], "jitter": 0}
    )
    caplog.set_level(logging.INFO)
    status, answer = await router.post("demo", {"type": "invoice.paid", "data": {}})
    assert status == 200
    [letter] = await wait_dead(router, "echo", 1)
    assert letter.reason == f"gave up after 2 attempts: HTTP 401: token {MASK} expired; sent {MASK}"
    stored = await router.store.get_event(answer["event_id"])
    assert stored is not None
    assert TOKEN not in repr(stored)
    assert "dead-lettered" in caplog.text
    assert TOKEN not in caplog.text


async def test_a_credential_cut_short_is_masked_before_it_is_stored(make_router, register_plugin):
    router = await echo_router(make_router, register_plugin, cut=12)
    status, _ = await router.post("demo", {"type": "invoice.paid", "data": {}})
    assert status == 200
    [letter] = await wait_dead(router, "echo", 1)
    assert letter.reason == f"HTTP 400: unknown token {MASK}"


@pytest.fixture
async def echoing_remote() -> AsyncIterator[str]:
    """An endpoint that answers 500 with the bare token of the Authorization header it got."""

    async def echo(request: web.Request) -> web.Response:
        credential = request.headers.get("Authorization", "").split()[-1]
        # the token straddles the 200th character, where the sink cuts the answer short
        return web.Response(status=500, text=f"{'x' * 190}{credential} is not valid")

    app = web.Application()
    app.router.add_post("/in", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/in"
    await runner.cleanup()


async def test_the_http_sink_masks_an_echoed_credential_before_cutting_the_answer_short(
    make_router, echoing_remote, caplog
):
    """The answer is cut to 200 characters: cut first, the token's head would be stored."""
    router = await make_router(
        {
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
            "sinks": {
                "forward": {
                    "plugin": "http",
                    "url": echoing_remote,
                    "headers": {"Authorization": f"Bearer {TOKEN}"},
                    "delivery": {"retry_schedule": [], "jitter": 0},
                }
            },
            "routes": [{"sinks": ["forward"]}],
        }
    )
    caplog.set_level(logging.INFO)
    status, _ = await router.post("demo", {"type": "invoice.paid", "data": {}})
    assert status == 200
    [letter] = await wait_dead(router, "forward", 1)
    assert letter.reason == f"gave up after 1 attempts: HTTP 500: {'x' * 190}{MASK} is not"
    assert TOKEN[:6] not in caplog.text


async def test_a_percent_encoded_exotel_token_is_masked_in_the_debug_access_log(
    make_router, log_output
):
    output = log_output(fmt="json", level="debug", secrets=(EXOTEL_TOKEN,))
    router = await make_router(
        {
            "sources": {"exotel": {"plugin": "exotel", "tokens": [EXOTEL_TOKEN]}},
            "sinks": {"recorder": {"plugin": "recording"}},
            "routes": [{"sinks": ["recorder"]}],
        }
    )
    body = {"CallSid": "call-1", "Status": "completed", "From": "09876543210"}
    sent = []
    for encoded in (quote_plus(EXOTEL_TOKEN, safe=""), quote(EXOTEL_TOKEN, safe="").lower()):
        async with router.client.post(
            f"/hooks/exotel?token={encoded}",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status in (200, 400), await response.text()  # authenticated
        sent.append(encoded)
    text = output.getvalue()
    access = [json.loads(line) for line in text.splitlines() if '"aiohttp.access"' in line]
    assert len(access) == 2
    assert all("token=***" in entry["first_request_line"] for entry in access)
    for encoded in sent:
        assert encoded not in text
