"""Helpers shared by the store tests: events to store, and reading back what a store holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from eventrouter.events import Event, EventData, new_event_id
from eventrouter.store import Delivery, DeliveryRecord, Store, StoredEvent

__all__ = ["CLOCK_SLACK", "assert_near", "claim_one", "make_event", "record"]

#: slack for comparing times taken by the test with times taken inside the store
CLOCK_SLACK = timedelta(seconds=2)


def make_event(
    *,
    source: str = "shop",
    type: str = "order.paid",
    key: str | None = None,
    received_at: datetime | None = None,
) -> Event:
    received = received_at or datetime.now(UTC)
    return Event(
        id=new_event_id(),
        source=source,
        type=type,
        time=received - timedelta(seconds=3),
        provider="test",
        provider_type=f"provider.{type}",
        idempotency_key=key or uuid.uuid4().hex,
        received_at=received,
        data=EventData(attributes={"amount": 12, "note": "ünïcode"}),
        raw={"id": key, "nested": {"token": "secret-value"}},
        subject="order-1",
        sensitive=("nested.token",),
    )


def assert_near(
    actual: datetime | None, expected: datetime, slack: timedelta = CLOCK_SLACK
) -> None:
    assert actual is not None
    assert abs(actual - expected) <= slack, (actual, expected)


def record(stored: StoredEvent | None, sink: str) -> DeliveryRecord:
    assert stored is not None
    matches = [r for r in stored.deliveries if r.sink == sink]
    assert len(matches) == 1, stored.deliveries
    return matches[0]


async def claim_one(store: Store, sink: str, *, lease: float = 30.0) -> Delivery:
    claimed = await store.claim(sink, limit=10, lease=lease)
    assert len(claimed) == 1, claimed
    return claimed[0]
