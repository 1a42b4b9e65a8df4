"""Every Pelcro payload of the seed page and of docs/provider-reference.md, normalised field by field."""

from __future__ import annotations

from datetime import UTC, datetime

from eventrouter import Campaign, CampaignStatus, Contact, Event, EventType

SEED_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."


def _parse(source, signed, fixture_bytes, name: str) -> Event:
    request = signed(fixture_bytes(name))
    source.authenticate(request)
    return source.parse(request)


def _common(event: Event, *, type: str, provider_type: str, key: str, created: int) -> None:
    assert event.type == type
    assert event.provider == "pelcro"
    assert event.provider_type == provider_type
    assert event.idempotency_key == key
    assert event.time == datetime.fromtimestamp(created, UTC)
    assert event.source == "pelcro-in"
    assert event.id.startswith("evt_")
    assert event.id != key  # the router's own id, not Pelcro's
    assert event.specversion == "1.0"
    assert event.received_at.tzinfo is not None
    assert event.data.call is None
    # stored events read back equal
    assert Event.from_json(event.to_json()) == event


def test_campaign_triggered_seed(source, signed, fixture_bytes, fixture_json):
    event = _parse(source, signed, fixture_bytes, "campaign_triggered.json")
    _common(
        event,
        type=EventType.CAMPAIGN_TRIGGERED,
        provider_type="campaign.triggered",
        key="evt_a1b2C3d4E5f6g7H8i9J0k1L2",
        created=1704067200,
    )
    assert event.type == "campaign.triggered"
    assert event.time == datetime(2024, 1, 1, tzinfo=UTC)
    assert event.subject == "subscription/55555"
    assert event.raw == fixture_json("campaign_triggered.json")
    assert event.raw["data"]["magic_link_token"] == SEED_TOKEN  # kept in the stored payload
    assert event.sensitive == ("data.magic_link_token",)

    # the seed page obfuscates the address (Cloudflare): not an address, so no contact email
    # (a CRM would refuse it); the payload keeps it as sent
    assert event.data.contact == Contact(
        phone=None, email=None, name="John Doe", external_id="67890"
    )
    assert event.data.campaign == Campaign(
        id="123",
        name="January Renewal Campaign",
        status=CampaignStatus.UNKNOWN,
        provider_status=None,
        previous_status=None,
        run_id=None,
        cycle=None,
        next_cycle_at=None,
        report_url=None,
        stats={},
    )

    attributes = event.data.attributes
    assert set(attributes) == {"campaign", "subscription", "address", "user"}
    assert attributes["campaign"] == {
        "key": "JAN-2024-RENEW",
        "description": "Renewal reminders for January expirations",
        "site": {"id": 1, "name": "Main Site"},
        "plan": {
            "id": 456,
            "nickname": "Premium Annual",
            "name_internal": "premium_annual",
            "amount": 9999,
        },
        "product": {
            "id": 789,
            "name": "Premium Membership",
            "name_internal": "premium_membership",
        },
        "coupon": {"id": 101, "name": "Loyalty Discount", "code": "LOYAL20", "percent_off": 20},
    }
    assert attributes["subscription"] == {
        "id": 55555,
        "expire_date": "2024-01-31T23:59:59.000000Z",
        "days_to_expire": 15.5,
        "recommended_plan_id": 457,
        "plan": {
            "id": 456,
            "nickname": "Premium Annual",
            "name_internal": "premium_annual",
            "interval": "year",
            "interval_count": 1,
            "currency": "usd",
            "amount": 9999,
        },
        "product": {
            "id": 789,
            "name": "Premium Membership",
            "name_internal": "premium_membership",
        },
    }
    assert attributes["address"] == {
        "line1": "123 Main Street",
        "line2": "Suite 100",
        "city": "New York",
        "state": "NY",
        "country": "US",
        "postal_code": "10001",
    }
    assert attributes["user"] == {
        "id": 67890,
        "title": "Marketing Manager",
        "company": "Acme Inc",
        "first_name": "John",
        "last_name": "Doe",
        "email": "[email\xa0protected]",
    }
    assert SEED_TOKEN not in str(attributes)


