"""The hooks plugins implement. Each is documented, with its contract, in docs/hooks.md."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from eventrouter.events import Event
    from eventrouter.sinks import Sink
    from eventrouter.sources import Source, WebhookRequest

__all__ = ["hookimpl", "hookspec"]

hookspec = HookspecMarker("eventrouter")
hookimpl = HookimplMarker("eventrouter")


@hookspec
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Contribute source types: call ``register(SourceClass)`` once for each."""


@hookspec
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Contribute sink types: call ``register(SinkClass)`` once for each."""


@hookspec
def event_received(source: Source, request: WebhookRequest) -> Any:
    """Observe an authenticated request before it is parsed."""


@hookspec
def event_normalised(event: Event, source: Source) -> Event | bool | None:
    """Enrich (return a new Event), drop (return False) or pass (return None) a parsed event."""


@hookspec
def delivery_succeeded(event: Event, sink: Sink, attempt: int, duration: float) -> Any:
    """Observe a successful delivery of ``event`` to ``sink``."""


@hookspec
def delivery_failed(
    event: Event, sink: Sink, attempt: int, error: str, retry_at: datetime | None
) -> Any:
    """Observe a failed delivery attempt; ``retry_at`` is None when it will not be retried."""


@hookspec
def event_dead_lettered(event: Event, sink: Sink, reason: str) -> Any:
    """Observe a delivery given up on and moved to the dead letters."""
