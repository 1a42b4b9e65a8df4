"""Source type ``pelcro``: Pelcro webhooks, verified by ``X-Pelcro-Hmac-SHA256``."""

from __future__ import annotations

from collections.abc import Iterable

from attrs import field, frozen

from eventrouter import Event, Secret, SignedRequest, Source, WebhookRequest
from eventrouter_pelcro.payload import parse_webhook
from eventrouter_pelcro.signature import SIGNATURE_HEADER, sign, verify

__all__ = ["PelcroOptions", "PelcroSource"]


@frozen
class PelcroOptions:
    """``secrets``: the webhook secrets; any match passes (rotation). ``insecure``: allow none."""

    #: Pelcro webhook secrets; a request passes when signed with any of them
    secrets: list[Secret] = field(factory=list, repr=False)
    #: accept unsigned requests when no secret is configured (local testing only)
    insecure: bool = False


class PelcroSource(Source):
    """Pelcro campaign and subscription webhooks; the envelope ``id`` is the idempotency key."""

    type_name = "pelcro"
    provider = "pelcro"
    Options = PelcroOptions
    secret_options = ("secrets",)

    options: PelcroOptions

    def check(self) -> Iterable[str]:
        if not self.options.secrets and not self.options.insecure:
            yield (
                "secrets: at least one secret is required "
                "(or set insecure = true to accept unsigned requests)"
            )

    def authenticate(self, request: WebhookRequest) -> None:
        # with secrets, every request is verified; insecure only permits running without any
        if self.options.secrets or not self.options.insecure:
            verify(request.body, request.headers, self.options.secrets)

    def parse(self, request: WebhookRequest) -> Event:
        return self.make_event(parse_webhook(request.body))

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        headers = {"Content-Type": content_type}
        if self.options.secrets:
            headers[SIGNATURE_HEADER] = sign(body, self.options.secrets[0])
        elif not self.options.insecure:
            raise ValueError("no secret to sign with")
        return SignedRequest(headers=headers)
