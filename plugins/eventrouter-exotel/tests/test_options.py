"""The ``[sources.NAME]`` table: what starts, and what is refused with which message."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest

from eventrouter import ConfigError
from eventrouter.testing import installed_types, parse_config
from eventrouter_exotel import ExotelOptions, ExotelSource, Kind

TOKEN = "tok_3q9VnD8xKp2LmW7rTz5Y"


@pytest.fixture(scope="module")
def registry() -> Any:
    return installed_types()


def problems(registry: Any, **options: Any) -> list[str]:
    document = {"sources": {"exotel": {"plugin": "exotel", **options}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, registry, base_dir=".", environ={})
    return caught.value.problems


def source(registry: Any, environ: dict[str, str] | None = None, **options: Any) -> ExotelSource:
    document = {"sources": {"exotel": {"plugin": "exotel", **options}}}
    config = parse_config(document, registry, base_dir=".", environ=environ or {})
    result = config.sources["exotel"]
    assert isinstance(result, ExotelSource)
    return result


def test_refuses_to_start_without_credentials(registry):
    [problem] = problems(registry)
    assert problem.startswith("sources.exotel.tokens: ")
    assert "tokens" in problem
    assert "insecure = true" in problem


def test_empty_lists_are_no_credentials(registry):
    assert len(problems(registry, tokens=[], basic_auth=[])) == 1


def test_insecure_starts_without_credentials(registry):
    assert source(registry, insecure=True).policy.requires_credentials is False


def test_defaults(registry):
    options = source(registry, tokens=[TOKEN]).options
    assert options.tokens == [TOKEN]
    assert options.basic_auth == []
    assert options.allowed_networks == []
    assert options.insecure is False
    assert options.kind is None
    assert options.phone_region == "IN"
    assert options.time_zone == "Asia/Kolkata"


def test_token_from_the_environment(registry):
    configured = source(registry, {"EXOTEL_TOKEN": TOKEN}, tokens=["${EXOTEL_TOKEN}"])
    assert configured.options.tokens == [TOKEN]
    assert configured.sign(b"{}").query == {"token": TOKEN}


def test_all_options(registry):
    configured = source(
        registry,
        tokens=[TOKEN],
        basic_auth=["exotel:pa55word-long"],
        allowed_networks=["203.0.113.0/24"],
        kind="call_schedule",
        phone_region="us",
        time_zone="Europe/London",
    )
    assert configured.kind is Kind.CALL_SCHEDULE
    assert configured.settings.phone_region == "US"
    assert str(configured.settings.naive_tz) == "Europe/London"
    assert [str(n) for n in configured.policy.allowed_networks] == ["203.0.113.0/24"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tokens": ["short"]}, "sources.exotel.tokens[0]: a token needs at least 16 characters"),
        ({"tokens": [TOKEN, " " * 20]}, "sources.exotel.tokens[1]: a secret cannot be empty"),
        ({"tokens": [TOKEN, ""]}, "sources.exotel.tokens[1]: a secret cannot be empty"),
        ({"basic_auth": ["user:password", ""]}, "sources.exotel.basic_auth[1]: a secret cannot be"),
        ({"basic_auth": ["no-colon"]}, "sources.exotel.basic_auth[0]: expected 'user:password'"),
        ({"basic_auth": [":s3cret-pw"]}, "sources.exotel.basic_auth[0]: expected 'user:password'"),
        ({"basic_auth": ["user:"]}, "sources.exotel.basic_auth[0]: expected 'user:password'"),
        (
            {"tokens": [TOKEN], "allowed_networks": ["10.0.0.0/8", "office"]},
            "sources.exotel.allowed_networks[1]: 'office' is not an IP network",
        ),
        (  # retired: one list of proxies, in [server], for the connection limits and sources
            {"tokens": [TOKEN], "trusted_proxies": ["10.0.0.0/8"]},
            "sources.exotel.trusted_proxies: moved to [server] trusted_proxies, which the "
            "connection limits and every source share",
        ),
        (
            {"tokens": [TOKEN], "trusted_proxies": []},
            "sources.exotel.trusted_proxies: moved to [server] trusted_proxies",
        ),
        ({"tokens": [TOKEN], "kind": "sms"}, "sources.exotel.kind: expected one of 'call_status'"),
        (
            {"tokens": [TOKEN], "phone_region": "XX"},
            "sources.exotel.phone_region: 'XX' is not a region",
        ),
        (
            {"tokens": [TOKEN], "time_zone": "Mars/Olympus"},
            "sources.exotel.time_zone: unknown time zone",
        ),
        ({"tokens": "tok_3q9VnD8xKp2LmW7rTz5Y"}, "tokens: expected a list"),
        ({"tokens": [TOKEN, 42]}, "tokens[1]: expected a string, got int"),
        (
            {"allowed_networks": "10.0.0.0/8", "tokens": [TOKEN]},
            "allowed_networks: expected a list",
        ),
        ({"insecure": "false"}, "insecure: expected bool"),
        ({"insecure": 1}, "insecure: expected bool"),
        ({"tokens": [TOKEN], "kind": 1}, "kind: expected str"),
        ({"tokens": [TOKEN], "secret": "x"}, "unknown key 'secret'"),
    ],
)
def test_refused_options(registry, options, expected):
    found = problems(registry, **options)
    assert any(expected in problem for problem in found), found


def test_problems_never_show_a_secret(registry):
    found = problems(registry, tokens=["tiny-secret"], basic_auth=["user-without-colon-s3cret"])
    assert found
    assert not any("tiny-secret" in problem or "s3cret" in problem for problem in found)


README = Path(__file__).parent.parent / "README.md"


def test_readme_examples_are_valid_configs(registry):
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        document = tomllib.loads(block)
        config = parse_config(
            {**document, "sinks": document.get("sinks", {})},
            registry,
            base_dir=".",
            environ={"EXOTEL_TOKEN": TOKEN},
        )
        assert config.sources
        assert all(isinstance(s, ExotelSource) for s in config.sources.values())


def test_readme_documents_every_option():
    text = README.read_text()
    for attribute in attrs.fields(ExotelOptions):
        assert f"| `{attribute.name}` |" in text, attribute.name
