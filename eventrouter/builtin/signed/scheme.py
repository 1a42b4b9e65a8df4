"""HMAC signature schemes described by options: sign and verify as pure functions, sans I/O.

One :class:`Scheme` covers Stripe's ``t=...,v1=...`` list, GitHub's ``sha256=`` prefix,
Shopify's base64 body digest, Slack's ``v0:{timestamp}:{body}`` and Twilio's URL plus sorted
form parameters: where the signature is, what is signed (a :class:`Template`), the algorithm
and encodings, and the timestamp's tolerance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence

from attrs import field, frozen

from eventrouter.errors import AuthenticationError
from eventrouter.sources import any_digest_matches

__all__ = [
    "ALGORITHMS",
    "PLACEHOLDERS",
    "SECRET_ENCODINGS",
    "SIGNATURE_ENCODINGS",
    "Scheme",
    "Template",
    "decode_secret",
    "form_content",
    "sign",
    "verify",
]

ALGORITHMS = ("sha1", "sha256", "sha512")
SIGNATURE_ENCODINGS = ("hex", "base64", "base64url")
SECRET_ENCODINGS = ("utf-8", "base64", "hex", "whsec")
#: what ``signed_content`` may name besides ``{header:NAME}``
PLACEHOLDERS = ("body", "timestamp", "id", "url", "form")

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@frozen
class Template:
    """What is signed: literal text and placeholders, rendered to bytes (``{body}`` as received)."""

    #: literal bytes, or a placeholder's name (``body``, ``header:x-request-id``, ...)
    parts: tuple[bytes | str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """The template ``text`` spells; ValueError naming what is wrong with it."""
        parts: list[bytes | str] = []
        literal = ""
        position = 0
        for match in _TOKEN.finditer(text):
            literal += text[position : match.start()]
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                literal += token[0]
                continue
            if token in ("{", "}"):
                raise ValueError(f"unbalanced {token!r} (write {token * 2} for a literal one)")
            name = match.group(1).strip()
            if name.lower().startswith("header:") and name[7:].strip():
                name = "header:" + name[7:].strip().lower()
            elif name not in PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in (*PLACEHOLDERS, "header:NAME"))
                raise ValueError(f"unknown placeholder {{{name}}} (known: {known})")
            if literal:
                parts.append(literal.encode("utf-8"))
                literal = ""
            parts.append(name)
        literal += text[position:]
        if literal:
            parts.append(literal.encode("utf-8"))
        return cls(tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        """The placeholders the template uses."""
        return frozenset(part for part in self.parts if isinstance(part, str))

    @property
    def headers(self) -> tuple[str, ...]:
        """The (lower-case) names of the headers the template signs."""
        return tuple(sorted(name[7:] for name in self.names if name.startswith("header:")))

    def render(self, values: Mapping[str, bytes]) -> bytes:
        """The signed content; ``values`` holds a value for each placeholder."""
        return b"".join(part if isinstance(part, bytes) else values[part] for part in self.parts)


@frozen
class Scheme:
    """How one sender signs its requests (see docs/signed-webhooks.md for each option)."""

    header: str
    template: Template
    keys: tuple[bytes, ...] = field(repr=False)
    algorithm: str = "sha256"
    signature_encoding: str = "hex"
    prefix: str = ""
    #: the header is a ``k=v,k=v`` list and the signatures are the values of this key
    signature_key: str | None = None
    timestamp_header: str | None = None
    #: the key of the timestamp in the ``k=v`` list
    timestamp_key: str | None = None
    tolerance: float = 300.0

    @property
    def has_timestamp(self) -> bool:
        return bool(self.timestamp_header or self.timestamp_key)

    def digest(self, key: bytes, content: bytes) -> bytes:
        return hmac.new(key, content, getattr(hashlib, self.algorithm)).digest()

    def encode(self, digest: bytes) -> str:
        if self.signature_encoding == "hex":
            return digest.hex()
        if self.signature_encoding == "base64url":
            return base64.urlsafe_b64encode(digest).decode("ascii")
        return base64.b64encode(digest).decode("ascii")

    def decode(self, text: str) -> bytes | None:
        """The digest a received signature spells, or None when it spells none."""
        try:
            if self.signature_encoding == "hex":
                return bytes.fromhex(text)
            padded = text + "=" * (-len(text) % 4)
            if self.signature_encoding == "base64url":
                return base64.urlsafe_b64decode(padded.encode("ascii"))
            return base64.b64decode(padded.encode("ascii"), validate=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            return None


def decode_secret(secret: str, encoding: str) -> bytes:
    """The HMAC key ``secret`` stands for; ValueError that never quotes the secret."""
    text = secret.strip()
    try:
        if encoding == "base64":
            key = base64.b64decode(text, validate=True)
        elif encoding == "hex":
            key = bytes.fromhex(text)
        elif encoding == "whsec":
            if not text.startswith("whsec_"):
                raise ValueError("does not start with 'whsec_'")
            key = base64.b64decode(text[len("whsec_") :], validate=True)
        else:
            key = secret.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"is not valid {encoding}") from None
    except ValueError as exc:
        if "whsec_" in str(exc):
            raise
        raise ValueError(f"is not valid {encoding}") from None
    if not key:
        raise ValueError("is empty")
    return key


def form_content(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Form parameters as Twilio signs them: sorted by name, each name followed by its value
    (repeated names: each distinct value, sorted), all concatenated."""
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    ).encode("utf-8")


