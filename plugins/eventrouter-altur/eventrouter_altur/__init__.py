"""eventrouter source plugin for Altur (AI phone agents): ``plugin = "altur"``."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Source, hookimpl
from eventrouter_altur.parse import parse_webhook
from eventrouter_altur.signature import SIGNATURE_HEADER, sign, verify
from eventrouter_altur.source import AlturOptions, AlturSource

__all__ = [
    "SIGNATURE_HEADER",
    "AlturOptions",
    "AlturSource",
    "parse_webhook",
    "register_sources",
    "sign",
    "verify",
]


@hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Contribute the ``altur`` source type."""
    register(AlturSource)
