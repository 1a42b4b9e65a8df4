"""Fixtures of the Pelcro source tests: payload files, a configured source, signed requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from eventrouter import WebhookRequest
from eventrouter_pelcro import PelcroOptions, PelcroSource
from eventrouter_pelcro.signature import SIGNATURE_HEADER, sign

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def secret() -> str:
    return "whsec-not-a-real-pelcro-secret"


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    """The exact bytes of ``tests/fixtures/<name>``."""
    return lambda name: (FIXTURES / name).read_bytes()


@pytest.fixture
def fixture_json(fixture_bytes: Callable[[str], bytes]) -> Callable[[str], dict[str, Any]]:
    return lambda name: json.loads(fixture_bytes(name))


@pytest.fixture
def source(secret: str) -> PelcroSource:
    return PelcroSource("pelcro-in", PelcroOptions(secrets=[secret]))


@pytest.fixture
def signed(secret: str) -> Callable[..., WebhookRequest]:
    """A request for ``body`` (bytes, or a dict to serialise) signed with the test secret."""

    def make(
        body: bytes | Mapping[str, Any], *, key: str | None = None, headers: Mapping[str, str] = ()
    ) -> WebhookRequest:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return WebhookRequest(
            body=data,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(data, key or secret),
                **dict(headers),
            },
        )

    return make
