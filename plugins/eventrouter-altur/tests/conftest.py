"""Fixtures of the Altur plugin's tests: payloads from tests/fixtures and configured sources."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventrouter.testing import structure_options
from eventrouter_altur import AlturOptions, AlturSource

FIXTURES = Path(__file__).parent / "fixtures"

#: base64 secrets, as Altur's current docs hand them out
SECRET = base64.b64encode(b"altur-test-secret-number-one-32b").decode()
ROTATED_SECRET = base64.b64encode(b"altur-test-secret-number-two-32b").decode()


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load this plugin alone from the entry points: other installed plugins cannot break these tests."""
    monkeypatch.setenv("EVENTROUTER_LOAD_PLUGINS", "altur")


@pytest.fixture
def load() -> Callable[[str], bytes]:
    """``load("on_call_end")``: the bytes of tests/fixtures/on_call_end.json."""

    def read(name: str) -> bytes:
        return (FIXTURES / f"{name}.json").read_bytes()

    return read


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def rotated_secret() -> str:
    return ROTATED_SECRET


@pytest.fixture
def make_source() -> Callable[..., AlturSource]:
    """``make_source(secrets=[...], ...)``: an AlturSource whose options pass ``check()``."""

    def build(**table: Any) -> AlturSource:
        table.setdefault("secrets", [SECRET])
        source = AlturSource("altur", structure_options(table, AlturOptions))
        assert list(source.check()) == []
        return source

    return build


@pytest.fixture
def source(make_source: Callable[..., AlturSource]) -> AlturSource:
    """A source with one base64 secret, UTC and no default phone region."""
    return make_source()
