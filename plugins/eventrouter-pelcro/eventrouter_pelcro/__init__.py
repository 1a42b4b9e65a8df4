"""eventrouter source plugin for Pelcro webhooks (``plugin = "pelcro"``)."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Source, hookimpl
from eventrouter_pelcro.payload import parse_webhook
from eventrouter_pelcro.signature import SIGNATURE_HEADER, sign, verify
from eventrouter_pelcro.source import PelcroOptions, PelcroSource

__all__ = [
    "SIGNATURE_HEADER",
    "PelcroOptions",
    "PelcroSource",
    "parse_webhook",
    "register_sources",
    "sign",
    "verify",
]


@hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register the ``pelcro`` source type."""
    register(PelcroSource)
