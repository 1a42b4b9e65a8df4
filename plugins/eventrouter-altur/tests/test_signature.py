"""X-Altur-Signature: every variant Altur's two doc versions allow, and what must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from eventrouter import AuthenticationError, WebhookRequest
from eventrouter_altur.signature import received_digests, signed_messages, verify

FIXTURE_CALL = Path(__file__).parent / "fixtures" / "on_call_end.json"


def hmac_digest(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(body: bytes, signature: str | None, *, header: str = "X-Altur-Signature"):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[header] = signature
    return WebhookRequest(body=body, headers=headers)


def refused(source, req) -> str:
    with pytest.raises(AuthenticationError) as caught:
        source.authenticate(req)
    assert caught.value.status == 401
    return caught.value.message


def test_base64_digest_of_raw_body_passes(source, secret, load):
    body = load("on_call_end")
    source.authenticate(request(body, b64(hmac_digest(base64.b64decode(secret), body))))


def test_hex_digest_of_raw_body_passes(source, secret, load):
    body = load("on_call_end")
    source.authenticate(request(body, hmac_digest(base64.b64decode(secret), body).hex()))


def test_upper_case_hex_and_sha256_prefix_pass(source, secret, load):
    body = load("campaign_cycle_completed")
    digest = hmac_digest(base64.b64decode(secret), body)
    source.authenticate(request(body, digest.hex().upper()))
    source.authenticate(request(body, f"sha256={digest.hex()}"))


@pytest.mark.parametrize("header", ["x-altur-signature", "X-ALTUR-SIGNATURE", "X-Altur-Signature"])
def test_header_name_is_case_insensitive(source, secret, load, header):
    body = load("on_call_end")
    signature = b64(hmac_digest(base64.b64decode(secret), body))
    source.authenticate(request(body, signature, header=header))
    # the pure function takes any mapping, not only a case-insensitive one
    verify(body, {header: signature}, [base64.b64decode(secret)])


def test_missing_signature_is_refused(source, load, secret):
    message = refused(source, request(load("on_call_end"), None))
    assert message == "missing X-Altur-Signature header"
    assert secret not in message


def test_empty_signature_is_refused(source, load):
    assert refused(source, request(load("on_call_end"), "")) == "missing X-Altur-Signature header"


@pytest.mark.parametrize("value", ["not-a-digest", "abc", "Zm9v", "00" * 31, "é" * 44])
def test_signature_that_is_no_digest_is_refused(source, load, value):
    message = refused(source, request(load("on_call_end"), value))
    assert message == "X-Altur-Signature is not a hex or base64 HMAC-SHA256 digest"


def test_signature_under_another_secret_is_refused(source, load, secret):
    body = load("on_call_end")
    signature = b64(hmac_digest(b"someone else's secret", body))
    message = refused(source, request(body, signature))
    assert message == "X-Altur-Signature does not match the body"
    assert secret not in message


def test_signature_of_another_body_is_refused(source, secret, load):
    key = base64.b64decode(secret)
    body = load("on_call_end")
    tampered = body.replace(b'"duration": 45', b'"duration": 46')
    assert tampered != body
    assert refused(source, request(tampered, b64(hmac_digest(key, body)))) == (
        "X-Altur-Signature does not match the body"
    )


def test_rotated_secrets_each_pass(make_source, secret, rotated_secret, load):
    source = make_source(secrets=[secret, rotated_secret])
    body = load("campaign_status_changed_finished")
    for current in (secret, rotated_secret):
        source.authenticate(request(body, b64(hmac_digest(base64.b64decode(current), body))))
    stranger = base64.b64encode(b"a third secret nobody configured").decode()
    signature = b64(hmac_digest(base64.b64decode(stranger), body))
    assert refused(source, request(body, signature)) == "X-Altur-Signature does not match the body"


def test_utf8_secret_encoding_uses_the_text_as_key(make_source, load):
    # the older docs: key = secret.encode("utf-8"), hex digest of the payload string
    text_secret = "c2VjcmV0LXNlY3JldA=="  # valid base64 too, so only the encoding tells them apart
    body = load("on_call_end_legacy")
    signature = hmac_digest(text_secret.encode("utf-8"), body).hex()
    make_source(secrets=[text_secret], secret_encoding="utf8").authenticate(
        request(body, signature)
    )
    base64_source = make_source(secrets=[text_secret])
    assert refused(base64_source, request(body, signature)) == (
        "X-Altur-Signature does not match the body"
    )


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_signature_over_compact_json_passes_for_a_pretty_body(source, secret, ensure_ascii):
    payload = json.loads((FIXTURE_CALL).read_bytes())
    assert "Sofía" in json.dumps(payload, ensure_ascii=False)
    pretty = json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=ensure_ascii).encode()
    assert pretty != compact
    signature = b64(hmac_digest(base64.b64decode(secret), compact))
    source.authenticate(request(pretty, signature))


def test_compact_json_in_another_key_order_is_refused(source, secret):
    # docs/provider-reference.md: Altur's key order is the body's; a sorted re-serialisation is not tried
    payload = json.loads(FIXTURE_CALL.read_bytes())
    pretty = json.dumps(payload, indent=2).encode()
    resorted = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    signature = b64(hmac_digest(base64.b64decode(secret), resorted))
    assert refused(source, request(pretty, signature)) == (
        "X-Altur-Signature does not match the body"
    )


def test_compact_json_of_other_content_is_refused(source, secret):
    payload = json.loads(FIXTURE_CALL.read_bytes())
    pretty = json.dumps(payload, indent=2).encode()
    payload["status"] = "failed"
    signature = b64(
        hmac_digest(base64.b64decode(secret), json.dumps(payload, separators=(",", ":")).encode())
    )
    assert refused(source, request(pretty, signature)) == (
        "X-Altur-Signature does not match the body"
    )


def test_sign_produces_a_base64_digest_of_the_raw_body(source, secret, load):
    body = load("campaign_cycle_completed")
    signed = source.sign(body)
    assert signed.headers["Content-Type"] == "application/json"
    assert base64.b64decode(signed.headers["X-Altur-Signature"]) == hmac_digest(
        base64.b64decode(secret), body
    )
    assert signed.query == {}
    source.authenticate(request(body, signed.headers["X-Altur-Signature"]))


def test_sign_uses_the_first_secret(make_source, secret, rotated_secret):
    body = b'{"event_type":"on_call_end","id":"c1"}'
    signed = make_source(secrets=[rotated_secret, secret]).sign(body)
    assert base64.b64decode(signed.headers["X-Altur-Signature"]) == hmac_digest(
        base64.b64decode(rotated_secret), body
    )


def test_insecure_source_accepts_unsigned_requests_and_signs_nothing(make_source, load):
    source = make_source(secrets=[], insecure=True)
    source.authenticate(request(load("on_call_end"), None))
    source.authenticate(request(load("on_call_end"), "garbage"))
    assert source.sign(b"{}").headers == {"Content-Type": "application/json"}


def test_received_digests_reads_hex_and_base64():
    digest = bytes(range(32))
    assert received_digests(digest.hex()) == [digest]
    assert received_digests(f"  {b64(digest)}  ") == [digest]
    assert received_digests("SHA256=" + digest.hex()) == [digest]
    assert received_digests("nope") == []
    assert received_digests(b64(bytes(31))) == []


def test_signed_messages_tries_raw_body_first_then_each_compact_form():
    body = '{ "name": "Sofía" }'.encode()
    assert list(signed_messages(body)) == [
        body,
        b'{"name":"Sof\\u00eda"}',
        '{"name":"Sofía"}'.encode(),
    ]
    compact = b'{"a":1}'
    assert list(signed_messages(compact)) == [compact]
    assert list(signed_messages(b"not json")) == [b"not json"]


def test_signed_messages_skips_a_form_with_no_utf8_encoding():
    body = b'{"a": "\\ud800"}'
    assert list(signed_messages(body)) == [body, b'{"a":"\\ud800"}']