def test_campaign_triggered_with_status_coupon_and_phone(source, signed, fixture_json):
    payload = fixture_json("campaign_triggered.json")
    subscription = payload["data"]["subscription"]
    subscription["status"] = "active"
    subscription["coupon"] = {"id": 7, "code": "WELCOME10", "percent_off": 10}
    subscription["user"].update(email="john.doe@example.com", phone="(212) 555-0123")
    event = source.parse(signed(payload))
    assert event.data.contact == Contact(
        phone="+12125550123",  # read in the address's country, US
        email="john.doe@example.com",
        name="John Doe",
        external_id="67890",
    )
    assert event.data.attributes["subscription"]["status"] == "active"
    assert event.data.attributes["subscription"]["coupon"] == {
        "id": 7,
        "code": "WELCOME10",
        "percent_off": 10,
    }


def test_campaign_triggered_with_type_and_action(source, signed, fixture_json):
    payload = fixture_json("campaign_triggered.json")
    payload["data"]["campaign"].update(type="Renewal", action="Notification")
    event = source.parse(signed(payload))
    assert event.data.attributes["campaign"]["type"] == "Renewal"
    assert event.data.attributes["campaign"]["action"] == "Notification"


def test_campaign_triggered_with_user_beside_the_subscription(source, signed, fixture_json):
    payload = fixture_json("campaign_triggered.json")
    user = payload["data"]["subscription"].pop("user")
    del payload["data"]["subscription"]["address"]
    payload["data"]["user"] = {
        **user,
        "last_name": None,
        "phone": "+44 20 7946 0958",
        "email": " john@example.com ",
    }
    event = source.parse(signed(payload))
    assert event.data.contact == Contact(
        phone="+442079460958", email="john@example.com", name="John", external_id="67890"
    )
    assert "address" not in event.data.attributes


def test_campaign_triggered_without_subscription(source, signed):
    payload = {
        "type": "campaign.triggered",
        "id": "evt_1",
        "created": 1704067200,
        "data": {"campaign": {"id": 9, "name": "Solo"}},
    }
    event = source.parse(signed(payload))
    assert event.data.contact is None
    assert event.data.campaign == Campaign(id="9", name="Solo")
    assert event.data.attributes == {}
    assert event.subject == "campaign/9"
    assert event.sensitive == ()


def test_run_completed_seed_shape(source, signed, fixture_bytes, fixture_json):
    event = _parse(source, signed, fixture_bytes, "campaign_run_completed.json")
    _common(
        event,
        type=EventType.CAMPAIGN_COMPLETED,
        provider_type="campaign.run_completed",
        key="evt_b2C3d4E5f6g7H8i9J0k1L2m3",
        created=1704153600,
    )
    assert event.type == "campaign.completed"
    assert event.subject == "campaign/123"
    assert event.raw == fixture_json("campaign_run_completed.json")
    assert event.sensitive == ()
    assert event.data.contact is None
    assert event.data.campaign == Campaign(
        id="123",
        name="January Renewal Campaign",
        status=CampaignStatus.COMPLETED,
        provider_status=None,
        previous_status=None,
        run_id="999",
        cycle=None,
        next_cycle_at=None,
        report_url="https://api.pelcro.com/core/campaigns/123/runs/999/report/download",
        stats={},  # the documented run carries no counts
    )
    assert event.data.attributes == {
        "campaign": {
            "type": "Renewal",
            "description": "Renewal reminders for January expirations",
            "action": "Both",
        },
        "run": {
            "id": 999,
            "key": "JAN-2024-RENEW-010124",
            "date": 1704153600,
            "download_link": "https://api.pelcro.com/core/campaigns/123/runs/999/report/download",
        },
    }


