"""The ``signed`` source over arbitrary schemes: what it signs it accepts, any change is refused;
``eventrouter check`` names every mistake in the options; secrets stay secret."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventrouter.builtin.signed import SignedOptions, SignedSource, Template
from eventrouter.cli import cli
from eventrouter.converter import converter
from eventrouter.errors import AuthenticationError
from eventrouter.sources import WebhookRequest

URL = "https://hooks.example.com/hooks/acme"
FORM = "application/x-www-form-urlencoded"


def source(table: dict[str, Any], name: str = "acme") -> SignedSource:
    built = SignedSource(name, converter.structure(table, SignedOptions))
    assert list(built.check()) == [], table
    return built


def problems(table: dict[str, Any]) -> list[str]:
    return list(SignedSource("acme", converter.structure(table, SignedOptions)).check())


# -- the property ------------------------------------------------------------------------------

_literal = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6).map(
    lambda text: text.replace("{", "{{").replace("}", "}}")
)
_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=4)


@st.composite
def secrets_for(draw: st.DrawFn, encoding: str) -> str:
    if encoding == "utf-8":
        return draw(
            st.text(
                st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
            ).filter(str.strip)  # a blank secret is refused (eventrouter.Secret)
        )
    key = draw(st.binary(min_size=1, max_size=64))
    if encoding == "hex":
        return key.hex()
    if encoding == "whsec":
        return "whsec_" + base64.b64encode(key).decode()
    return base64.b64encode(key).decode()


@st.composite
def schemes(draw: st.DrawFn) -> dict[str, Any]:
    """A ``signed`` table describing an arbitrary (valid) scheme."""
    table: dict[str, Any] = {
        "algorithm": draw(st.sampled_from(["sha1", "sha256", "sha512"])),
        "signature_encoding": draw(st.sampled_from(["hex", "base64", "base64url"])),
        "secret_encoding": draw(st.sampled_from(["utf-8", "base64", "hex", "whsec"])),
        "signature_header": draw(st.sampled_from(["X-Signature", "Webhook-Signature", "Sig"])),
        "signature_prefix": draw(st.sampled_from(["", "sha256=", "v1:", "V0="])),
    }
    table["secrets"] = draw(st.lists(secrets_for(table["secret_encoding"]), min_size=1, max_size=3))
    timestamp = draw(st.sampled_from(["none", "header", "list"]))
    if draw(st.booleans()) or timestamp == "list":
        table["signature_key"] = draw(_token)
    if timestamp == "list":
        table["timestamp_key"] = draw(_token.filter(lambda key: key != table["signature_key"]))
    elif timestamp == "header":
        table["timestamp_header"] = "X-Timestamp"
    names = [draw(st.sampled_from(["body", "form"]))]
    if timestamp != "none":
        names.append("timestamp")
    if draw(st.booleans()):
        names.append("url")
        table["url"] = URL
    if draw(st.booleans()):
        names.append("id")
        table["event"] = {"id": "header('X-Message-Id')"}
    names.extend(draw(st.lists(st.sampled_from(sorted(set(names))), max_size=2)))
    order = draw(st.permutations(names))
    literals = draw(st.lists(_literal, min_size=len(order) + 1, max_size=len(order) + 1))
    table["signed_content"] = literals[0] + "".join(
        f"{{{name}}}{text}" for name, text in zip(order, literals[1:], strict=True)
    )
    return table


def _body(draw: st.DrawFn, table: dict[str, Any]) -> tuple[bytes, str]:
    if "{form}" in table["signed_content"]:
        params = draw(st.dictionaries(_token, st.text(max_size=8), min_size=1, max_size=4))
        return urlencode(params).encode(), FORM
    return draw(st.binary(max_size=64)), "application/json"


def _request(body: bytes, headers: dict[str, str], query: dict[str, str] | None = None):
    return WebhookRequest(body=body, headers=headers, query=query or {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_sign_produces_authenticate_accepts_and_any_change_is_refused(data):
    table = data.draw(schemes())
    acme = source(table)
    body, content_type = _body(data.draw, table)
    headers = acme.sign(body, content_type=content_type).headers
    acme.authenticate(_request(body, headers))

    # the secret a request was signed with passes wherever it is in the list (rotation)
    older = data.draw(secrets_for(table["secret_encoding"]))
    source({**table, "secrets": [older, *table["secrets"]]}).authenticate(_request(body, headers))

    changes = ["secret"]
    names = Template.parse(table["signed_content"]).names
    changes += sorted(names - {"url"}) + (["query"] if "url" in names else [])
    change = data.draw(st.sampled_from(changes))
    changed_body, changed_headers, query = body, dict(headers), None
    verifier = acme
    if change == "body":
        changed_body = _flip(body) if body else b"x"
    elif change == "form":
        changed_body = body + b"&zz_added=1"
    elif change == "timestamp":
        if "timestamp_key" in table:
            header = table["signature_header"]
            key = table["timestamp_key"]
            stamp = next(
                part.split("=", 1)[1]
                for part in headers[header].split(",")
                if part.startswith(f"{key}=")
            )
            changed_headers[header] = headers[header].replace(
                f"{key}={stamp}", f"{key}={int(stamp) + 1}", 1
            )
        else:
            changed_headers["X-Timestamp"] = str(int(headers["X-Timestamp"]) + 1)
    elif change == "id":
        changed_headers["X-Message-Id"] = headers["X-Message-Id"] + "0"
    elif change == "query":
        query = {"page": "2"}
    elif change == "secret":
        other = data.draw(
            secrets_for(table["secret_encoding"]).filter(lambda s: s not in table["secrets"])
        )
        verifier = source({**table, "secrets": [other]})
    if change == "secret" and _same_key(verifier, acme):
        return  # "AA==" and "AAA=" are one HMAC key (HMAC pads a short key with zero bytes)
    with pytest.raises(AuthenticationError) as refused:
        verifier.authenticate(_request(changed_body, changed_headers, query))
    message = refused.value.message
    assert not [s for s in table["secrets"] if len(s) >= 6 and s in message], change


def _flip(body: bytes) -> bytes:
    return bytes([body[0] ^ 1]) + body[1:]


def _same_key(a: SignedSource, b: SignedSource) -> bool:
    """True when two secrets are one HMAC key (HMAC pads a short key with zero bytes)."""
    return a.scheme.digest(a.scheme.keys[0], b"probe") == b.scheme.digest(
        b.scheme.keys[0], b"probe"
    )


def test_outside_the_tolerance_is_refused_both_ways():
    acme = source(
        {
            "secrets": ["shh-its-a-secret"],
            "signature_header": "X-Sig",
            "timestamp_header": "X-Timestamp",
            "signed_content": "{timestamp}.{body}",
            "tolerance": "10s",
        }
    )
    headers = acme.sign(b"{}").headers
    acme.authenticate(_request(b"{}", headers))
    for shift in (-11, 11):
        from eventrouter.builtin.signed import scheme as scheme_module

        stamp = int(headers["X-Timestamp"]) + shift
        signed = scheme_module.sign(acme.scheme, values={"body": b"{}"}, timestamp=stamp)
        with pytest.raises(AuthenticationError, match="more than 10s from now"):
            acme.authenticate(_request(b"{}", signed))


# -- templates --------------------------------------------------------------------------------


def test_template_reads_placeholders_headers_and_literal_braces():
    template = Template.parse("{{v1}}:{timestamp}:{Header:X-Request-Id}:{body}")
    assert template.names == {"timestamp", "header:x-request-id", "body"}
    assert template.headers == ("x-request-id",)
    values = {"timestamp": b"1", "header:x-request-id": b"r", "body": b"\xff"}
    assert template.render(values) == b"{v1}:1:r:\xff"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bdy}", "unknown placeholder {bdy}"),
        ("{body", "unbalanced '{'"),
        ("body}", "unbalanced '}'"),
        ("{header:}", "unknown placeholder {header:}"),
    ],
)
def test_template_mistakes_are_named(text, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{")):
        Template.parse(text)


async def test_a_signed_header_must_be_present(make_router):
    acme = source(
        {
            "secrets": ["shh-its-a-secret"],
            "signature_header": "X-Sig",
            "signed_content": "{header:X-Request-Id}.{body}",
        }
    )
    with pytest.raises(AuthenticationError, match="missing header x-request-id"):
        acme.authenticate(_request(b"{}", {"X-Sig": "00"}))
    with pytest.raises(NotImplementedError, match="signs header x-request-id"):
        acme.sign(b"{}")


# -- eventrouter check ------------------------------------------------------------------------

BASE = {"secrets": ["shh-its-a-secret"], "signature_header": "X-Sig"}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"preset": "paypal"}, "preset: unknown preset 'paypal' (expected one of 'stripe'"),
        ({"algorithm": "md5"}, "algorithm: unknown algorithm 'md5'"),
        ({"signature_encoding": "b32"}, "signature_encoding: unknown encoding 'b32'"),
        ({"secret_encoding": "rot13"}, "secret_encoding: unknown encoding 'rot13'"),
        ({"signature_header": ""}, "signature_header: required"),
        ({"secrets": []}, "secrets: at least one secret is required"),
        ({"signed_content": "{bdy}"}, "signed_content: unknown placeholder {bdy}"),
        ({"signed_content": "{timestamp}"}, "signed_content: must sign {body} or {form}"),
        ({"signed_content": "{timestamp}.{body}"}, "{timestamp} needs timestamp_header"),
        ({"timestamp_header": "X-T"}, "must sign {timestamp} when a timestamp is read"),
        (
            {"timestamp_key": "t", "signed_content": "{timestamp}{body}"},
            "timestamp_key: needs signature_key",
        ),
        ({"signed_content": "{url}{body}"}, "url: required when signed_content uses {url}"),
        (
            {"signed_content": "{url}{body}", "url": "hooks.example.com/x"},
            "url: expected an absolute http(s) URL",
        ),
        ({"signed_content": "{url}{body}", "url": URL + "?a=1"}, "url: leave out the query string"),
        (
            {"signed_content": "{id}.{body}", "event": {"id": "id"}},
            "{id} needs event.id = \"header('NAME')\"",
        ),
        ({"event": {"type": "data.[type"}}, "event.type: invalid JMESPath expression 'data.[type'"),
        ({"event": {"type": "heeder('X')"}}, "event.type: unknown function heeder() in"),
        (
            {"event": {"type": "header('X', 'Y')"}},
            "Expected 1 argument for function header(), received 2",
        ),
        ({"contact": {"phone": "a ||"}}, "contact.phone: invalid JMESPath"),
        ({"attributes": {"plan": "a[?"}}, "attributes.plan: invalid JMESPath"),
        (
            {"tolerance": 0, "timestamp_header": "X-T", "signed_content": "{timestamp}{body}"},
            "tolerance: must be more than 0",
        ),
        ({"signature_prefix": "v1 "}, "signature_prefix: cannot hold whitespace"),
        ({"signature_key": "v=1"}, "signature_key: cannot hold ',' or '='"),
        ({"signature_key": "v1", "signature_prefix": "a,"}, "signature_prefix: cannot hold ','"),
        ({"phone_region": "XX"}, "phone_region: unknown region 'XX'"),
        ({"time_zone": "Mars/Olympus"}, "time_zone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_check_names_each_mistake(table, expected):
    found = problems({**BASE, **table})
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize("encoding", ["base64", "hex", "whsec"])
def test_check_never_quotes_a_secret(encoding):
    secret = "not-valid-in-any-encoding!!"
    found = problems({**BASE, "secrets": [secret], "secret_encoding": encoding})
    assert found == [f"secrets[0]: is not valid {encoding}"] or found == [
        "secrets[0]: does not start with 'whsec_'"
    ]


def test_eventrouter_check_reports_the_problems_with_their_paths(tmp_path: Path):
    config = tmp_path / "eventrouter.toml"
    config.write_text(
        """
