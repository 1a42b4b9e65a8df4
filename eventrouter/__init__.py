"""eventrouter: receive, verify, normalise, store and route webhooks from many providers.

The names in ``__all__`` are the public API a source or sink plugin uses, each described in
docs/plugin-api.md; test code also gets ``eventrouter.testing``. Every module of the package is
internal: plugins import from ``eventrouter`` itself, and a test keeps them to it.
"""

from eventrouter.converter import Duration, Secret
from eventrouter.errors import (
    AuthenticationError,
    ConfigError,
    DeliveryError,
    ForbiddenError,
    PayloadError,
    PermanentError,
    RetryableError,
)
from eventrouter.events import (
    REDACTED,
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
    EventType,
    TranscriptTurn,
)
from eventrouter.hookspecs import hookimpl
from eventrouter.payload import (
    Payload,
    describe,
    email_address,
    json_object,
    parse_timestamp,
    phone_e164,
    time_zone,
)
from eventrouter.sinks import Sink, SinkContext, error_for_status, retry_after_seconds
from eventrouter.sources import (
    EventParts,
    NoOptions,
    SignedRequest,
    Source,
    WebhookRequest,
    any_digest_matches,
)

__version__ = "0.1.0"

__all__ = [
    "REDACTED",
    "AnsweredBy",
    "AuthenticationError",
    "Call",
    "CallDirection",
    "CallStatus",
    "Campaign",
    "CampaignStatus",
    "ConfigError",
    "Contact",
    "DeliveryError",
    "Duration",
    "Event",
    "EventData",
    "EventParts",
    "EventType",
    "ForbiddenError",
    "NoOptions",
    "Payload",
    "PayloadError",
    "PermanentError",
    "RetryableError",
    "Secret",
    "SignedRequest",
    "Sink",
    "SinkContext",
    "Source",
    "TranscriptTurn",
    "WebhookRequest",
    "__version__",
    "any_digest_matches",
    "describe",
    "email_address",
    "error_for_status",
    "hookimpl",
    "json_object",
    "parse_timestamp",
    "phone_e164",
    "retry_after_seconds",
    "time_zone",
]
