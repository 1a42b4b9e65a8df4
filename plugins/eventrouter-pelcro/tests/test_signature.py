"""X-Pelcro-Hmac-SHA256: base64 HMAC-SHA256 of the raw body; rotation; constant-time compare."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from eventrouter import AuthenticationError, WebhookRequest
from eventrouter_pelcro import PelcroOptions, PelcroSource, sign, verify
from eventrouter_pelcro.signature import SIGNATURE_HEADER

# computed independently: openssl dgst -sha256 -hmac <secret> -binary <file> | base64
SEED_SIGNATURE = "TassvbA2gddrWSHXvR9N6AxXFCTPMP4rbjFZEV3nh0k="
PING_SIGNATURE = "5TlUMzyKH0mBjV/qdfQnK2KrH58Sd8fXpaBXg+Sz8r8="


def test_sign_matches_an_independent_hmac(fixture_bytes, secret):
    assert sign(fixture_bytes("campaign_triggered.json"), secret) == SEED_SIGNATURE
    assert sign(b'{"type":"ping"}', "pelcro-secret") == PING_SIGNATURE
    assert len(PING_SIGNATURE) == 44  # what Pelcro documents for the header


def test_secret_is_used_as_utf8_bytes():
    body = b'{"type":"ping"}'
    assert sign(body, "clé-secrète") != sign(body, "cle-secrete")
    verify(body, {SIGNATURE_HEADER: sign(body, "clé-secrète")}, ["clé-secrète"])


@pytest.mark.parametrize(
    "name", ["X-Pelcro-Hmac-SHA256", "x-pelcro-hmac-sha256", "X-PELCRO-HMAC-SHA256"]
)
def test_header_name_is_case_insensitive(name):
    body = b'{"type":"ping"}'
    verify(body, {name: PING_SIGNATURE}, ["pelcro-secret"])
    verify(body, CIMultiDictProxy(CIMultiDict({name: PING_SIGNATURE})), ["pelcro-secret"])


def test_surrounding_whitespace_in_the_header_is_ignored():
    verify(b'{"type":"ping"}', {SIGNATURE_HEADER: f"  {PING_SIGNATURE} "}, ["pelcro-secret"])


def test_valid_signature_passes_the_source(source, signed, fixture_bytes):
    source.authenticate(signed(fixture_bytes("campaign_triggered.json")))


def test_signature_by_another_secret_fails(source, signed, fixture_bytes, secret):
    request = signed(fixture_bytes("campaign_triggered.json"), key="someone-elses-secret")
    with pytest.raises(AuthenticationError) as info:
        source.authenticate(request)
    assert info.value.message == (
        "X-Pelcro-Hmac-SHA256 does not match the body (wrong secret, or the body was altered)"
    )
    assert secret not in str(info.value)
    assert "someone-elses-secret" not in str(info.value)


def test_altered_body_fails(source, signed, fixture_bytes):
    request = signed(fixture_bytes("campaign_triggered.json"))
    tampered = WebhookRequest(
        body=request.body.replace(b"55555", b"55556"), headers=request.headers
    )
    with pytest.raises(AuthenticationError, match="does not match the body"):
        source.authenticate(tampered)


def test_flipped_bit_in_the_signature_fails(fixture_bytes, secret):
    body = fixture_bytes("campaign_triggered.json")
    digest = bytearray(base64.b64decode(SEED_SIGNATURE))
    digest[0] ^= 1
    with pytest.raises(AuthenticationError, match="does not match"):
        verify(body, {SIGNATURE_HEADER: base64.b64encode(bytes(digest)).decode()}, [secret])


def test_missing_signature_fails(source, fixture_bytes):
    request = WebhookRequest(body=fixture_bytes("campaign_triggered.json"))
    with pytest.raises(AuthenticationError) as info:
        source.authenticate(request)
    assert info.value.message == "missing X-Pelcro-Hmac-SHA256 header"
    assert info.value.status == 401


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!",
        "c2hvcnQ=",  # valid base64, 5 bytes: not a SHA-256 digest
        PING_SIGNATURE.rstrip("="),  # padding stripped
        PING_SIGNATURE.encode().hex(),  # hex of the base64 text
        "é" * 44,
    ],
)
def test_malformed_signature_fails(value):
    with pytest.raises(AuthenticationError) as info:
        verify(b'{"type":"ping"}', {SIGNATURE_HEADER: value}, ["pelcro-secret"])
    assert info.value.message in (
        "missing X-Pelcro-Hmac-SHA256 header",
        "X-Pelcro-Hmac-SHA256 is not a base64 HMAC-SHA256 digest",
    )


def test_hex_digest_is_not_accepted():
    # the right MAC, but hex-encoded: Pelcro sends base64, so this is someone else's scheme
    hex_digest = base64.b64decode(PING_SIGNATURE).hex()
    with pytest.raises(AuthenticationError, match="not a base64"):
        verify(b'{"type":"ping"}', {SIGNATURE_HEADER: hex_digest}, ["pelcro-secret"])


def test_two_signature_headers_fail():
    headers = CIMultiDictProxy(
        CIMultiDict([(SIGNATURE_HEADER, PING_SIGNATURE), (SIGNATURE_HEADER.lower(), "x")])
    )
    with pytest.raises(AuthenticationError, match="more than one"):
        verify(b'{"type":"ping"}', headers, ["pelcro-secret"])


def test_rotation_accepts_every_configured_secret(signed, fixture_bytes):
    body = fixture_bytes("campaign_run_completed.json")
    source = PelcroSource("p", PelcroOptions(secrets=["new-secret-2025", "old-secret-2024"]))
    source.authenticate(signed(body, key="new-secret-2025"))
    source.authenticate(signed(body, key="old-secret-2024"))
    with pytest.raises(AuthenticationError):
        source.authenticate(signed(body, key="retired-secret-2023"))
    # sign() uses the first secret: the one to sign new messages with
    assert source.sign(body).headers[SIGNATURE_HEADER] == sign(body, "new-secret-2025")


def test_every_secret_is_compared_in_constant_time(monkeypatch):
    import hmac

    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    # the match is the first secret; the others are still compared (no early exit)
    verify(b'{"type":"ping"}', {SIGNATURE_HEADER: PING_SIGNATURE}, ["pelcro-secret", "b", "c"])
    assert calls == [(32, 32)] * 3


def test_no_secret_is_never_a_match():
    with pytest.raises(AuthenticationError, match="no secret"):
        verify(b'{"type":"ping"}', {SIGNATURE_HEADER: PING_SIGNATURE}, [])


def test_insecure_without_secrets_accepts_unsigned_requests(fixture_bytes):
    source = PelcroSource("p", PelcroOptions(insecure=True))
    source.authenticate(WebhookRequest(body=fixture_bytes("campaign_triggered.json")))
    signed_request = source.sign(b"{}")
    assert signed_request.headers == {"Content-Type": "application/json"}


def test_insecure_with_secrets_still_verifies(fixture_bytes):
    source = PelcroSource("p", PelcroOptions(secrets=["s3cret-value"], insecure=True))
    with pytest.raises(AuthenticationError, match="missing"):
        source.authenticate(WebhookRequest(body=fixture_bytes("campaign_triggered.json")))


def test_sign_refuses_without_a_secret():
    source = PelcroSource("p", PelcroOptions())
    with pytest.raises(ValueError, match="no secret"):
        source.sign(b"{}")
    with pytest.raises(AuthenticationError):
        source.authenticate(WebhookRequest(body=b"{}"))


def test_source_sign_round_trips(source, fixture_bytes):
    body = fixture_bytes("subscription_created.json")
    signed_request = source.sign(body, content_type="application/json; charset=utf-8")
    assert signed_request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert signed_request.query == {}
    source.authenticate(WebhookRequest(body=body, headers=signed_request.headers))
