"""Source type ``exotel``: Exotel campaign callbacks (call status, call schedule, campaign status)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

import phonenumbers
from attrs import field, frozen
from multidict import CIMultiDict, CIMultiDictProxy

from eventrouter import Event, EventParts, Secret, SignedRequest, Source, WebhookRequest, time_zone
from eventrouter_exotel.auth import AccessPolicy, authenticate, basic_authorization, parse_networks
from eventrouter_exotel.body import decode_body
from eventrouter_exotel.callbacks import Kind, Settings, read_callback

__all__ = ["MIN_TOKEN_LENGTH", "ExotelOptions", "ExotelSource", "parse_callback"]

#: shorter tokens are guessable, and the core's log redaction skips values under 6 characters
MIN_TOKEN_LENGTH = 16

_KINDS = ", ".join(repr(str(kind)) for kind in Kind)


@frozen
class ExotelOptions:
    """The keys of an ``[sources.NAME]`` table with ``plugin = "exotel"``."""

    #: accepted ``?token=`` values; several while rotating
    tokens: list[Secret] = field(factory=list, repr=False)
    #: accepted ``user:password`` credentials, sent as ``Authorization: Basic``
    basic_auth: list[Secret] = field(factory=list, repr=False)
    #: CIDRs callbacks may come from; empty: anywhere
    allowed_networks: list[str] = field(factory=list)
    #: retired (the proxies are ``[server] trusted_proxies``); kept so check() can say where it went
    trusted_proxies: Any = None  # any value: it is refused whatever it is
    #: accept callbacks without any credential (only when neither tokens nor basic_auth is set)
    insecure: bool = False
    #: force every callback on this path to one kind instead of telling them apart by shape
    kind: str | None = None
    #: region of phone numbers written without a country code
    phone_region: str = "IN"
    #: time zone of timestamps written without an offset
    time_zone: str = "Asia/Kolkata"


def parse_callback(
    body: bytes,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    kind: Kind | None = None,
    settings: Settings | None = None,
) -> EventParts:
    """Decode and read one callback: PayloadError, or the parts of its event, never anything else."""
    headers = (
        headers if isinstance(headers, CIMultiDictProxy) else CIMultiDictProxy(CIMultiDict(headers))
    )
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    payload = decode_body(body, content_type)
    return read_callback(payload, body=body, kind=kind, settings=settings or Settings())


class ExotelSource(Source):
    """Authenticates by URL token, Basic credentials and/or network; parses JSON or form bodies."""

    type_name = "exotel"
    provider = "exotel"
    Options = ExotelOptions
    secret_options = ("tokens", "basic_auth")

    def __init__(self, name: str, options: ExotelOptions) -> None:
        super().__init__(name, options)
        allowed, self._bad_allowed = parse_networks(options.allowed_networks)
        self.policy = AccessPolicy.build(
            tokens=options.tokens, basic_auth=options.basic_auth, allowed_networks=allowed
        )
        self.kind = Kind(options.kind) if options.kind in tuple(Kind) else None
        try:
            naive_tz = time_zone(options.time_zone)
        except ValueError:
            naive_tz = UTC  # check() reports it; the source never starts
        self.settings = Settings(phone_region=options.phone_region.upper(), naive_tz=naive_tz)

    def check(self) -> Iterable[str]:
        options = self.options
        if not options.tokens and not options.basic_auth and not options.insecure:
            yield (
                'tokens: Exotel signs nothing, so set tokens = ["<a long random secret>"] and add '
                "?token=<it> to the callback URLs (or set basic_auth), or set insecure = true to "
                "accept unauthenticated callbacks"
            )
        for index, token in enumerate(options.tokens):
            if len(token.strip()) < MIN_TOKEN_LENGTH:
                yield (
                    f"tokens[{index}]: a token needs at least {MIN_TOKEN_LENGTH} characters "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        for index, credential in enumerate(options.basic_auth):
            user, colon, password = credential.partition(":")
            if not (colon and user and password):
                yield f"basic_auth[{index}]: expected 'user:password' with both parts non-empty"
        for index in self._bad_allowed:
            yield (
                f"allowed_networks[{index}]: {options.allowed_networks[index]!r} is not an IP "
                "network such as '10.0.0.0/8'"
            )
        if options.trusted_proxies is not None:
            yield (
                "trusted_proxies: moved to [server] trusted_proxies, which the connection limits "
                "and every source share; list the reverse proxies there and delete this key"
            )
        if options.kind is not None and self.kind is None:
            yield f"kind: expected one of {_KINDS}, got {options.kind!r}"
        if options.phone_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            yield f"phone_region: {options.phone_region!r} is not a region code such as 'IN'"
        try:
            time_zone(options.time_zone)
        except ValueError as exc:
            yield f"time_zone: {exc}"

    def authenticate(self, request: WebhookRequest) -> None:
        authenticate(
            self.policy, headers=request.headers, query=request.query, remote=request.remote
        )

    def parse(self, request: WebhookRequest) -> Event:
        return self.make_event(
            parse_callback(
                request.body, headers=request.headers, kind=self.kind, settings=self.settings
            )
        )

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        headers = {"Content-Type": content_type}
        if self.options.tokens:
            return SignedRequest(headers=headers, query={"token": self.options.tokens[0]})
        if self.options.basic_auth:
            headers["Authorization"] = basic_authorization(self.options.basic_auth[0])
        return SignedRequest(headers=headers)
