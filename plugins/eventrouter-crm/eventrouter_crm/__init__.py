"""eventrouter-crm: a ``crm`` sink that syncs contacts, calls and campaign notes into a CRM."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Sink, hookimpl
from eventrouter_crm.sink import CRMSink

__all__ = ["CRMSink", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    register(CRMSink)
