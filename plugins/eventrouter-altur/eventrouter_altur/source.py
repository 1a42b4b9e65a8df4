"""Source type ``altur``: Altur's signed webhooks (``on_call_end``, ``campaign.*``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, tzinfo

import phonenumbers
from attrs import field, frozen

from eventrouter import Event, Secret, SignedRequest, Source, WebhookRequest, time_zone
from eventrouter_altur.parse import parse_webhook
from eventrouter_altur.signature import (
    SECRET_ENCODINGS,
    SIGNATURE_HEADER,
    decode_secret,
    sign,
    verify,
)

__all__ = ["AlturOptions", "AlturSource"]

log = logging.getLogger("eventrouter_altur")


@frozen
class AlturOptions:
    """How one ``[sources.NAME]`` table with ``plugin = "altur"`` verifies and reads requests."""

    #: shared secrets of the webhook integration; a request signed with any of them passes
    secrets: list[Secret] = field(factory=list, repr=False)
    #: "base64" (Altur's current docs: the key is the decoded bytes) or "utf8" (older docs)
    secret_encoding: str = "base64"  # noqa: S105 - the name of an encoding, not a secret
    #: run without secrets, accepting unsigned requests (local testing only); with secrets set,
    #: every request is still verified
    insecure: bool = False
    #: IANA time zone of timestamps sent without an offset
    time_zone: str = "UTC"
    #: ISO 3166 region of phone numbers sent without a leading + (e.g. "MX")
    phone_region: str | None = None


class AlturSource(Source):
    """Verifies ``X-Altur-Signature`` (HMAC-SHA256) and normalises Altur's calls and campaigns."""

    type_name = "altur"
    provider = "altur"
    Options = AlturOptions
    secret_options = ("secrets",)

    def __init__(self, name: str, options: AlturOptions) -> None:
        super().__init__(name, options)
        self._problems: list[str] = []
        self._keys: list[bytes] = []
        if options.secret_encoding not in SECRET_ENCODINGS:
            self._problems.append(
                f"secret_encoding: expected 'base64' or 'utf8', got {options.secret_encoding!r}"
            )
        else:
            for index, secret in enumerate(options.secrets):
                try:
                    self._keys.append(decode_secret(secret, options.secret_encoding))
                except ValueError as exc:
                    self._problems.append(f"secrets[{index}]: {exc}")
        if not options.secrets and not options.insecure:
            self._problems.append(
                "secrets: at least one secret is required "
                "(or set insecure = true to accept unsigned requests)"
            )
        self._naive_tz: tzinfo = UTC
        try:
            self._naive_tz = time_zone(options.time_zone)
        except ValueError as exc:
            self._problems.append(f"time_zone: {exc}")
        self._region = options.phone_region.upper() if options.phone_region else None
        if self._region is not None and self._region not in phonenumbers.SUPPORTED_REGIONS:
            self._problems.append(
                f"phone_region: unknown region {options.phone_region!r} "
                "(use an ISO 3166 code such as 'MX')"
            )
        if options.insecure and not options.secrets:
            log.warning("source %s: insecure = true, X-Altur-Signature is not checked", name)

    def check(self) -> Iterable[str]:
        return list(self._problems)

    def authenticate(self, request: WebhookRequest) -> None:
        # with secrets, every request is verified; insecure only permits running without any
        if self.options.insecure and not self.options.secrets:
            return
        verify(request.body, request.headers, self._keys)

    def parse(self, request: WebhookRequest) -> Event:
        return self.make_event(
            parse_webhook(request.body, naive_tz=self._naive_tz, phone_region=self._region)
        )

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        headers = {"Content-Type": content_type}
        if self._keys:
            headers[SIGNATURE_HEADER] = sign(body, self._keys[0])
        elif not self.options.insecure:
            raise ValueError("no valid secret to sign with")
        return SignedRequest(headers=headers)