def test_run_completed_flat_shape(source, signed, fixture_bytes, fixture_json):
    event = _parse(source, signed, fixture_bytes, "campaign_run_completed_flat.json")
    _common(
        event,
        type=EventType.CAMPAIGN_COMPLETED,
        provider_type="campaign.run_completed",
        key="evt_c3D4e5F6g7H8i9J0k1L2m3N4",
        created=1709251260,
    )
    assert event.subject == "campaign/542"
    assert event.raw == fixture_json("campaign_run_completed_flat.json")
    assert event.data.campaign == Campaign(
        id="542",
        name="Spring Promotion",
        status=CampaignStatus.COMPLETED,
        run_id="1204",
        report_url="https://api.pelcro.com/core/campaigns/542/runs/1204/report/download",
        stats={},
    )
    assert event.data.attributes == {
        "campaign": {
            "type": "Promotional",
            "description": "Spring discount for lapsed subscribers",
            "action": "Both",
        },
        "run": {
            "id": 1204,
            "key": "SPRING-2024-PROMO-030124",
            "date": 1709251200,
            "download_link": "https://api.pelcro.com/core/campaigns/542/runs/1204/report/download",
        },
    }


def test_both_run_completed_shapes_normalise_alike(source, signed, fixture_json):
    nested = fixture_json("campaign_run_completed.json")
    flat = {**nested, "data": nested["data"]["campaign"]}
    a, b = source.parse(signed(nested)), source.parse(signed(flat))
    assert a.data == b.data
    assert (a.type, a.subject, a.idempotency_key, a.time) == (
        b.type,
        b.subject,
        b.idempotency_key,
        b.time,
    )


def test_run_stats_are_the_runs_counts(source, signed, fixture_json):
    payload = fixture_json("campaign_run_completed.json")
    payload["data"]["campaign"]["run"].update(
        subscriptions=120,
        notified=118,
        success_rate=0.98,
        exported=True,  # a flag, not a count
        site_id=1,  # an id, not a count
        created_at=1704153000,  # a time, not a count
        download_link=None,  # no export
        stats={"failed": 2, "note": "two bounced"},
    )
    event = source.parse(signed(payload))
    assert event.data.campaign.stats == {
        "subscriptions": 120,
        "notified": 118,
        "success_rate": 0.98,
        "failed": 2,
    }
    assert event.data.campaign.report_url is None
    assert event.data.campaign.status is CampaignStatus.COMPLETED


def test_subscription_created_docs_sample(source, signed, fixture_bytes, fixture_json):
    event = _parse(source, signed, fixture_bytes, "subscription_created.json")
    _common(
        event,
        type="pelcro.subscription.created",
        provider_type="subscription.created",
        key="evt_ybR5i5QwSVvoWy28ndD4q6hA",
        created=1542034347,
    )
    assert event.time == datetime(2018, 11, 12, 14, 52, 27, tzinfo=UTC)
    assert event.subject == "subscription/6807"
    assert event.raw == fixture_json("subscription_created.json")
    assert event.sensitive == ()
    assert event.data.contact == Contact(external_id="40864")
    assert event.data.campaign is None
    assert event.data.attributes == {
        "object": "subscription",
        "id": 6807,
        "user_id": 40864,
        "plan_id": 386,
    }


def test_subscription_canceled_with_customer(source, signed, fixture_bytes, fixture_json):
    event = _parse(source, signed, fixture_bytes, "subscription_canceled.json")
    _common(
        event,
        type="pelcro.subscription.canceled",
        provider_type="subscription.canceled",
        key="evt_d4E5f6G7h8I9j0K1l2M3n4O5",
        created=1706745600,
    )
    assert event.subject == "subscription/55555"
    assert event.raw == fixture_json("subscription_canceled.json")
    assert event.data.contact == Contact(
        phone="+12125550123",
        email="john.doe@example.com",
        name="John Doe",
        external_id="67890",
    )
    assert event.data.campaign is None
    assert event.data.attributes == {
        "object": "subscription",
        "id": 55555,
        "status": "canceled",
        "cancel_at_period_end": False,
        "canceled_at": "2024-02-01T00:00:00.000000Z",
    }
