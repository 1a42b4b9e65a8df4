"""Source type ``signed``: any HMAC-signed webhook, described by options or a preset."""

from __future__ import annotations

import hashlib
import secrets as random_tokens
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import phonenumbers
from attrs import field, frozen
from multidict import CIMultiDict

from eventrouter.builtin.signed.mapping import (
    CallMapping,
    CampaignMapping,
    ContactMapping,
    EventMapping,
    Expression,
    Values,
    compile_table,
    evaluate,
    header_only,
)
from eventrouter.builtin.signed.presets import PRESETS
from eventrouter.builtin.signed.scheme import (
    ALGORITHMS,
    SECRET_ENCODINGS,
    SIGNATURE_ENCODINGS,
    Scheme,
    Template,
    decode_secret,
    form_content,
    sign,
    verify,
)
from eventrouter.converter import Duration, Secret, converter
from eventrouter.errors import AuthenticationError, PayloadError
from eventrouter.events import Event, EventData
from eventrouter.payload import json_object, time_zone
from eventrouter.sources import SignedRequest, Source, WebhookRequest

__all__ = ["SignedOptions", "SignedSource"]

_FORM = "application/x-www-form-urlencoded"


@frozen
class SignedOptions:
    """One ``[sources.NAME]`` table with ``plugin = "signed"``; unset options come from the
    preset, then from the defaults docs/signed-webhooks.md lists."""

    #: shared secrets; a request signed with any of them passes (rotation); the first signs
    secrets: list[Secret] = field(factory=list, repr=False)
    preset: str | None = None
    provider: str | None = None
    signature_header: str | None = None
    signature_prefix: str | None = None
    signature_key: str | None = None
    algorithm: str | None = None
    signature_encoding: str | None = None
    signed_content: str | None = None
    secret_encoding: str | None = None
    timestamp_header: str | None = None
    timestamp_key: str | None = None
    tolerance: Duration | None = None
    #: the public URL the provider posts to, for ``{url}`` (the request's query is appended)
    url: str | None = None
    event: EventMapping | None = None
    #: provider type -> event type; others become ``<provider>.<provider type>``
    event_types: dict[str, str] | None = None
    contact: ContactMapping | None = None
    call: CallMapping | None = None
    campaign: CampaignMapping | None = None
    #: name -> expression: kept in the event's ``data.attributes``
    attributes: dict[str, str] | None = None
    #: ISO 3166 region of phone numbers sent without a leading +
    phone_region: str | None = None
    #: IANA time zone of timestamps sent without an offset
    time_zone: str | None = None


def _over(mine: Any, preset: Any) -> Any:
    """``mine`` laid over ``preset``: tables and dicts key by key, anything else whole."""
    if mine is None:
        return preset
    if preset is None:
        return mine
    if isinstance(mine, dict):
        return {**preset, **mine}
    if attrs.has(type(mine)):
        return attrs.evolve(
            preset,
            **{k: v for k, v in attrs.asdict(mine, recurse=False).items() if v is not None},
        )
    return mine


def with_preset(options: SignedOptions) -> SignedOptions:
    """``options`` with what they leave unset filled from their preset (KeyError: no such preset)."""
    if options.preset is None:
        return options
    preset = converter.structure(PRESETS[options.preset], SignedOptions)
    merged = {
        a.name: _over(getattr(options, a.name), getattr(preset, a.name))
        for a in attrs.fields(SignedOptions)
        if a.name != "secrets"
    }
    return SignedOptions(secrets=options.secrets, **merged)


@frozen
class _Parts:
    """The normalised parts a source maps, compiled."""

    contact: dict[str, Expression] = field(factory=dict)
    call: dict[str, Expression] = field(factory=dict)
    campaign: dict[str, Expression] = field(factory=dict)
    attributes: dict[str, Expression] = field(factory=dict)


