"""eventrouter sink ``csv``: an append-only, fsynced CSV archive of normalised events."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Sink, hookimpl
from eventrouter_csv.columns import COLUMNS, DEFAULT_COLUMNS, neutralise
from eventrouter_csv.sink import CSVOptions, CSVSink

__all__ = ["COLUMNS", "DEFAULT_COLUMNS", "CSVOptions", "CSVSink", "neutralise", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Contribute the ``csv`` sink type."""
    register(CSVSink)
