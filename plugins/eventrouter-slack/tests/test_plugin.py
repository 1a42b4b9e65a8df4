"""The plugin is installed and found, and check() refuses what types alone cannot."""

from __future__ import annotations

import pytest

from eventrouter import ConfigError
from eventrouter.testing import installed_types, parse_config, structure_options
from eventrouter_slack import SlackOptions, SlackSink

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_URL = "https://hooks.slack.com/services/T1/B1/sEcReTpArT123456"


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "slack" in registry.sinks
    assert registry.sinks["slack"].cls is SlackSink
    assert registry.sinks["slack"].plugin == "slack"  # the entry point's name


def problems(**options):
    return list(SlackSink("alerts", structure_options(options, SlackOptions)).check())


def test_valid_options_have_no_problems():
    assert problems(webhook_url=SECRET_URL) == []
    assert problems(token="xoxb-1", channel="C0123456789") == []
    assert problems(token="xoxb-1", channel="#alerts", base_url="http://127.0.0.1:9/api/") == []


def test_options_defaults():
    options = structure_options({"webhook_url": SECRET_URL}, SlackOptions)
    assert options.min_interval == 1.0
    assert options.request_timeout == 10.0
    assert options.digest_window == 0.0
    assert options.digest_threshold == 5
    assert options.digest_lines == 10
    assert options.base_url == "https://slack.com/api/"
    assert options.templates == {}


def test_secrets_stay_out_of_repr():
    options = structure_options(
        {"webhook_url": SECRET_URL, "token": "xoxb-VerySecretToken", "channel": "C1"},
        SlackOptions,
    )
    assert "sEcReTpArT" not in repr(options)
    assert "VerySecretToken" not in repr(options)
    assert "channel='C1'" in repr(options)


def test_durations_are_read_from_strings():
    options = structure_options(
        {"webhook_url": SECRET_URL, "digest_window": "2m", "min_interval": "500ms"}, SlackOptions
    )
    assert options.digest_window == 120.0
    assert options.min_interval == 0.5


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["webhook_url: required, unless token and channel are set"]),
        (
            {"webhook_url": SECRET_URL, "token": "xoxb-1", "channel": "C1"},
            ["webhook_url: set either webhook_url or token + channel, not both"],
        ),
        (
            {"webhook_url": SECRET_URL, "channel": "C1"},
            ["webhook_url: set either webhook_url or token + channel, not both"],
        ),
        (
            {"token": "xoxb-1"},
            ["channel: required with token (a channel id such as C0123456789, or #name)"],
        ),
        ({"channel": "C1"}, ["token: required with channel (a bot token, xoxb-...)"]),
        (
            {"webhook_url": "hooks.slack.com/services/T1/B1/sEcReTpArT123456"},
            ["webhook_url: expected an https:// URL such as https://hooks.slack.com/services/..."],
        ),
        (
            {"token": "xoxb-1", "channel": "C1", "base_url": "slack.com/api"},
            ["base_url: expected an http(s):// URL, got 'slack.com/api'"],
        ),
        (
            {
                "webhook_url": SECRET_URL,
                "digest_threshold": 0,
                "digest_lines": 0,
                "request_timeout": 0,
            },
            [
                "request_timeout: must be more than 0",
                "digest_threshold: must be at least 1",
                "digest_lines: must be at least 1",
            ],
        ),
    ],
)
def test_option_problems(options, expected):
    assert problems(**options) == expected


def test_template_problems():
    found = problems(
        webhook_url=SECRET_URL,
        templates={
            "call.*": "{contact.phone} {call.status!x}",
            "campaign.completed": "{campaign.nmae} done",
            "campaign.stalled": "{campaign.__class__}",
            "x.one": "{0} and {}",
            "x.two": "{attributes[0]}",
            "x.three": "unbalanced {",
            "x.four": "{campaign.stats.calls:{contact.name:{type}}}",
            "": "{type}",
        },
    )
    assert found == [
        "templates.call.*: {call.status!x}: conversion must be !s, !r or !a",
        "templates.campaign.completed: {campaign.nmae}: unknown field (see the README for the fields a template may use)",
        "templates.campaign.stalled: {campaign.__class__}: unknown field (see the README for the fields a template may use)",
        "templates.x.one: positional fields ({} or {0}) are not supported; name a field such as {campaign.name}",
        "templates.x.one: positional fields ({} or {0}) are not supported; name a field such as {campaign.name}",
        "templates.x.two: {attributes[0]}: indexing is not supported; write nested keys with dots",
        "templates.x.three: invalid template (Single '{' encountered in format string); write a literal brace as '{{' or '}}'",
        "templates.x.four: {contact.name}: format specs nest one level at most",
        "templates: an event-type pattern cannot be empty",
    ]


def test_valid_templates_pass():
    assert (
        problems(
            webhook_url=SECRET_URL,
            templates={
                "*": "{title} {type} {source} {campaign.stats.calls:>5} {attributes.end_user.tags}",
                "call.ended": "{{literal}} {contact.display!r} {call.duration_seconds:d}",
                "campaign.stalled": "{campaign.name:{campaign.id}}",
            },
        )
        == []
    )


def test_config_errors_name_the_option_and_never_the_secret():
    document = {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {
            "alerts": {
                "plugin": "slack",
                "webhook_url": "${SLACK_WEBHOOK_URL}",
                "token": "${SLACK_TOKEN}",
                "chanel": "C1",
            }
        },
        "routes": [{"sinks": ["alerts"]}],
    }
    environ = {"SLACK_WEBHOOK_URL": SECRET_URL, "SLACK_TOKEN": "xoxb-VerySecretToken"}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, installed_types(), environ=environ)
    # every problem at once: the misspelt key, and what the sink's check() makes of the rest
    unknown, both = caught.value.problems
    assert unknown.startswith("sinks.alerts: unknown key")
    assert "chanel" in unknown
    assert both == "sinks.alerts.webhook_url: set either webhook_url or token + channel, not both"
    assert "sEcReTpArT" not in str(caught.value)
    assert "VerySecretToken" not in str(caught.value)

    del document["sinks"]["alerts"]["chanel"]
    with pytest.raises(ConfigError) as caught:
        parse_config(document, installed_types(), environ=environ)
    assert caught.value.problems == [
        "sinks.alerts.webhook_url: set either webhook_url or token + channel, not both"
    ]


def test_secrets_are_registered_with_the_config():
    document = {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {"alerts": {"plugin": "slack", "token": "${SLACK_TOKEN}", "channel": "C1"}},
        "routes": [{"sinks": ["alerts"]}],
    }
    config = parse_config(
        document,
        installed_types(),
        environ={"SLACK_TOKEN": "xoxb-VerySecretToken"},
    )
    assert "xoxb-VerySecretToken" in config.secrets
    assert "C1" not in config.secrets
