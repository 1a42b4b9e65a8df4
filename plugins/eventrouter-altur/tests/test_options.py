"""The ``[sources.NAME]`` table of an ``altur`` source, read through the real config loader."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from eventrouter import AuthenticationError, ConfigError, WebhookRequest
from eventrouter.testing import EMPTY_SECRET, installed_types, parse_config

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def load(table: dict[str, Any], environ: dict[str, str] | None = None):
    document = {"sources": {"altur": {"plugin": "altur", **table}}}
    registry = installed_types()
    return parse_config(document, registry, environ=environ or {})


def problems(table: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(table)
    return caught.value.problems


def test_defaults():
    config = load({"secrets": [SECRET]})
    options = config.sources["altur"].options
    assert options.secrets == [SECRET]
    assert options.secret_encoding == "base64"
    assert options.insecure is False
    assert options.time_zone == "UTC"
    assert options.phone_region is None
    assert config.source_paths["altur"] == "/hooks/altur"


def test_secrets_are_known_to_the_redactor():
    config = load({"secrets": ["${ALTUR_SECRET}"]}, environ={"ALTUR_SECRET": SECRET})
    assert config.sources["altur"].options.secrets == [SECRET]
    assert SECRET in config.secrets


def test_a_secret_is_required():
    assert problems({}) == [
        "sources.altur.secrets: at least one secret is required "
        "(or set insecure = true to accept unsigned requests)"
    ]
    assert problems({"secrets": []})[0].startswith("sources.altur.secrets: at least one")


def test_insecure_needs_no_secret():
    source = load({"insecure": True}).sources["altur"]
    assert source.options.insecure is True
    source.authenticate(WebhookRequest(body=b"{}"))


def test_insecure_never_waives_a_configured_secret():
    source = load({"secrets": [SECRET], "insecure": True}).sources["altur"]
    with pytest.raises(AuthenticationError):
        source.authenticate(WebhookRequest(body=b"{}"))
    with pytest.raises(AuthenticationError):
        source.authenticate(WebhookRequest(body=b"{}", headers={"X-Altur-Signature": "forged"}))
    body = b'{"event_type": "on_call_end", "id": "c1"}'
    source.authenticate(WebhookRequest(body=body, headers=source.sign(body).headers))


def test_insecure_must_be_a_boolean():
    # a string "false" (e.g. from ${ALTUR_INSECURE}) must not switch verification off
    found = problems({"secrets": [SECRET], "insecure": "false"})
    assert len(found) == 1
    assert "insecure: expected bool" in found[0]


def test_secrets_are_a_list_as_in_every_source():
    assert problems({"secrets": SECRET}) == [
        "sources.altur.secrets: expected a list, got str '***'"
    ]


def test_secrets_must_be_strings():
    assert problems({"secrets": [SECRET, 42]}) == [
        "sources.altur.secrets[1]: expected a string, got int"
    ]


def test_base64_secrets_must_decode_and_are_never_quoted():
    bad = "not base64, with-dashes!"
    found = problems({"secrets": [SECRET, bad]})
    assert found == [
        "sources.altur.secrets[1]: is not valid base64 "
        '(set secret_encoding = "utf8" for a plain-text secret)'
    ]
    assert bad not in found[0]


@pytest.mark.parametrize("empty", ["", "  ", "${ALTUR_OLD_SECRET:-}"])
def test_empty_secret_is_refused(empty):
    assert problems({"secrets": [SECRET, empty], "secret_encoding": "utf8"}) == [
        f"sources.altur.secrets[1]: {EMPTY_SECRET}"
    ]
    assert problems({"secrets": [empty]}) == [f"sources.altur.secrets[0]: {EMPTY_SECRET}"]


def test_utf8_secrets_may_be_any_text():
    source = load({"secrets": ["not base64, with-dashes!"], "secret_encoding": "utf8"})
    assert source.sources["altur"].options.secret_encoding == "utf8"


def test_secret_encoding_is_base64_or_utf8():
    assert problems({"secrets": [SECRET], "secret_encoding": "hex"}) == [
        "sources.altur.secret_encoding: expected 'base64' or 'utf8', got 'hex'"
    ]


def test_time_zone_must_exist():
    found = problems({"secrets": [SECRET], "time_zone": "Mars/Olympus"})
    assert found == [
        "sources.altur.time_zone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as 'Asia/Kolkata')"
    ]


def test_time_zone_applies_to_naive_timestamps():
    source = load({"secrets": [SECRET], "time_zone": "America/Mexico_City"}).sources["altur"]
    body = b'{"event_type": "x.y", "occurred_at": "2026-06-08 18:00:00"}'
    event = source.parse(WebhookRequest(body=body))
    assert event.time == datetime(2026, 6, 8, 18, tzinfo=ZoneInfo("America/Mexico_City"))


def test_phone_region_must_exist():
    assert problems({"secrets": [SECRET], "phone_region": "XX"}) == [
        "sources.altur.phone_region: unknown region 'XX' (use an ISO 3166 code such as 'MX')"
    ]


def test_phone_region_is_case_insensitive():
    source = load({"secrets": [SECRET], "phone_region": "mx"}).sources["altur"]
    body = b'{"event_type": "on_call_end", "id": "c1", "campaign_user": {"contact": "5512345678"}}'
    event = source.parse(WebhookRequest(body=body))
    assert event.data.contact is not None
    assert event.data.contact.phone == "+525512345678"


def test_unknown_keys_are_refused():
    found = problems({"secrets": [SECRET], "secret": SECRET})
    assert len(found) == 1
    assert found[0].startswith("sources.altur: unknown key")
    assert SECRET not in found[0]


def test_options_repr_hides_the_secrets():
    options = load({"secrets": [SECRET]}).sources["altur"].options
    assert SECRET not in repr(options)
