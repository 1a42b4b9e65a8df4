"""Tokens, Basic credentials, allowed networks, and signing for tests.

The client address behind a reverse proxy is the core's business (``[server] trusted_proxies``):
tests/test_connections.py posts Exotel callbacks through a trusted proxy and a forged header.
"""

from __future__ import annotations

import base64
import re

import pytest

from eventrouter import AuthenticationError, ForbiddenError, WebhookRequest
from eventrouter_exotel import AccessPolicy, authenticate
from eventrouter_exotel.auth import parse_networks

OLD_TOKEN = "tok_old_8Jd2kQm4Zx7Vb1Nw"
NEW_TOKEN = "tok_new_5Rt9pLs3Hc6Ye2Ga"
BASIC = "exotel:s3cret-Pa55word"
BODY = b'{"call_sid": "c1", "number": "+919876543210", "status": "completed"}'


def request(
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    remote: str | None = "203.0.113.7",
) -> WebhookRequest:
    return WebhookRequest(
        body=BODY,
        headers={"Content-Type": "application/json", **(headers or {})},
        query=query or {},
        remote=remote,
    )


def basic(credential: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}


# -- tokens ----------------------------------------------------------------------------------


def test_valid_token(make_source, token):
    make_source().authenticate(request(query={"token": token}))


def test_invalid_token(make_source, token):
    with pytest.raises(AuthenticationError) as caught:
        make_source().authenticate(request(query={"token": token + "x"}))
    assert caught.value.message == "invalid token"
    assert caught.value.status == 401
    assert token not in str(caught.value)


def test_missing_token(make_source, token):
    with pytest.raises(AuthenticationError) as caught:
        make_source().authenticate(request())
    assert caught.value.status == 401
    assert "missing credentials" in caught.value.message
    assert "?token=" in caught.value.message
    assert token not in caught.value.message


@pytest.mark.parametrize(
    "given", ["", " ", "TOK_3Q9VND8XKP2LMW7RTZ5Y", "tok_3q9VnD8xKp2LmW7rTz5", "tok"]
)
def test_near_misses_are_refused(make_source, given):
    with pytest.raises(AuthenticationError, match="invalid token"):
        make_source().authenticate(request(query={"token": given}))


def test_token_in_a_header_or_body_does_not_count(make_source, token):
    with pytest.raises(AuthenticationError, match="missing credentials"):
        make_source().authenticate(request(headers={"token": token, "X-Token": token}))


def test_rotated_tokens(make_source):
    source = make_source(tokens=[NEW_TOKEN, OLD_TOKEN])
    source.authenticate(request(query={"token": OLD_TOKEN}))
    source.authenticate(request(query={"token": NEW_TOKEN}))
    retired = make_source(tokens=[NEW_TOKEN])
    with pytest.raises(AuthenticationError, match="invalid token"):
        retired.authenticate(request(query={"token": OLD_TOKEN}))


def test_only_digests_are_kept(make_source, token):
    source = make_source()
    assert token.encode() not in repr(source.policy).encode()
    assert all(len(digest) == 32 for digest in source.policy.token_digests)


# -- Basic credentials ------------------------------------------------------------------------


def test_basic_auth_valid(make_source):
    make_source(tokens=[], basic_auth=[BASIC]).authenticate(request(headers=basic(BASIC)))


@pytest.mark.parametrize("credential", ["exotel:wrong", "other:s3cret-Pa55word", "exotel:", ""])
def test_basic_auth_invalid(make_source, credential):
    with pytest.raises(AuthenticationError) as caught:
        make_source(tokens=[], basic_auth=[BASIC]).authenticate(request(headers=basic(credential)))
    assert caught.value.message == "invalid Basic credentials"
    assert "s3cret" not in str(caught.value)


def test_basic_auth_missing(make_source):
    source = make_source(tokens=[], basic_auth=[BASIC])
    with pytest.raises(AuthenticationError, match=r"missing credentials.*Basic"):
        source.authenticate(request())
    with pytest.raises(AuthenticationError, match="missing credentials"):
        source.authenticate(request(headers={"Authorization": "Bearer abc"}))


@pytest.mark.parametrize("header", ["Basic !!!", "Basic ZXhvdGVs=x", "basic é"])
def test_basic_auth_malformed(make_source, header):
    with pytest.raises(AuthenticationError, match="malformed Basic"):
        make_source(tokens=[], basic_auth=[BASIC]).authenticate(
            request(headers={"Authorization": header})
        )


