"""Source type ``exotel``: Exotel campaign callbacks (call status, call schedule, campaign status)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

import phonenumbers
from attrs import field, frozen
from cattrs.gen import make_dict_structure_fn
from multidict import CIMultiDict, CIMultiDictProxy

from eventrouter import Secret
from eventrouter.converter import converter
from eventrouter.events import Event
from eventrouter.normalise import time_zone
from eventrouter.sources import SignedRequest, Source, WebhookRequest
from eventrouter_exotel.auth import AccessPolicy, authenticate, basic_authorization, parse_networks
from eventrouter_exotel.body import decode_body
from eventrouter_exotel.callbacks import Callback, Kind, Settings, normalise

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
    #: CIDRs of reverse proxies whose ``X-Forwarded-For`` is believed
    trusted_proxies: list[str] = field(factory=list)
    #: accept callbacks without any credential (only when neither tokens nor basic_auth is set)
    insecure: bool = False
    #: force every callback on this path to one kind instead of telling them apart by shape
    kind: str | None = None
    #: region of phone numbers written without a country code
    phone_region: str = "IN"
    #: time zone of timestamps written without an offset
    time_zone: str = "Asia/Kolkata"


_LIST_OPTIONS = ("tokens", "basic_auth", "allowed_networks", "trusted_proxies")
_TEXT_OPTIONS = ("phone_region", "time_zone")
_structure_fields = make_dict_structure_fn(ExotelOptions, converter, _cattrs_forbid_extra_keys=True)


def _structure_options(value: Any, _: type) -> ExotelOptions:
    """The project converter with the types checked first.

    The shared converter would read ``tokens = "abc"`` as ``["a", "b", "c"]`` and
    ``insecure = "false"`` as True; for an authentication option both must be errors.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table, got {type(value).__name__}")
    problems = []
    for name in _LIST_OPTIONS:
        item = value.get(name)
        if item is not None and not (
            isinstance(item, list) and all(isinstance(entry, str) for entry in item)
        ):
            problems.append(f'{name}: expected a list of strings, e.g. {name} = ["..."]')
    if "insecure" in value and not isinstance(value["insecure"], bool):
        problems.append("insecure: expected true or false (without quotes)")
    for name in (*_TEXT_OPTIONS, "kind"):
        if value.get(name) is not None and not isinstance(value[name], str):
            problems.append(f"{name}: expected a string")
    if problems:
        raise ValueError("; ".join(problems))
    return _structure_fields(value, ExotelOptions)


converter.register_structure_hook(ExotelOptions, _structure_options)


def parse_callback(
    body: bytes,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    kind: Kind | None = None,
    settings: Settings | None = None,
) -> Callback:
    """Decode and normalise one callback: PayloadError, or the callback, never anything else."""
    headers = (
        headers if isinstance(headers, CIMultiDictProxy) else CIMultiDictProxy(CIMultiDict(headers))
    )
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    payload = decode_body(body, content_type)
    return normalise(payload, body=body, kind=kind, settings=settings or Settings())


class ExotelSource(Source):
    """Authenticates by URL token, Basic credentials and/or network; parses JSON or form bodies."""

    type_name = "exotel"
    provider = "exotel"
    Options = ExotelOptions
    secret_options = ("tokens", "basic_auth")

    def __init__(self, name: str, options: ExotelOptions) -> None:
        super().__init__(name, options)
        allowed, self._bad_allowed = parse_networks(options.allowed_networks)
        trusted, self._bad_trusted = parse_networks(options.trusted_proxies)
        self.policy = AccessPolicy.build(
            tokens=options.tokens,
            basic_auth=options.basic_auth,
            allowed_networks=allowed,
            trusted_proxies=trusted,
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
        for name, invalid in (
            ("allowed_networks", self._bad_allowed),
            ("trusted_proxies", self._bad_trusted),
        ):
            values = getattr(options, name)
            for index in invalid:
                yield f"{name}[{index}]: {values[index]!r} is not an IP network such as '10.0.0.0/8'"
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
        callback = parse_callback(
            request.body, headers=request.headers, kind=self.kind, settings=self.settings
        )
        return self.make_event(
            type=callback.type,
            provider_type=callback.provider_type,
            idempotency_key=callback.idempotency_key,
            raw=callback.payload,
            time=callback.time,
            subject=callback.subject,
            data=callback.data,
        )

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        headers = {"Content-Type": content_type}
        if self.options.tokens:
            return SignedRequest(headers=headers, query={"token": self.options.tokens[0]})
        if self.options.basic_auth:
            headers["Authorization"] = basic_authorization(self.options.basic_auth[0])
        return SignedRequest(headers=headers)
