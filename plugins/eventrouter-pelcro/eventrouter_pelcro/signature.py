"""Pelcro's ``X-Pelcro-Hmac-SHA256`` header: base64 HMAC-SHA256 of the raw body, sans I/O.

Pelcro does not document the signed message; like Shopify-style senders, the signature is taken
over the exact request body with the secret's UTF-8 bytes as the key (the decision in
docs/provider-reference.md, "Pelcro").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from eventrouter import AuthenticationError, any_digest_matches

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Pelcro-Hmac-SHA256"

_DIGEST_SIZE = hashlib.sha256().digest_size


def _digest(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def sign(body: bytes, secret: str) -> str:
    """The ``X-Pelcro-Hmac-SHA256`` value Pelcro sends for ``body`` signed with ``secret``."""
    return base64.b64encode(_digest(body, secret)).decode("ascii")


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name``, whatever the case of its name in ``headers``."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    wanted = name.casefold()
    return [value for key, value in headers.items() if key.casefold() == wanted]


def _decoded(value: str) -> bytes:
    """The 32 digest bytes a header value encodes; AuthenticationError when it encodes none."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != _DIGEST_SIZE:
        raise AuthenticationError(f"{SIGNATURE_HEADER} is not a base64 HMAC-SHA256 digest")
    return digest


def verify(body: bytes, headers: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Raise AuthenticationError unless ``headers`` carry a signature of ``body`` by one of ``secrets``.

    Every secret is tried (rotation) and every comparison is constant-time.
    """
    values = _header_values(headers, SIGNATURE_HEADER)
    if not values:
        raise AuthenticationError(f"missing {SIGNATURE_HEADER} header")
    if len(values) > 1:
        raise AuthenticationError(f"more than one {SIGNATURE_HEADER} header")
    given = _decoded(values[0])
    expected = [_digest(body, secret) for secret in secrets]
    if not expected:
        raise AuthenticationError("no secret is configured to verify the signature")
    if not any_digest_matches(expected, given):
        raise AuthenticationError(
            f"{SIGNATURE_HEADER} does not match the body (wrong secret, or the body was altered)"
        )
