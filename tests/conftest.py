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
