"""Shared fixtures of the core tests; the router fixtures come from eventrouter.testing."""

from __future__ import annotations

from typing import Any

import pytest

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def basic_config() -> dict[str, Any]:
    """A Standard Webhooks source routed to one recording sink with a fast retry schedule."""
    return {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {
            "recorder": {
                "plugin": "recording",
                "delivery": {"retry_schedule": ["50ms", "50ms"], "jitter": 0},
            }
        },
        "routes": [{"sinks": ["recorder"]}],
    }


@pytest.fixture
def config_with():
    """``config_with(sinks, routes=None)``: the demo source routed to ``sinks`` (all by default)."""

    def build(sinks: dict[str, Any], routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
            "sinks": sinks,
            "routes": routes or [{"sinks": list(sinks)}],
        }

    return build


@pytest.fixture
def make_config_source():
    """``make_config_source(preset, secrets, **options)``: a ``signed`` source, built and
    checked as ``eventrouter check`` would."""
    from eventrouter.config import parse_config
    from eventrouter.plugins import Registry, create_plugin_manager

    registry = Registry.collect(create_plugin_manager(load_entrypoints=False))

    def build(preset: str, secrets: list[str], **options: Any) -> Any:
        table = {"plugin": "signed", "preset": preset, "secrets": secrets, **options}
        config = parse_config({"sources": {preset: table}}, registry, base_dir=".", environ={})
        return config.sources[preset]

    return build
