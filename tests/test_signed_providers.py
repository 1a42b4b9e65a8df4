"""The ``signed`` source's presets against each provider's own SDK or published test vector.

The SDKs (stripe, slack_sdk, twilio; test-only dependencies) sign as the providers do, so these
tests do not trust eventrouter's reading of the providers' documentation: a request an SDK signs
is accepted, and one with its body, timestamp, secret or URL changed, or its timestamp outside
the tolerance, is refused with a 401.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from eventrouter.config import parse_config
from eventrouter.plugins import Registry, create_plugin_manager

STRIPE_SECRET = "whsec_stripe_test_0123456789abcdef"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
TWILIO_URL = "https://hooks.example.com/hooks/twilio"
GITHUB_SECRET = "It's a Secret to Everybody"
SHOPIFY_SECRET = "secret"


@pytest.fixture
def make_config_source():
    """``make_config_source(preset, secrets, **options)``: a ``signed`` source, built and
    checked as ``eventrouter check`` would."""
    registry = Registry.collect(create_plugin_manager(load_entrypoints=False))

    def build(preset: str, secrets: list[str], **options: Any) -> Any:
        table = {"plugin": "signed", "preset": preset, "secrets": secrets, **options}
        config = parse_config({"sources": {preset: table}}, registry, base_dir=".", environ={})
        return config.sources[preset]

    return build


def config(name: str, preset: str, secrets: list[str], **options: Any) -> dict[str, Any]:
    return {
        "sources": {name: {"plugin": "signed", "preset": preset, "secrets": secrets, **options}},
        "sinks": {"recorder": {"plugin": "recording"}},
        "routes": [{"sinks": ["recorder"]}],
    }


async def post(router: Any, source: str, body: bytes, headers: dict[str, str], **kw: Any):
    return await router.post(
        source,
        body,
        signed=False,
        headers=headers,
        content_type=headers.get("Content-Type", "application/json"),
        **kw,
    )


def assert_refused(status: int, answer: Any, *secret_texts: str) -> None:
    assert status == 401, answer
    assert answer["error"] == "unauthorized"
    for text in secret_texts:
        assert text not in json.dumps(answer)


# -- Stripe ----------------------------------------------------------------------------------

STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "type": "checkout.session.completed",
    "created": 1686089970,
    "data": {
        "object": {
            "id": "cs_test_a1",
            "object": "checkout.session",
            "customer": "cus_9s6XKzkNRiz8i3",
            "customer_details": {"email": "jenny@example.com"},
            "customer_email": "jenny.rosen@example.com",
        }
    },
}


@pytest.fixture
async def stripe_router(make_router):
    return await make_router(config("stripe", "stripe", [STRIPE_SECRET]))


def stripe_header(body: bytes, *, secret: str = STRIPE_SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=at if at is not None else int(time.time())
    )


async def test_stripe_signed_by_the_sdk_is_accepted_and_mapped(stripe_router, recorded):
    body = json.dumps(STRIPE_EVENT).encode()
    status, answer = await post(
        stripe_router, "stripe", body, {"Stripe-Signature": stripe_header(body)}
    )
    assert (status, answer["status"]) == (200, "accepted"), answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert event.type == "stripe.checkout.session.completed"
    assert event.provider == "stripe"
    assert event.idempotency_key == "evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert event.subject == "cs_test_a1"
    assert event.time.timestamp() == 1686089970
    assert event.data.contact.email == "jenny.rosen@example.com"
    assert event.data.contact.external_id == "cus_9s6XKzkNRiz8i3"


async def test_stripe_accepts_any_of_several_signatures(stripe_router):
    """Stripe sends one v1 signature per active secret while a secret is being rolled."""
    body = json.dumps(STRIPE_EVENT).encode()
    now = int(time.time())
    other = stripe_header(body, secret="whsec_the_other_one", at=now).split(",")[1]
    mine = stripe_header(body, at=now).split(",")[1]
    v0 = "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    for header in (f"t={now},{other},{mine},{v0}", f"t={now},{mine},{other}"):
        status, answer = await post(stripe_router, "stripe", body, {"Stripe-Signature": header})
        assert status == 200, answer
    status, answer = await post(
        stripe_router, "stripe", body, {"Stripe-Signature": f"t={now},{other},{v0}"}
    )
    assert_refused(status, answer)


@pytest.mark.parametrize("change", ["body", "timestamp", "secret", "too_old", "too_new"])
async def test_stripe_refuses_what_was_not_signed(stripe_router, change):
    body = json.dumps(STRIPE_EVENT).encode()
    now = int(time.time())
    header = stripe_header(body, at=now)
    if change == "body":
        body = body.replace(b"jenny.rosen", b"jenny.rosan")
    elif change == "timestamp":
        header = header.replace(f"t={now}", f"t={now - 1}")
    elif change == "secret":
        header = stripe_header(body, secret="whsec_someone_elses", at=now)
    elif change == "too_old":
        header = stripe_header(body, at=now - 301 - 5)
    elif change == "too_new":
        header = stripe_header(body, at=now + 301 + 5)
    status, answer = await post(stripe_router, "stripe", body, {"Stripe-Signature": header})
    expected = stripe.WebhookSignature._compute_signature(f"{now}.{body.decode()}", STRIPE_SECRET)
    assert_refused(status, answer, STRIPE_SECRET, expected)
    if change.startswith("too"):
        assert "300s from now" in answer["message"]


def test_stripe_sdk_accepts_what_eventrouter_signs(make_config_source):
    source = make_config_source("stripe", [STRIPE_SECRET])
    body = json.dumps(STRIPE_EVENT).encode()
    signed = source.sign(body)
    assert stripe.WebhookSignature.verify_header(
        body, signed.headers["Stripe-Signature"], STRIPE_SECRET, tolerance=300
    )


# -- Slack ----------------------------------------------------------------------------------

SLACK_EVENT = {
    "token": "z26uFbvR1xHJEdHE1OQiO6t8",
    "team_id": "T061EG9RZ",
    "api_app_id": "A0FFV41KK",
    "event": {
        "type": "app_mention",
        "user": "U061F7AUR",
        "text": "<@U0LAN0Z89> hi",
        "channel": "C0LAN2Q65",
        "event_ts": "1515449522.000016",
    },
    "type": "event_callback",
    "event_id": "Ev0LAN670R",
    "event_time": 1515449522,
}


@pytest.fixture
async def slack_router(make_router):
    return await make_router(config("slack", "slack", [SLACK_SECRET]))


def slack_headers(
    body: bytes, *, secret: str = SLACK_SECRET, at: int | None = None
) -> dict[str, str]:
    timestamp = str(at if at is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


async def test_slack_signed_by_the_sdk_is_accepted_and_mapped(slack_router, recorded):
    body = json.dumps(SLACK_EVENT).encode()
    status, answer = await post(slack_router, "slack", body, slack_headers(body))
    assert (status, answer["status"]) == (200, "accepted"), answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.provider_type) == ("slack.app_mention", "app_mention")
    assert event.idempotency_key == "Ev0LAN670R"
    assert event.subject == "C0LAN2Q65"


async def test_slack_slash_command_form(slack_router, recorded):
    body = urlencode(
        {
            "command": "/weather",
            "text": "94070",
            "trigger_id": "13345224609.7",
            "channel_id": "C2147483705",
        }
    ).encode()
    headers = {**slack_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    status, answer = await post(slack_router, "slack", body, headers)
    assert status == 200, answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.idempotency_key) == ("slack./weather", "13345224609.7")


@pytest.mark.parametrize("change", ["body", "timestamp", "secret", "too_old", "too_new"])
async def test_slack_refuses_what_was_not_signed(slack_router, change):
    body = json.dumps(SLACK_EVENT).encode()
    now = int(time.time())
    headers = slack_headers(body, at=now)
    expected = headers["X-Slack-Signature"]
    if change == "body":
        body = body.replace(b"hi", b"ho")
    elif change == "timestamp":
        headers["X-Slack-Request-Timestamp"] = str(now + 1)
    elif change == "secret":
        headers = slack_headers(body, secret="another-signing-secret", at=now)
    elif change == "too_old":
        headers = slack_headers(body, at=now - 306)
    elif change == "too_new":
        headers = slack_headers(body, at=now + 306)
    status, answer = await post(slack_router, "slack", body, headers)
    assert_refused(status, answer, SLACK_SECRET, expected[3:])


def test_slack_sdk_accepts_what_eventrouter_signs(make_config_source):
    source = make_config_source("slack", [SLACK_SECRET])
    body = json.dumps(SLACK_EVENT).encode()
    headers = source.sign(body).headers
    assert SignatureVerifier(SLACK_SECRET).is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


# -- Twilio ---------------------------------------------------------------------------------

TWILIO_CALL = {
    "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "ApiVersion": "2010-04-01",
    "CallSid": "CA1234567890ABCDE",
    "CallStatus": "no-answer",
    "Direction": "outbound-api",
    "From": "+14158675310",
    "To": "(415) 555-0100",
    "CallDuration": "0",
    "Timestamp": "Tue, 10 Aug 2010 03:45:01 +0000",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def twilio_router(make_router):
    return await make_router(
        config("twilio", "twilio", [TWILIO_TOKEN], url=TWILIO_URL, phone_region="US")
    )


def twilio_signature(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


async def test_twilio_signed_by_the_sdk_is_accepted_and_mapped(twilio_router, recorded):
    body = urlencode(TWILIO_CALL).encode()
    headers = {**FORM, "X-Twilio-Signature": twilio_signature(TWILIO_URL, TWILIO_CALL)}
    status, answer = await post(twilio_router, "twilio", body, headers)
    assert (status, answer["status"]) == (200, "accepted"), answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.provider_type) == ("call.ended", "call.no-answer")
    assert event.data.contact.phone == "+14155550100"
    call = event.data.call
    assert (call.id, call.status.value, call.provider_status) == (
        "CA1234567890ABCDE",
        "no_answer",
        "no-answer",
    )
    assert (call.direction.value, call.from_number, call.to_number) == (
        "outbound",
        "+14158675310",
        "+14155550100",
    )
    assert call.duration_seconds == 0


async def test_twilio_query_string_is_part_of_the_url(twilio_router):
    body = urlencode(TWILIO_CALL).encode()
    signature = twilio_signature(f"{TWILIO_URL}?campaign=spring", TWILIO_CALL)
    headers = {**FORM, "X-Twilio-Signature": signature}
    status, answer = await post(
        twilio_router, "twilio", body, headers, query={"campaign": "spring"}
    )
    assert status == 200, answer
    status, answer = await post(
        twilio_router, "twilio", body, headers, query={"campaign": "autumn"}
    )
    assert_refused(status, answer, TWILIO_TOKEN)


@pytest.mark.parametrize("change", ["body", "url", "secret", "added_parameter"])
async def test_twilio_refuses_what_was_not_signed(twilio_router, change):
    params = dict(TWILIO_CALL)
    signature = twilio_signature(TWILIO_URL, params)
    if change == "body":
        params["CallStatus"] = "completed"
    elif change == "url":
        signature = twilio_signature("https://hooks.example.com/hooks/other", params)
    elif change == "secret":
        signature = twilio_signature(TWILIO_URL, params, token="another-auth-token-0000")
    elif change == "added_parameter":
        params["Extra"] = "1"
    body = urlencode(params).encode()
    status, answer = await post(
        twilio_router, "twilio", body, {**FORM, "X-Twilio-Signature": signature}
    )
    assert_refused(status, answer, TWILIO_TOKEN, signature)


def test_twilio_sdk_accepts_what_eventrouter_signs(make_config_source):
    source = make_config_source("twilio", [TWILIO_TOKEN], url=TWILIO_URL)
    body = urlencode(TWILIO_CALL).encode()
    headers = source.sign(body, content_type=FORM["Content-Type"]).headers
    assert RequestValidator(TWILIO_TOKEN).validate(
        TWILIO_URL, TWILIO_CALL, headers["X-Twilio-Signature"]
    )


# -- GitHub: the test vector GitHub's documentation publishes ----------------------------------

GITHUB_VECTOR = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_published_test_vector(make_config_source):
    """docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
    payload "Hello, World!"."""
    source = make_config_source("github", [GITHUB_SECRET])
    signed = source.sign(b"Hello, World!")
    assert signed.headers["X-Hub-Signature-256"] == GITHUB_VECTOR


@pytest.fixture
async def github_router(make_router):
    return await make_router(config("github", "github", [GITHUB_SECRET]))


GITHUB_HEADERS = {
    "X-GitHub-Event": "push",
    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
}


async def test_github_vector_is_accepted_and_mapped(github_router, recorded):
    body = b'{"ref": "refs/heads/main", "repository": {"full_name": "octo/hello"}}'
    # the vector's signature does not sign this body: the vector's own body is not JSON, so it
    # is accepted (401 would mean the signature was refused) and then refused as a payload (400)
    status, answer = await post(
        github_router,
        "github",
        b"Hello, World!",
        {**GITHUB_HEADERS, "X-Hub-Signature-256": GITHUB_VECTOR},
    )
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    status, answer = await post(
        github_router, "github", body, {**GITHUB_HEADERS, "X-Hub-Signature-256": GITHUB_VECTOR}
    )
    assert_refused(status, answer, GITHUB_SECRET)
    signed = github_router.config.sources["github"].sign(body)
    status, answer = await post(github_router, "github", body, {**signed.headers, **GITHUB_HEADERS})
    assert status == 200, answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.idempotency_key, event.subject) == (
        "github.push",
        GITHUB_HEADERS["X-GitHub-Delivery"],
        "octo/hello",
    )


@pytest.mark.parametrize("change", ["body", "secret", "prefix"])
async def test_github_refuses_what_was_not_signed(github_router, change, make_config_source):
    body = b"Hello, World!"
    signature = GITHUB_VECTOR
    if change == "body":
        body = b"Hello, World?"
    elif change == "secret":
        signature = (
            make_config_source("github", ["It's a Secret to Nobody"])
            .sign(body)
            .headers["X-Hub-Signature-256"]
        )
    elif change == "prefix":
        signature = signature.replace("sha256=", "sha1=")
    status, answer = await post(
        github_router, "github", body, {**GITHUB_HEADERS, "X-Hub-Signature-256": signature}
    )
    assert_refused(status, answer, GITHUB_SECRET)


# -- Shopify: the vectors in Shopify's shopify_app gem's webhook verification test ------------

SHOPIFY_VECTORS = {
    "secret": "yCGX/RrK4fcuNtr3ztk5tQGsOBjcAzHpGLdMUrbV8yI=",
    "old_secret": "XqRcjrSv57VACn6apEO9znyu/wkN1VC7QxdSPwK3Hzs=",
}
SHOPIFY_BODY = b"foo=anything"  # the gem's test posts params {foo: 'anything'} form-encoded


def test_shopify_published_test_vectors(make_config_source):
    for secret, vector in SHOPIFY_VECTORS.items():
        source = make_config_source("shopify", [secret])
        assert source.sign(SHOPIFY_BODY).headers["X-Shopify-Hmac-Sha256"] == vector


@pytest.fixture
async def shopify_router(make_router):
    # the gem's two secrets: the current one and the one being rotated out
    return await make_router(config("shopify", "shopify", ["secret", "old_secret"]))


SHOPIFY_HEADERS = {
    **FORM,
    "X-Shopify-Topic": "orders/create",
    "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
    "X-Shopify-Triggered-At": "2023-03-29T18:00:27.877041743Z",
}


@pytest.mark.parametrize("secret", sorted(SHOPIFY_VECTORS))
async def test_shopify_vectors_are_accepted_with_either_secret(shopify_router, recorded, secret):
    headers = {**SHOPIFY_HEADERS, "X-Shopify-Hmac-Sha256": SHOPIFY_VECTORS[secret]}
    status, answer = await post(shopify_router, "shopify", SHOPIFY_BODY, headers)
    assert (status, answer["status"]) == (200, "accepted"), answer
    (event,) = await recorded.wait_for("recorder", 1)
    assert (event.type, event.idempotency_key) == (
        "shopify.orders/create",
        SHOPIFY_HEADERS["X-Shopify-Event-Id"],
    )
    assert event.time.year == 2023
    assert event.raw == {"foo": "anything"}


async def test_shopify_maps_an_order(shopify_router, recorded):
    order = {
        "id": 820982911946154508,
        "email": "jon@example.com",
        "customer": {
            "id": 115310627314723954,
            "first_name": "John",
            "last_name": "Smith",
            "phone": "+16135551212",
        },
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    }
    body = json.dumps(order).encode()
    signed = shopify_router.config.sources["shopify"].sign(body)
    status, answer = await post(
        shopify_router,
        "shopify",
        body,
        {**SHOPIFY_HEADERS, "Content-Type": "application/json", **signed.headers},
    )
    assert status == 200, answer
    (event,) = await recorded.wait_for("recorder", 1)
    contact = event.data.contact
    assert (contact.email, contact.phone, contact.name, contact.external_id) == (
        "jon@example.com",
        "+16135551212",
        "John Smith",
        "115310627314723954",
    )


@pytest.mark.parametrize("change", ["body", "secret", "hex_instead_of_base64"])
async def test_shopify_refuses_what_was_not_signed(shopify_router, change):
    body, signature = SHOPIFY_BODY, SHOPIFY_VECTORS["secret"]
    if change == "body":
        body = b"foo=anythinG"
    elif change == "secret":
        signature = "0" + signature[1:]
    elif change == "hex_instead_of_base64":
        import base64

        signature = base64.b64decode(signature).hex()
    status, answer = await post(
        shopify_router, "shopify", body, {**SHOPIFY_HEADERS, "X-Shopify-Hmac-Sha256": signature}
    )
    assert_refused(status, answer, "old_secret")
