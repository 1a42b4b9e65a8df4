"""Altur's ``X-Altur-Signature``: HMAC-SHA256 of the body, sans I/O.

Altur's two documented versions disagree (docs/provider-reference.md, "Signature"): the
current one keys the HMAC with the base64-decoded secret, signs the payload serialised compactly and sends base64;
the older one keys it with the secret's UTF-8 bytes, signs the payload string and sends hex.
Neither says which key order or ``ensure_ascii`` the compact form uses, so a request passes
when its digest (hex or base64) matches the raw body, or failing that the body's compact
re-serialisation with either ``ensure_ascii``, under any configured key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

from eventrouter import AuthenticationError, any_digest_matches

__all__ = [
    "SECRET_ENCODINGS",
    "SIGNATURE_HEADER",
    "decode_secret",
    "digest",
    "received_digests",
    "sign",
    "signed_messages",
    "verify",
]

SIGNATURE_HEADER = "X-Altur-Signature"
SECRET_ENCODINGS = ("base64", "utf8")

_DIGEST_SIZE = hashlib.sha256().digest_size
_PREFIX = "sha256="


def decode_secret(secret: str, encoding: str) -> bytes:
    """The HMAC key a secret stands for; ValueError (never quoting the secret) when it has none."""
    if encoding == "utf8":
        try:
            key = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("is not valid UTF-8 text") from None
    elif encoding == "base64":
        try:
            key = base64.b64decode(secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                'is not valid base64 (set secret_encoding = "utf8" for a plain-text secret)'
            ) from None
    else:
        raise ValueError(f"unknown secret encoding {encoding!r}")
    if not key:
        raise ValueError("is empty")
    return key


def digest(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.new(key, message, hashlib.sha256).digest()


def sign(body: bytes, key: bytes) -> str:
    """The header value Altur's current scheme sends for ``body``: a base64 digest."""
    return base64.b64encode(digest(key, body)).decode("ascii")


def signed_messages(body: bytes) -> Iterator[bytes]:
    """What Altur may have signed, most likely first: the raw body, then its compact JSON forms."""
    yield body
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    seen = {body}
    for ensure_ascii in (True, False):
        try:
            message = json.dumps(payload, separators=(",", ":"), ensure_ascii=ensure_ascii).encode(
                "utf-8"
            )
        except (ValueError, RecursionError):
            # an escaped lone surrogate has no UTF-8 form, so Altur cannot have signed this one
            continue
        if message not in seen:
            seen.add(message)
            yield message


def received_digests(value: str) -> list[bytes]:
    """The SHA-256 digests a header value can spell: hex, base64, optionally after ``sha256=``."""
    text = value.strip()
    if text[: len(_PREFIX)].lower() == _PREFIX:
        text = text[len(_PREFIX) :]
    found = []
    with contextlib.suppress(ValueError):
        found.append(bytes.fromhex(text))
    with contextlib.suppress(binascii.Error, ValueError):
        found.append(base64.b64decode(text, validate=True))
    return [candidate for candidate in found if len(candidate) == _DIGEST_SIZE]


def verify(body: bytes, headers: Mapping[str, str], keys: Sequence[bytes]) -> None:
    """Raise AuthenticationError unless ``X-Altur-Signature`` signs ``body`` under one of ``keys``."""
    header = _header(headers.items(), SIGNATURE_HEADER)
    if not header:
        raise AuthenticationError(f"missing {SIGNATURE_HEADER} header")
    given = received_digests(header)
    if not given:
        raise AuthenticationError(f"{SIGNATURE_HEADER} is not a hex or base64 HMAC-SHA256 digest")
    for message in signed_messages(body):
        expected = [digest(key, message) for key in keys]
        matched = False
        for candidate in given:
            matched |= any_digest_matches(expected, candidate)
        if matched:
            return
    raise AuthenticationError(f"{SIGNATURE_HEADER} does not match the body")


def _header(items: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name``, whatever the case of the names in ``items``."""
    wanted = name.lower()
    for key, value in items:
        if key.lower() == wanted:
            return value
    return None
