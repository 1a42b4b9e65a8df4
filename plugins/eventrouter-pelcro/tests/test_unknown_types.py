"""Event types the plugin does not model: accepted as ``pelcro.<type>``, never dropped or refused."""

from __future__ import annotations

import json

import pytest

from eventrouter import Contact
from eventrouter_pelcro import parse_webhook


def _parse(event_type, data=..., **extra):
    payload = {"type": event_type, "id": "evt_generic_1", "created": 1704067200, **extra}
    if data is not ...:
        payload["data"] = data
    return parse_webhook(json.dumps(payload).encode())


@pytest.mark.parametrize(
    "event_type",
    [
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "subscription.renewed",
        "subscription.expired",
        "invoice.payment_failed",
        "customer.created",
        "campaign.created",  # a campaign type, but not one of the two modelled
        "Campaign.Triggered",  # types are matched exactly
    ],
)
def test_unknown_type_becomes_a_generic_event(event_type):
    parsed = _parse(event_type, {"object": "thing", "id": 1})
    assert parsed.type == f"pelcro.{event_type}"
    assert parsed.provider_type == event_type
    assert parsed.idempotency_key == "evt_generic_1"
    assert parsed.data.campaign is None
    assert parsed.data.attributes == {"object": "thing", "id": 1}
    assert parsed.subject == "thing/1"


@pytest.mark.parametrize("data", [..., None, "text", 42, True, [], {}, [[[]]], [None, 1, "x"]])
def test_any_data_is_accepted(data):
    parsed = _parse("subscription.updated", data)
    assert parsed.type == "pelcro.subscription.updated"
    assert parsed.data.contact is None
    assert parsed.data.attributes == {}
    assert parsed.subject is None


def test_customer_object_is_the_contact():
    parsed = _parse(
        "customer.updated",
        {
            "object": "customer",
            "id": 40864,
            "email": "ana@example.com",
            "name": "Ana Lima",
            "phone_number": "011 2345 6789",
            "address": {"country": "br"},
        },
    )
    assert parsed.data.contact == Contact(
        phone="+551123456789", email="ana@example.com", name="Ana Lima", external_id="40864"
    )
    assert parsed.subject == "customer/40864"


def test_user_inside_the_subscription_is_the_contact():
    parsed = _parse(
        "subscription.renewed",
        {
            "subscription": {
                "id": 1,
                "user": {
                    "id": 5,
                    "first_name": "Mia",
                    "last_name": "Ng",
                    "email": "mia@example.com",
                },
            }
        },
    )
    assert parsed.data.contact == Contact(email="mia@example.com", name="Mia Ng", external_id="5")


def test_user_in_an_array_payload_is_found():
    parsed = _parse(
        "subscription.expired",
        [{"object": [{"object": "subscription", "id": 9, "user": {"id": 3, "email": "a@b.co"}}]}],
    )
    assert parsed.data.contact == Contact(email="a@b.co", external_id="3")
    assert parsed.subject == "subscription/9"
    assert parsed.data.attributes == {"object": "subscription", "id": 9}


def test_customer_id_alone_gives_an_external_id():
    parsed = _parse("invoice.created", {"object": "invoice", "id": "in_1", "customer_id": 77})
    assert parsed.data.contact == Contact(external_id="77")


def test_odd_values_in_a_generic_event_are_ignored_not_refused():
    parsed = _parse(
        "subscription.updated",
        {"object": ["x"], "id": {"n": 1}, "user": {"id": True, "email": ["x"], "first_name": 3}},
    )
    assert parsed.data.contact == Contact(name="3")
    assert parsed.subject is None
    assert parsed.data.attributes == {}
