"""The ``[sinks.NAME]`` table of a ``crm`` sink."""

from __future__ import annotations

from attrs import field, frozen

from eventrouter import Duration

__all__ = ["CRMOptions"]


@frozen
class CRMOptions:
    """What a ``crm`` sink is told; backend-specific options are ignored by other backends."""

    #: the CRM's API token (HubSpot: a private app access token); a secret
    token: str = field(repr=False)
    #: which CRM to write to; "hubspot" is the only one so far
    backend: str = "hubspot"
    #: where the CRM's API lives (tests point it at a local server)
    api_base: str = "https://api.hubapi.com"
    #: how long the first of several concurrent deliveries waits for others to share its request
    batch_window: Duration = Duration(0.2)
    #: most records in one batch request (HubSpot accepts 100)
    batch_size: int = 100
    #: Altur ``extracted_data`` key -> CRM contact property, e.g. {"Payment Amount" = "payment_amount"}
    property_mapping: dict[str, str] = field(factory=dict)
    #: unique contact property that identifies contacts known only by phone
    phone_id_property: str = "eventrouter_phone"
    #: call and note property holding the event's id, by which a re-delivery finds what the
    #: first delivery wrote (a plain text property: HubSpot has no unique values on engagements)
    event_id_property: str = "eventrouter_event_id"
    #: create the two properties above in the CRM before the first write
    create_properties: bool = False
    #: call outcome ("completed", "busy", "no_answer", ..., "machine") -> CRM disposition id
    dispositions: dict[str, str] = field(factory=dict)
    #: event types (globs) that become a note on the contact
    note_types: list[str] = field(factory=lambda: ["campaign.*", "call.attempts_exhausted"])
    #: requests the sink sends in any 10 seconds (HubSpot private apps: 100, or 190 on Pro/Enterprise);
    #: per process: with several worker processes, divide the account's budget between them
    requests_per_10s: int = 100
    #: CRM search requests the sink sends per second (HubSpot: 5 per account); per process too
    search_requests_per_second: float = 4.0
    #: longest one API request may take
    request_timeout: Duration = Duration(20)