def test_basic_scheme_is_case_insensitive(make_source):
    header = {"Authorization": "basic " + base64.b64encode(BASIC.encode()).decode()}
    make_source(tokens=[], basic_auth=[BASIC]).authenticate(request(headers=header))


def test_token_or_basic_when_both_are_configured(make_source, token):
    source = make_source(tokens=[token], basic_auth=[BASIC])
    source.authenticate(request(query={"token": token}))
    source.authenticate(request(headers=basic(BASIC)))
    source.authenticate(request(query={"token": "wrong"}, headers=basic(BASIC)))
    with pytest.raises(AuthenticationError, match=r"missing credentials: .*token.* or Basic"):
        source.authenticate(request())
    with pytest.raises(AuthenticationError, match="invalid token"):
        source.authenticate(request(query={"token": "wrong"}, headers=basic("exotel:wrong")))


def test_a_token_does_not_pass_a_basic_only_source(make_source, token):
    with pytest.raises(AuthenticationError, match="missing credentials"):
        make_source(tokens=[], basic_auth=[BASIC]).authenticate(request(query={"token": token}))


def test_insecure_source_accepts_anything(make_source):
    make_source(tokens=[], insecure=True).authenticate(request())


def test_insecure_does_not_waive_a_configured_token(make_source, token):
    with pytest.raises(AuthenticationError):
        make_source(tokens=[token], insecure=True).authenticate(request())


# -- networks ----------------------------------------------------------------------------------


def test_allowed_network(make_source, token):
    source = make_source(allowed_networks=["203.0.113.0/24", "2001:db8::/32"])
    source.authenticate(request(query={"token": token}, remote="203.0.113.7"))
    source.authenticate(request(query={"token": token}, remote="2001:db8::1"))


def test_outside_allowed_networks_is_forbidden(make_source, token):
    source = make_source(allowed_networks=["10.0.0.0/8"])
    with pytest.raises(ForbiddenError) as caught:
        source.authenticate(request(query={"token": token}, remote="203.0.113.7"))
    assert caught.value.status == 403
    assert "203.0.113.7" in caught.value.message


def test_network_is_checked_before_the_token(make_source):
    source = make_source(allowed_networks=["10.0.0.0/8"])
    with pytest.raises(ForbiddenError):
        source.authenticate(request(remote="203.0.113.7"))


@pytest.mark.parametrize("remote", [None, "", "not-an-ip", "203.0.113.7:80"])
def test_unknown_client_address_is_forbidden(make_source, token, remote):
    source = make_source(allowed_networks=["10.0.0.0/8"])
    with pytest.raises(ForbiddenError, match="cannot be determined"):
        source.authenticate(request(query={"token": token}, remote=remote))


def test_x_forwarded_for_is_never_read_by_the_source(make_source, token):
    # the core has already resolved it into remote when the peer is a trusted proxy
    source = make_source(allowed_networks=["10.0.0.0/8"])
    forged = {"X-Forwarded-For": "10.1.2.3"}
    with pytest.raises(ForbiddenError, match=re.escape("203.0.113.7")):
        source.authenticate(request(query={"token": token}, headers=forged, remote="203.0.113.7"))
    policy = AccessPolicy.build(
        tokens=[token], allowed_networks=parse_networks(["203.0.113.0/24"])[0]
    )
    authenticate(policy, headers=forged, query={"token": token}, remote="203.0.113.7")


def test_parse_networks_reports_bad_entries():
    networks, invalid = parse_networks(["10.0.0.0/8", "nonsense", "192.168.1.7", "10.0.0.1/8"])
    assert [str(network) for network in networks] == ["10.0.0.0/8", "192.168.1.7/32", "10.0.0.0/8"]
    assert invalid == (1,)


# -- sign() ------------------------------------------------------------------------------------


def test_sign_with_a_token(make_source, token):
    source = make_source(tokens=[token, OLD_TOKEN])
    signed = source.sign(BODY, content_type="application/x-www-form-urlencoded")
    assert signed.query == {"token": token}
    assert signed.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    source.authenticate(WebhookRequest(body=BODY, headers=signed.headers, query=signed.query))


def test_sign_with_basic_auth(make_source):
    source = make_source(tokens=[], basic_auth=[BASIC])
    signed = source.sign(BODY)
    assert signed.query == {}
    assert signed.headers["Authorization"] == basic(BASIC)["Authorization"]
    source.authenticate(WebhookRequest(body=BODY, headers=signed.headers, query=signed.query))


def test_sign_insecure(make_source):
    signed = make_source(tokens=[], insecure=True).sign(BODY)
    assert signed.query == {}
    assert signed.headers == {"Content-Type": "application/json"}
