"""Source type ``standard-webhooks``: any sender that follows the Standard Webhooks spec."""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from math import floor

import standardwebhooks
from attrs import field, frozen

from eventrouter.converter import Secret
from eventrouter.errors import AuthenticationError, PayloadError
from eventrouter.events import Event, EventData
from eventrouter.hookspecs import hookimpl
from eventrouter.payload import json_object, parse_timestamp
from eventrouter.sources import SignedRequest, Source, WebhookRequest

__all__ = ["StandardWebhooksSource"]

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@frozen
class StandardWebhooksOptions:
    """``secrets``: one or more ``whsec_...`` secrets; any match passes (rotation)."""

    secrets: list[Secret] = field(repr=False)
    provider: str = "standard-webhooks"


def _webhook(secret: str) -> standardwebhooks.Webhook | None:
    """A verifier for ``secret``, or None when it is malformed (check() says so, without it)."""
    try:
        return standardwebhooks.Webhook(secret)
    except (ValueError, binascii.Error, standardwebhooks.webhooks.EmptyWebhookSecretError):
        return None


class StandardWebhooksSource(Source):
    """Verifies ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` (5 minute tolerance)."""

    type_name = "standard-webhooks"
    provider = "standard-webhooks"
    Options = StandardWebhooksOptions
    secret_options = ("secrets",)

    def __init__(self, name: str, options: StandardWebhooksOptions) -> None:
        super().__init__(name, options)
        self.provider = options.provider
        self._webhooks = [hook for hook in map(_webhook, options.secrets) if hook is not None]

    def check(self) -> Iterable[str]:
        if not self.options.secrets:
            yield "secrets: at least one secret is required"
        elif len(self._webhooks) != len(self.options.secrets):
            yield "secrets: each secret must be 'whsec_' followed by base64"

    def authenticate(self, request: WebhookRequest) -> None:
        headers = {name: request.headers.get(name, "") for name in _HEADERS}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            raise AuthenticationError(f"missing header {', '.join(missing)}")
        reason = "no matching signature"
        for webhook in self._webhooks:
            try:
                webhook.verify(request.body, headers, json_parse=False)
                return
            except standardwebhooks.WebhookVerificationError as exc:
                reason = str(exc)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                reason = "malformed webhook-signature or body"
        raise AuthenticationError(f"standard webhooks: {reason.lower()}")

    def parse(self, request: WebhookRequest) -> Event:
        payload = json_object(request.body)
        message_id = request.headers.get("webhook-id")
        if not message_id:
            raise PayloadError("missing webhook-id header")
        event_type = payload.get("type", "webhook")
        if not isinstance(event_type, str) or not event_type:
            raise PayloadError("expected a non-empty string", field="type")
        data = payload.get("data")
        return self.make_event(
            type=event_type,
            provider_type=event_type,
            idempotency_key=message_id,
            time=parse_timestamp(payload.get("timestamp"), field="timestamp"),
            raw=payload,
            data=EventData(attributes=data if isinstance(data, dict) else {}),
        )

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        if not self._webhooks:
            raise ValueError("no valid secret to sign with")
        message_id = f"msg_{secrets.token_hex(12)}"
        now = datetime.now(UTC)
        signature = self._webhooks[0].sign(message_id, now, body.decode("utf-8"))
        return SignedRequest(
            headers={
                "Content-Type": content_type,
                "webhook-id": message_id,
                "webhook-timestamp": str(floor(now.timestamp())),
                "webhook-signature": signature,
            }
        )


@hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    register(StandardWebhooksSource)
