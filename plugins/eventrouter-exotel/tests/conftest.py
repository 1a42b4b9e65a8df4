"""Fixtures of the Exotel source tests: payload files and sources built as the config builds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventrouter import WebhookRequest
from eventrouter.testing import structure_options
from eventrouter_exotel import ExotelOptions, ExotelSource

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "tok_3q9VnD8xKp2LmW7rTz5Y"
FORM = "application/x-www-form-urlencoded"


def content_type_of(name: str) -> str:
    return FORM if name.endswith(".form") else "application/json"


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def fixture_body() -> Callable[[str], bytes]:
    """The bytes of a file in tests/fixtures."""
    return lambda name: (FIXTURES / name).read_bytes()


@pytest.fixture
def make_source() -> Callable[..., ExotelSource]:
    """An ``exotel`` source from option keys, structured by the project converter; problems fail."""

    def factory(**options: Any) -> ExotelSource:
        options.setdefault("tokens", [TOKEN])
        source = ExotelSource("exotel", structure_options(options, ExotelOptions))
        problems = list(source.check())
        assert not problems, problems
        return source

    return factory


@pytest.fixture
def request_for(fixture_body: Callable[[str], bytes]) -> Callable[..., WebhookRequest]:
    """A request carrying a fixture file with its content type (and any extra headers/query)."""

    def factory(name: str, **kwargs: Any) -> WebhookRequest:
        headers = {"Content-Type": content_type_of(name), **kwargs.pop("headers", {})}
        return WebhookRequest(body=fixture_body(name), headers=headers, **kwargs)

    return factory
