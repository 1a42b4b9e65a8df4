from pathlib import Path

import pytest

from eventrouter import ConfigError
from eventrouter.testing import installed_types, parse_config
from eventrouter_crm import CRMSink

TOKEN = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "crm" in registry.sinks
    assert registry.sinks["crm"].cls is CRMSink


def _config(**sink):
    return {
        "sources": {
            "hooks": {
                "plugin": "standard-webhooks",
                "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            }
        },
        "sinks": {"hubspot": {"plugin": "crm", **sink}},
        "routes": [{"sinks": ["hubspot"]}],
    }


def _parse(document, environ=None):
    return parse_config(
        document,
        installed_types(),
        base_dir=Path.cwd(),
        environ=environ or {},
    )


def test_config_with_defaults():
    config = _parse(_config(token="${HUBSPOT_TOKEN}"), environ={"HUBSPOT_TOKEN": TOKEN})
    sink = config.sinks["hubspot"].sink
    options = sink.options
    assert isinstance(sink, CRMSink)
    assert options.token == TOKEN
    assert options.backend == "hubspot"
    assert options.api_base == "https://api.hubapi.com"
    assert options.batch_window == 0.2
    assert options.batch_size == 100
    assert options.property_mapping == {}
    assert options.phone_id_property == "eventrouter_phone"
    assert options.event_id_property == "eventrouter_event_id"
    assert options.create_properties is False
    assert options.dispositions == {}
    assert options.note_types == ["campaign.*", "call.attempts_exhausted"]
    assert options.requests_per_10s == 100
    assert options.search_requests_per_second == 4
    assert options.request_timeout == 20
    assert TOKEN in config.secrets
    assert TOKEN not in repr(options)


def test_config_reads_durations_and_mapping():
    config = _parse(
        _config(
            token=TOKEN,
            batch_window="50ms",
            property_mapping={"Payment Amount": "payment_amount"},
            dispositions={"machine": "b2cf5968-551e-4856-9783-52b3da59a7d0", "busy": ""},
        )
    )
    options = config.sinks["hubspot"].sink.options
    assert options.batch_window == pytest.approx(0.05)
    assert options.property_mapping == {"Payment Amount": "payment_amount"}
    assert options.dispositions == {"machine": "b2cf5968-551e-4856-9783-52b3da59a7d0", "busy": ""}


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"token": ""}, "sinks.hubspot.token: required (a HubSpot private app access token)"),
        (
            {"token": TOKEN, "backend": "salesforce"},
            "sinks.hubspot.backend: unknown CRM 'salesforce' (expected one of hubspot)",
        ),
        (
            {"token": TOKEN, "api_base": "api.hubapi.com"},
            "sinks.hubspot.api_base: expected an http:// or https:// URL, got 'api.hubapi.com'",
        ),
        (
            {"token": TOKEN, "batch_size": 500},
            "sinks.hubspot.batch_size: HubSpot takes 1 to 100 records per batch",
        ),
        (
            {"token": TOKEN, "batch_window": "10s"},
            "sinks.hubspot.batch_window: expected 0 to 5 seconds, e.g. '200ms'",
        ),
        (
            {"token": TOKEN, "phone_id_property": "phone"},
            "sinks.hubspot.phone_id_property: must be a unique custom property (e.g. eventrouter_phone); HubSpot's phone is not unique and email is matched already",
        ),
        (
            {"token": TOKEN, "event_id_property": "Event id"},
            "sinks.hubspot.event_id_property: expected a property's internal name, got 'Event id'",
        ),
        (
            {"token": TOKEN, "requests_per_10s": 0},
            "sinks.hubspot.requests_per_10s: expected at least 1",
        ),
        (
            {"token": TOKEN, "search_requests_per_second": 0},
            "sinks.hubspot.search_requests_per_second: expected more than 0 (HubSpot allows 5 per account)",
        ),
        (
            {"token": TOKEN, "dispositions": {"voicemail": "x"}},
            "sinks.hubspot.dispositions: unknown call outcome 'voicemail' (expected one of busy, canceled, completed, failed, in_progress, machine, no_answer, queued, ringing, unknown)",
        ),
        (
            {"token": TOKEN, "property_mapping": {"Payment Amount": "Payment Amount"}},
            "sinks.hubspot.property_mapping: 'Payment Amount' maps to 'Payment Amount'; use the property's internal name (e.g. payment_amount), not its label",
        ),
    ],
)
def test_config_problems_are_reported(options, problem):
    with pytest.raises(ConfigError) as caught:
        _parse(_config(**options))
    assert caught.value.problems == [problem]


def test_unknown_option_is_refused_and_token_never_shown():
    with pytest.raises(ConfigError) as caught:
        _parse(_config(token=TOKEN, tokn="x"))
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("sinks.hubspot: unknown key")
    assert TOKEN not in str(caught.value)


def test_missing_token_is_required():
    with pytest.raises(ConfigError) as caught:
        _parse(_config())
    assert caught.value.problems == ["sinks.hubspot.token: required"]