class SignedSource(Source):
    """Verifies an HMAC signature as its options describe it, and maps the event by JMESPath."""

    type_name = "signed"
    provider = "signed"
    Options = SignedOptions
    secret_options = ("secrets",)

    def __init__(self, name: str, options: SignedOptions) -> None:
        super().__init__(name, options)
        self._problems: list[str] = []
        if options.preset is not None and options.preset not in PRESETS:
            self._problem("preset", f"unknown preset {options.preset!r}", known=PRESETS)
            options = attrs.evolve(options, preset=None)
        resolved = with_preset(options)
        self.resolved = resolved
        self.provider = resolved.provider or name
        self._naive_tz: tzinfo = UTC
        if resolved.time_zone:
            try:
                self._naive_tz = time_zone(resolved.time_zone)
            except ValueError as exc:
                self._problems.append(f"time_zone: {exc}")
        self._region = resolved.phone_region.upper() if resolved.phone_region else None
        if self._region is not None and self._region not in phonenumbers.SUPPORTED_REGIONS:
            self._problems.append(
                f"phone_region: unknown region {resolved.phone_region!r} "
                "(use an ISO 3166 code such as 'US')"
            )
        self._event = self._compile("event", resolved.event or EventMapping())
        self._parts = _Parts(
            contact=self._compile("contact", resolved.contact),
            call=self._compile("call", resolved.call),
            campaign=self._compile("campaign", resolved.campaign),
            attributes=self._compile_dict("attributes", resolved.attributes or {}),
        )
        self._event_types = dict(resolved.event_types or {})
        self.scheme = self._scheme(resolved)

    # -- options ---------------------------------------------------------------------------

    def _problem(self, option: str, message: str, *, known: Iterable[str] = ()) -> None:
        choices = ", ".join(repr(k) for k in known)
        self._problems.append(
            f"{option}: {message}" + (f" (expected one of {choices})" if choices else "")
        )

    def _compile(self, table: str, mapping: Any) -> dict[str, Expression]:
        if mapping is None:
            return {}
        try:
            return compile_table(mapping)
        except ValueError as exc:
            self._problems.append(f"{table}.{exc}")
            return {}

    def _compile_dict(self, table: str, expressions: Mapping[str, str]) -> dict[str, Expression]:
        compiled = {}
        for name, text in expressions.items():
            try:
                compiled[name] = Expression.compile(text)
            except ValueError as exc:
                self._problems.append(f"{table}.{name}: {exc}")
        return compiled

    def _scheme(self, o: SignedOptions) -> Scheme:
        algorithm = o.algorithm or "sha256"
        if algorithm not in ALGORITHMS:
            self._problem("algorithm", f"unknown algorithm {algorithm!r}", known=ALGORITHMS)
            algorithm = "sha256"
        encoding = o.signature_encoding or "hex"
        if encoding not in SIGNATURE_ENCODINGS:
            self._problem(
                "signature_encoding", f"unknown encoding {encoding!r}", known=SIGNATURE_ENCODINGS
            )
            encoding = "hex"
        secret_encoding = o.secret_encoding or "utf-8"
        keys: list[bytes] = []
        if secret_encoding not in SECRET_ENCODINGS:
            self._problem(
                "secret_encoding",
                f"unknown encoding {secret_encoding!r}",
                known=SECRET_ENCODINGS,
            )
        else:
            for index, secret in enumerate(o.secrets):
                try:
                    keys.append(decode_secret(secret, secret_encoding))
                except ValueError as exc:
                    self._problems.append(f"secrets[{index}]: {exc}")
        if not o.secrets:
            self._problems.append("secrets: at least one secret is required")
        if not o.signature_header:
            self._problems.append(
                'signature_header: required (the header holding the signature), or set preset = "..."'
            )
        try:
            template = Template.parse(o.signed_content or "{body}")
        except ValueError as exc:
            self._problems.append(f"signed_content: {exc}")
            template = Template.parse("{body}")
        self._check_template(o, template)
        tolerance = 300.0 if o.tolerance is None else float(o.tolerance)
        if tolerance <= 0:
            self._problems.append("tolerance: must be more than 0 (default '5m')")
        return Scheme(
            header=o.signature_header or "",
            template=template,
            keys=tuple(keys),
            algorithm=algorithm,
            signature_encoding=encoding,
            prefix=o.signature_prefix or "",
            signature_key=o.signature_key or None,
            timestamp_header=o.timestamp_header or None,
            timestamp_key=o.timestamp_key or None,
            tolerance=tolerance,
        )

    def _check_template(self, o: SignedOptions, template: Template) -> None:
        names = template.names
        # the header is split on whitespace (plain) or on ',' and '=' (k=v list)
        if o.signature_key is None and any(ch.isspace() for ch in o.signature_prefix or ""):
            self._problems.append("signature_prefix: cannot hold whitespace")
        for option in ("signature_key", "timestamp_key", "signature_prefix"):
            value = getattr(o, option) or ""
            if o.signature_key and (
                "," in value or (option != "signature_prefix" and "=" in value)
            ):
                self._problems.append(f"{option}: cannot hold ',' or '=' in a k=v list")
        if not names & {"body", "form"}:
            self._problems.append(
                "signed_content: must sign {body} or {form}, or anyone could change the payload"
            )
        if o.timestamp_key and not o.signature_key:
            self._problems.append(
                "timestamp_key: needs signature_key (the timestamp is read from a k=v list)"
            )
        if o.timestamp_key and o.timestamp_header:
            self._problems.append(
                "timestamp_header: set timestamp_header or timestamp_key, not both"
            )
        has_timestamp = bool(o.timestamp_header or o.timestamp_key)
        if "timestamp" in names and not has_timestamp:
            self._problems.append(
                "signed_content: {timestamp} needs timestamp_header or timestamp_key"
            )
        if has_timestamp and "timestamp" not in names:
            self._problems.append(
                "signed_content: must sign {timestamp} when a timestamp is read "
                "(an unsigned timestamp protects against nothing)"
            )
        if "url" in names:
            if not o.url:
                self._problems.append(
                    "url: required when signed_content uses {url} (the public URL the provider "
                    "posts to, e.g. https://hooks.example.com/hooks/twilio)"
                )
            else:
                parts = urlsplit(o.url)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    self._problems.append(f"url: expected an absolute http(s) URL, got {o.url!r}")
                elif parts.query or parts.fragment:
                    self._problems.append(
                        "url: leave out the query string (each request's own is appended)"
                    )
        if "id" in names and self._id_header() is None:
            self._problems.append(
                "signed_content: {id} needs event.id = \"header('NAME')\" "
                "(the body is not read before its signature is checked)"
            )

    def _id_header(self) -> str | None:
        expression = self._event.get("id")
        return header_only(expression) if expression is not None else None

    def check(self) -> Iterable[str]:
        return list(self._problems)

    # -- requests --------------------------------------------------------------------------

    def _url(self, query: Iterable[tuple[str, str]]) -> str:
        url = self.resolved.url or ""
        pairs = list(query)
        return f"{url}?{urlencode(pairs)}" if pairs else url

    def _values(
        self, body: bytes, headers: Mapping[str, str], query: Iterable[tuple[str, str]]
    ) -> dict[str, bytes]:
        """Every placeholder's value but ``{timestamp}``; AuthenticationError when a signed
        header is missing or the form cannot be read."""
        names = self.scheme.template.names
        values = {"body": body}
        if "url" in names:
            values["url"] = self._url(query).encode("utf-8")
        if "form" in names:
            try:
                pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise AuthenticationError(
                    "the body is not form-encoded UTF-8, so its signature cannot be checked"
                ) from None
            values["form"] = form_content(pairs)
        if "id" in names:
            values["id"] = self._header_value(headers, self._id_header() or "")
        for name in self.scheme.template.headers:
            values[f"header:{name}"] = self._header_value(headers, name)
        return values

    @staticmethod
    def _header_value(headers: Mapping[str, str], name: str) -> bytes:
        value = headers.get(name)
        if value is None:
            raise AuthenticationError(f"missing header {name} (it is signed)")
        return value.encode("utf-8")

    def authenticate(self, request: WebhookRequest) -> None:
        values = self._values(request.body, request.headers, request.query.items())
        verify(
            self.scheme,
            header_values=request.headers.getall(self.scheme.header, []),
            timestamp_header=(
                request.headers.get(self.scheme.timestamp_header)
                if self.scheme.timestamp_header
                else None
            ),
            values=values,
            now=time.time(),
        )

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        headers: dict[str, str] = {"Content-Type": content_type}
        id_header = self._id_header()
        if id_header is not None:
            headers[id_header] = f"msg_{random_tokens.token_hex(12)}"
        known = CIMultiDict(headers)
        missing = [name for name in self.scheme.template.headers if name not in known]
        if missing:
            raise NotImplementedError(
                f"source {self.name!r} signs header {missing[0]}, whose value `send` cannot know"
            )
        values = self._values(body, known, ())
        headers.update(sign(self.scheme, values=values, timestamp=int(time.time())))
        return SignedRequest(headers=headers)

    def parse(self, request: WebhookRequest) -> Event:
        if request.content_type == _FORM:
            document: Any = _form_object(request.body)
        else:
            document = json_object(request.body)
        headers = request.headers
        found = evaluate(self._event, document, headers)
        values = self._read(found, "event")
        provider_type = values.text("type")
        if provider_type is None:
            if "type" in self._event:
                raise PayloadError(
                    f"no event type: {self._event['type'].text!r} found nothing", field="event.type"
                )
            provider_type = "webhook"
        idempotency_key = (
            values.text("idempotency_key")
            or values.text("id")
            or "sha256:" + hashlib.sha256(request.body).hexdigest()
        )
        event_time = values.time("time")
        data = EventData(
            contact=ContactMapping.build(
                self._read(evaluate(self._parts.contact, document, headers), "contact")
            ),
            call=CallMapping.build(
                self._read(evaluate(self._parts.call, document, headers), "call")
            ),
            campaign=CampaignMapping.build(
                self._read(evaluate(self._parts.campaign, document, headers), "campaign")
            ),
            attributes=evaluate(self._parts.attributes, document, headers),
        )
        return self.make_event(
            type=self._event_types.get(provider_type) or f"{self.provider}.{provider_type}",
            provider_type=provider_type,
            idempotency_key=idempotency_key,
            time=event_time,
            subject=values.text("subject"),
            raw=document,
            data=data,
        )

    def _read(self, found: Mapping[str, Any], prefix: str) -> Values:
        return Values(found, prefix, self._naive_tz, self._region)


def _form_object(body: bytes) -> dict[str, Any]:
    """Form parameters as a JSON object: a repeated name holds the list of its values."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"form body is not valid UTF-8 (byte {exc.start})") from None
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            previous = result[name]
            result[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[name] = value
    return result
