"""The plugin is installed, discovered through its entry point, and its options are checked."""

from __future__ import annotations

import pytest

from eventrouter import ConfigError
from eventrouter.testing import EMPTY_SECRET, installed_types, parse_config
from eventrouter_pelcro import PelcroSource


def test_plugin_is_installed_and_discovered():
    registry = installed_types()
    assert "pelcro" in registry.sources
    assert registry.sources["pelcro"].cls is PelcroSource
    assert registry.sources["pelcro"].plugin == "pelcro"
    assert PelcroSource.provider == "pelcro"
    assert PelcroSource.secret_options == ("secrets",)


def _config(table: dict) -> dict:
    return {"sources": {"pelcro": {"plugin": "pelcro", **table}}}


def _problems(table: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(table), installed_types())
    return info.value.problems


def test_secrets_are_required_unless_insecure():
    assert _problems({}) == [
        "sources.pelcro.secrets: at least one secret is required "
        "(or set insecure = true to accept unsigned requests)"
    ]
    assert _problems({"secrets": []})[0].startswith("sources.pelcro.secrets: at least one")


def test_insecure_needs_no_secret():
    config = parse_config(_config({"insecure": True}), installed_types())
    source = config.sources["pelcro"]
    assert isinstance(source, PelcroSource)
    assert source.options.secrets == []
    assert source.options.insecure is True


def test_empty_secret_is_refused_without_echoing_the_others():
    problems = _problems({"secrets": ["kept-secret-value", ""]})
    assert problems == [f"sources.pelcro.secrets[1]: {EMPTY_SECRET}"]
    assert "kept-secret-value" not in "\n".join(problems)


def test_blank_secret_is_refused():
    # a key of spaces is one anyone can sign with
    assert _problems({"secrets": ["kept-secret-value", "   "]}) == [
        f"sources.pelcro.secrets[1]: {EMPTY_SECRET}"
    ]


def test_unknown_option_is_refused():
    problems = _problems({"secrets": ["s3cret-value"], "secret": "typo"})
    assert len(problems) == 1
    assert problems[0].startswith("sources.pelcro: unknown key")
    assert "secret" in problems[0]


def test_secrets_from_the_environment_are_collected_for_log_masking():
    config = parse_config(
        _config({"secrets": ["${PELCRO_SECRET}", "${PELCRO_OLD_SECRET}"]}),
        installed_types(),
        environ={"PELCRO_SECRET": "new-secret-value", "PELCRO_OLD_SECRET": "old-secret-value"},
    )
    assert config.sources["pelcro"].options.secrets == ["new-secret-value", "old-secret-value"]
    assert {"new-secret-value", "old-secret-value"} <= config.secrets
