"""eventrouter source for Exotel campaign callbacks: ``plugin = "exotel"``."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Source, hookimpl
from eventrouter_exotel.auth import AccessPolicy, authenticate
from eventrouter_exotel.callbacks import GENERIC_TYPE, Kind, Settings, detect_kind, read_callback
from eventrouter_exotel.source import ExotelOptions, ExotelSource, parse_callback

__all__ = [
    "GENERIC_TYPE",
    "AccessPolicy",
    "ExotelOptions",
    "ExotelSource",
    "Kind",
    "Settings",
    "authenticate",
    "detect_kind",
    "parse_callback",
    "read_callback",
    "register_sources",
]


@hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Contribute the ``exotel`` source type."""
    register(ExotelSource)