def _signature_fields(scheme: Scheme, header_values: Sequence[str]) -> tuple[list[str], str | None]:
    """The signatures (prefix removed) and the timestamp the signature header carries."""
    signatures: list[str] = []
    timestamp = None
    for value in header_values:
        if scheme.signature_key is None:
            tokens = value.split()
        else:
            tokens = []
            for item in value.split(","):
                name, equals, text = item.strip().partition("=")
                if not equals:
                    continue
                if name == scheme.timestamp_key:
                    timestamp = text.strip()
                elif name == scheme.signature_key:
                    tokens.append(text.strip())
        for token in tokens:
            if token[: len(scheme.prefix)].lower() == scheme.prefix.lower():
                signatures.append(token[len(scheme.prefix) :])
    return signatures, timestamp


def verify(
    scheme: Scheme,
    *,
    header_values: Sequence[str],
    timestamp_header: str | None,
    values: Mapping[str, bytes],
    now: float,
) -> None:
    """Raise AuthenticationError unless a signature in ``header_values`` signs the content.

    ``values`` holds every placeholder's value but ``{timestamp}``, which comes from the
    signature header or ``timestamp_header``. Messages name what failed, never a signature
    or a secret.
    """
    if not header_values:
        raise AuthenticationError(f"missing header {scheme.header}")
    signatures, listed_timestamp = _signature_fields(scheme, header_values)
    if not signatures:
        wanted = f"{scheme.signature_key}= signature" if scheme.signature_key else "signature"
        prefix = f" starting with {scheme.prefix!r}" if scheme.prefix else ""
        raise AuthenticationError(f"{scheme.header} holds no {wanted}{prefix}")
    values = dict(values)
    if scheme.has_timestamp:
        text = listed_timestamp if scheme.timestamp_key else timestamp_header
        where = (
            f"{scheme.timestamp_key}= in {scheme.header}"
            if scheme.timestamp_key
            else f"header {scheme.timestamp_header}"
        )
        if not text:
            raise AuthenticationError(f"missing timestamp ({where})")
        if not text.isdigit() or len(text) > 15:
            raise AuthenticationError(f"the timestamp ({where}) is not Unix seconds")
        if abs(now - int(text)) > scheme.tolerance:
            raise AuthenticationError(
                f"the timestamp ({where}) is more than {scheme.tolerance:g}s from now "
                "(a replayed request, or a clock that is wrong)"
            )
        values["timestamp"] = text.encode("ascii")
    content = scheme.template.render(values)
    expected = [scheme.digest(key, content) for key in scheme.keys]
    matched = False
    for signature in signatures:
        given = scheme.decode(signature)
        if given is not None:
            matched |= any_digest_matches(expected, given)
    if not matched:
        raise AuthenticationError(
            f"no signature in {scheme.header} matches: the signed content ("
            + ", ".join(f"{{{name}}}" for name in sorted(scheme.template.names))
            + ") or the secret differ from what the sender signed"
        )


def sign(scheme: Scheme, *, values: Mapping[str, bytes], timestamp: int) -> dict[str, str]:
    """The headers that make the content ``values`` give pass :func:`verify` (first key)."""
    if not scheme.keys:
        raise ValueError("no valid secret to sign with")
    headers: dict[str, str] = {}
    stamp = str(timestamp)
    content = scheme.template.render({**values, "timestamp": stamp.encode("ascii")})
    signature = scheme.prefix + scheme.encode(scheme.digest(scheme.keys[0], content))
    if scheme.signature_key is None:
        headers[scheme.header] = signature
    else:
        listed = [f"{scheme.timestamp_key}={stamp}"] if scheme.timestamp_key else []
        headers[scheme.header] = ",".join([*listed, f"{scheme.signature_key}={signature}"])
    if scheme.timestamp_header:
        headers[scheme.timestamp_header] = stamp
    return headers