[sources.acme]
plugin = "signed"
secrets = ["${ACME_SECRET}"]
secret_encoding = "base64"
signature_header = "X-Acme-Signature"
signed_content = "{timestamp}.{bdy}"
[sources.acme.event]
type = "header('X-Acme-Event'"
"""
    )
    result = CliRunner().invoke(
        cli, ["check", "--config", str(config)], env={"ACME_SECRET": "plain text secret!"}
    )
    assert result.exit_code == 1
    assert "sources.acme.secrets[0]: is not valid base64" in result.output
    assert "sources.acme.signed_content: unknown placeholder {bdy}" in result.output
    assert "sources.acme.event.type: invalid JMESPath expression" in result.output
    assert "plain text secret!" not in result.output


def test_preset_options_can_be_overridden_key_by_key():
    stripe = source(
        {
            "preset": "stripe",
            "secrets": ["whsec_x"],
            "tolerance": "1m",
            "event": {"subject": "data.object.customer"},
            "event_types": {"invoice.paid": "payment.received"},
        }
    )
    assert stripe.scheme.tolerance == 60
    assert stripe.scheme.header == "Stripe-Signature"
    assert stripe.resolved.event.subject == "data.object.customer"
    assert stripe.resolved.event.type == "type"  # the preset's, kept


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_never_appear_in_reprs():
    secret = "whsec_do-not-print-me"
    stripe = source({"preset": "stripe", "secrets": [secret]})
    for text in (repr(stripe.options), repr(stripe.resolved), repr(stripe.scheme)):
        assert secret not in text
        assert "do-not-print-me" not in text


# -- parsing ----------------------------------------------------------------------------------

ACME = {
    **BASE,
    "provider": "acme",
    "event": {"type": "kind", "id": "id", "time": "at"},
    "event_types": {"call.finished": "call.ended"},
    "phone_region": "US",
    "contact": {"phone": "customer.phone", "email": "customer.email", "name": "customer.name"},
    "call": {"id": "id", "status": "status", "duration_seconds": "seconds", "ended_at": "at"},
    "attributes": {"agent": "agent.name"},
}


def test_parse_maps_the_event_and_its_normalised_parts():
    acme = source(ACME)
    body = json.dumps(
        {
            "id": "c_1",
            "kind": "call.finished",
            "at": "2025-05-01T09:30:00Z",
            "seconds": "42",
            "status": "No Answer",
            "customer": {"phone": "(415) 555-0100", "email": " ann@example.com ", "name": "Ann"},
            "agent": {"name": "Bo"},
        }
    ).encode()
    event = acme.parse(_request(body, {"Content-Type": "application/json"}))
    assert (event.type, event.provider_type, event.provider) == (
        "call.ended",
        "call.finished",
        "acme",
    )
    assert event.idempotency_key == "c_1"
    assert event.time.isoformat() == "2025-05-01T09:30:00+00:00"
    contact, call = event.data.contact, event.data.call
    assert (contact.phone, contact.email, contact.name) == (
        "+14155550100",
        "ann@example.com",
        "Ann",
    )
    assert (call.status.value, call.provider_status, call.duration_seconds) == (
        "no_answer",
        "No Answer",
        42,
    )
    assert event.data.attributes == {"agent": "Bo"}
    assert event.data.campaign is None


def test_parse_falls_back_to_a_digest_of_the_body_for_the_idempotency_key():
    acme = source({**BASE, "event": {"type": "kind"}})
    event = acme.parse(_request(b'{"kind": "ping"}', {}))
    assert event.type == "acme.ping"
    assert event.idempotency_key.startswith("sha256:")
    assert len(event.idempotency_key) == 71


async def test_unparseable_or_unmappable_bodies_are_400_once_authenticated(make_router):
    router = await make_router(
        {
            "sources": {"acme": {"plugin": "signed", **ACME}},
            "sinks": {"recorder": {"plugin": "recording"}},
            "routes": [{"sinks": ["recorder"]}],
        }
    )
    for body, field in (
        (b"{not json", None),
        (b'{"id": 1}', "event.type"),
        (b'{"kind": "x", "seconds": "many"}', "call.duration_seconds"),
        (b'{"kind": "x", "at": "yesterday"}', "event.time"),
    ):
        status, answer = await router.post("acme", body)
        assert (status, answer["error"]) == (400, "invalid_payload"), (body, answer)
        assert answer.get("field") == field, answer
    status, answer = await router.post(
        "acme", b'{"kind": "x"}', signed=False, headers={"X-Sig": "0" * 64}
    )
    assert status == 401
    assert answer["message"].startswith("no signature in X-Sig matches")


async def test_send_signs_with_the_configured_scheme(make_router, tmp_path, recorded):
    table = {"preset": "twilio", "secrets": ["twilio-auth-token-0123456789"], "url": URL}
    router = await make_router(
        {
            "sources": {"calls": {"plugin": "signed", **table}},
            "sinks": {"recorder": {"plugin": "recording"}},
            "routes": [{"sinks": ["recorder"]}],
        }
    )
    config = tmp_path / "send.toml"
    config.write_text(
        f"""
[server]
port = {router.client.port}
[sources.calls]
plugin = "signed"
preset = "twilio"
secrets = ["twilio-auth-token-0123456789"]
url = "{URL}"
"""
    )
    payload = tmp_path / "call.form"
    payload.write_text(
        "CallSid=CA1&CallStatus=busy&From=%2B14155550100&To=%2B14155550111&Direction=inbound"
    )
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["send", "calls", str(payload), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith('200 {"status": "accepted"')
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.data.contact.phone) == ("call.ended", "+14155550100")
    assert time.time() - event.received_at.timestamp() < 60


def test_secrets_are_known_to_the_log_redactor():
    from eventrouter.config import parse_config
    from eventrouter.plugins import Registry, create_plugin_manager

    table = {"plugin": "signed", "preset": "github", "secrets": ["${GH_SECRET}", "rotating-out-1"]}
    config = parse_config(
        {"sources": {"gh": table}},
        Registry.collect(create_plugin_manager(load_entrypoints=False)),
        base_dir=".",
        environ={"GH_SECRET": "from-the-environment"},
    )
    assert {"from-the-environment", "rotating-out-1"} <= config.secrets
