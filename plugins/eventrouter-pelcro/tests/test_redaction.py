"""magic_link_token: kept in ``raw``, listed in ``sensitive``, gone from every redacted copy."""

from __future__ import annotations

import json

import pytest

from eventrouter import REDACTED, Event
from eventrouter_pelcro import parse_webhook

SEED_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."
TOKEN = "mlt_4f1c2b9e8d7a6c5b4a39281706f5e4d3"


def _texts(event: Event) -> list[str]:
    """Every serialised form of ``event`` a sink may see."""
    cloudevent = event.to_cloudevent()
    return [
        event.to_json(),
        json.dumps(cloudevent.get_data(), ensure_ascii=False),
        repr(event),
    ]


def test_seed_token_is_redacted_everywhere(source, signed, fixture_bytes):
    event = source.parse(signed(fixture_bytes("campaign_triggered.json")))
    assert event.sensitive == ("data.magic_link_token",)
    assert SEED_TOKEN in event.to_json()  # kept for the store and include_sensitive sinks

    redacted = event.redacted()
    for text in _texts(redacted):
        assert SEED_TOKEN not in text
    assert redacted.raw["data"]["magic_link_token"] == REDACTED
    # nothing else changed
    original = json.loads(fixture_bytes("campaign_triggered.json"))
    original["data"]["magic_link_token"] = REDACTED
    assert redacted.raw == original
    assert redacted.data == event.data
    assert (redacted.id, redacted.type, redacted.sensitive) == (
        event.id,
        event.type,
        event.sensitive,
    )


def test_token_never_reaches_the_attributes(source, signed, fixture_json):
    payload = fixture_json("campaign_triggered.json")
    payload["data"]["subscription"]["user"]["magic_link_token"] = TOKEN
    payload["data"]["campaign"]["magic_link_token"] = TOKEN
    payload["data"]["subscription"]["plan"]["magicLinkToken"] = TOKEN
    event = source.parse(signed(payload))
    assert TOKEN not in json.dumps(event.data.attributes)
    assert TOKEN not in repr(event.data)


@pytest.mark.parametrize(
    ("place", "path"),
    [
        (("data",), "data.magic_link_token"),
        (("data", "user"), "data.user.magic_link_token"),
        (("data", "subscription"), "data.subscription.magic_link_token"),
        (("data", "subscription", "user"), "data.subscription.user.magic_link_token"),
        (("data", "campaign"), "data.campaign.magic_link_token"),
        ((), "magic_link_token"),
    ],
)
def test_token_is_found_wherever_it_is(fixture_json, place, path):
    payload = fixture_json("campaign_triggered.json")
    del payload["data"]["magic_link_token"]
    node = payload
    for part in place:
        node = node.setdefault(part, {})
    node["magic_link_token"] = TOKEN
    parsed = parse_webhook(json.dumps(payload).encode())
    assert parsed.sensitive == (path,)
    assert TOKEN in json.dumps(parsed.raw)
    event = _event(parsed)
    for text in _texts(event.redacted()):
        assert TOKEN not in text


def test_every_occurrence_is_listed(fixture_json):
    payload = fixture_json("campaign_triggered.json")
    payload["data"]["subscription"]["user"]["magic_link_token"] = TOKEN
    payload["data"]["user"] = {"magic-link-token": TOKEN + "-2"}
    parsed = parse_webhook(json.dumps(payload).encode())
    assert parsed.sensitive == (
        "data.magic_link_token",
        "data.subscription.user.magic_link_token",
        "data.user.magic-link-token",
    )
    text = _event(parsed).redacted().to_json()
    assert SEED_TOKEN not in text
    assert TOKEN not in text


def test_token_in_an_unmodelled_event_is_redacted_too():
    payload = {
        "type": "subscription.created",
        "id": "evt_2",
        "created": 1704067200,
        "data": {"object": "subscription", "id": 1, "user": {"id": 2, "magic_link_token": TOKEN}},
    }
    parsed = parse_webhook(json.dumps(payload).encode())
    assert parsed.sensitive == ("data.user.magic_link_token",)
    assert TOKEN not in json.dumps(parsed.data.attributes)
    assert TOKEN not in _event(parsed).redacted().to_json()


def test_token_out_of_a_paths_reach_is_blanked_at_parse_time():
    # a dotted path cannot point into an array or through a key holding '.', so the core could
    # not redact these later: they are blanked before the event is stored
    payload = {
        "type": "subscription.created",
        "id": "evt_3",
        "created": 1704067200,
        "data": [
            {"object": [{"object": "subscription", "user": {"magic_link_token": TOKEN + "-a"}}]},
            {"k.v": {"magic_link_token": TOKEN + "-b"}, "magic_link_token": None},
        ],
        "meta": {"a.b": {"magic_link_token": TOKEN + "-c"}, "magic_link_token": TOKEN + "-d"},
    }
    parsed = parse_webhook(json.dumps(payload).encode())
    assert parsed.sensitive == ("meta.magic_link_token",)
    assert parsed.raw["data"][0]["object"][0]["user"]["magic_link_token"] == REDACTED
    assert parsed.raw["data"][1]["k.v"]["magic_link_token"] == REDACTED
    assert parsed.raw["data"][1]["magic_link_token"] is None
    assert parsed.raw["meta"]["a.b"]["magic_link_token"] == REDACTED
    assert parsed.raw["meta"]["magic_link_token"] == TOKEN + "-d"  # reachable: kept, listed
    assert (
        payload["data"][0]["object"][0]["user"]["magic_link_token"] == TOKEN + "-a"
    )  # input untouched
    text = _event(parsed).redacted().to_json()
    assert TOKEN not in text


def test_payload_without_a_token_lists_nothing(fixture_bytes):
    parsed = parse_webhook(fixture_bytes("campaign_run_completed.json"))
    assert parsed.sensitive == ()


def _event(parsed) -> Event:
    from eventrouter_pelcro import PelcroOptions, PelcroSource

    return PelcroSource("p", PelcroOptions(secrets=["x"])).make_event(
        type=parsed.type,
        provider_type=parsed.provider_type,
        idempotency_key=parsed.idempotency_key,
        time=parsed.time,
        subject=parsed.subject,
        data=parsed.data,
        raw=parsed.raw,
        sensitive=parsed.sensitive,
    )
