"""Sink type ``crm``: keep a CRM's contacts, calls and campaign notes in step with the events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from eventrouter import Event, Sink, SinkContext
from eventrouter_crm.backends import BACKENDS, CRMBackend, backend_type
from eventrouter_crm.mapping import plan_event
from eventrouter_crm.options import CRMOptions

__all__ = ["CRMSink"]


class CRMSink(Sink):
    """Upserts the event's contact; logs a ``call.ended`` as a call and a campaign event as a note.

    Events about nobody (no email, no phone) are delivered without writing anything.
    """

    type_name = "crm"
    Options = CRMOptions
    secret_options = ("token",)
    options: CRMOptions
    backend: CRMBackend

    def check(self) -> Iterable[str]:
        if self.options.backend not in BACKENDS:
            yield (
                f"backend: unknown CRM {self.options.backend!r} "
                f"(expected one of {', '.join(sorted(BACKENDS))})"
            )
            return
        if self.options.batch_window < 0 or self.options.batch_window > 5:
            yield "batch_window: expected 0 to 5 seconds, e.g. '200ms'"
        if self.options.requests_per_10s < 1:
            yield "requests_per_10s: expected at least 1"
        if self.options.request_timeout <= 0:
            yield "request_timeout: expected more than 0 seconds, e.g. '20s'"
        for key, prop in self.options.property_mapping.items():
            if not prop.strip() or any(c.isspace() for c in prop):
                yield (
                    f"property_mapping: {key!r} maps to {prop!r}; use the property's internal "
                    "name (e.g. payment_amount), not its label"
                )
        yield from backend_type(self.options.backend).check(self.options)

    async def start(self, context: SinkContext) -> None:
        await super().start(context)
        self.backend = backend_type(self.options.backend)(self.options, context)

    async def deliver(self, event: Event) -> None:
        plan = plan_event(
            event,
            property_mapping=self.options.property_mapping,
            note_types=self.options.note_types,
        )
        if plan.empty:
            self.context.logger.debug(
                "sink %s: event %s (%s) names no contact; nothing to write",
                self.name,
                event.id,
                event.type,
            )
            return
        contact_id = None
        if plan.contact is not None:
            contact_id = await self.backend.upsert_contact(plan.contact)
        if plan.call is not None:
            await self.backend.record_call(plan.call, contact_id=contact_id)
        if plan.note is not None and contact_id is not None:
            await self.backend.add_note(plan.note, contact_id=contact_id)

    async def deliver_batch(self, events: Sequence[Event]) -> dict[str, Exception]:
        """Deliver the events together: the backend gathers their writes into batch requests
        (up to ``batch_size`` records each); the events whose writes failed, with the error."""
        results = await asyncio.gather(
            *(self.deliver(event) for event in events), return_exceptions=True
        )
        refused: dict[str, Exception] = {}
        for event, result in zip(events, results, strict=True):
            if isinstance(result, Exception):
                refused[event.id] = result
            elif isinstance(result, BaseException):
                raise result  # a cancellation: not the events'
        return refused

    async def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            await backend.close()
