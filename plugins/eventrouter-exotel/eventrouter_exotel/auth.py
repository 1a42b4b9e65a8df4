"""Who may post Exotel callbacks: a token or Basic credentials in the URL, from allowed networks.

Exotel signs nothing, so the only secret a callback can carry is one the user put in the
callback URL: ``?token=...`` or ``https://user:password@host/...`` (sent as
``Authorization: Basic``). Secrets are compared as SHA-256 digests in constant time, so
neither their content nor their length leaks through timing.

The network is checked against :attr:`WebhookRequest.remote`, the client the core resolved
through ``[server] trusted_proxies``: this module reads no ``X-Forwarded-For`` of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from attrs import frozen
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from eventrouter import AuthenticationError, ForbiddenError, any_digest_matches

__all__ = [
    "AccessPolicy",
    "IPNetwork",
    "authenticate",
    "basic_authorization",
    "check_credentials",
    "check_network",
    "parse_networks",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
Query = Mapping[str, str] | Iterable[tuple[str, str]]


def _digest(value: str | bytes) -> bytes:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).digest()


@frozen
class AccessPolicy:
    """What a request must show to pass: secrets (as digests) and the networks it may come from.

    No token and no Basic credential means the source was configured ``insecure``.
    """

    token_digests: tuple[bytes, ...] = ()
    basic_digests: tuple[bytes, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        tokens: Iterable[str] = (),
        basic_auth: Iterable[str] = (),
        allowed_networks: Iterable[IPNetwork] = (),
    ) -> AccessPolicy:
        """A policy from the secrets in clear (only their digests are kept)."""
        return cls(
            token_digests=tuple(_digest(token) for token in tokens),
            basic_digests=tuple(_digest(credential) for credential in basic_auth),
            allowed_networks=tuple(allowed_networks),
        )

    @property
    def requires_credentials(self) -> bool:
        return bool(self.token_digests or self.basic_digests)


def parse_networks(values: Iterable[str]) -> tuple[tuple[IPNetwork, ...], tuple[int, ...]]:
    """CIDRs (a bare address is a /32 or /128) and the positions of the values that are not."""
    networks: list[IPNetwork] = []
    invalid: list[int] = []
    for index, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            invalid.append(index)
    return tuple(networks), tuple(invalid)


def _headers(value: Headers) -> CIMultiDictProxy[str]:
    if isinstance(value, CIMultiDictProxy):
        return value
    return CIMultiDictProxy(CIMultiDict(value))


def _query(value: Query) -> MultiDictProxy[str]:
    if isinstance(value, MultiDictProxy):
        return value
    return MultiDictProxy(MultiDict(value))


def check_network(policy: AccessPolicy, *, remote: str | None) -> None:
    """ForbiddenError unless the client address is in ``allowed_networks`` (empty: any).

    ``remote`` is the client as the core tells it: a bare IPv4 or IPv6 address, behind a proxy
    in ``[server] trusted_proxies`` the one its ``X-Forwarded-For`` names. It is already in
    its final form, so the standard library's parser is all it takes.
    """
    if not policy.allowed_networks:
        return
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        raise ForbiddenError("the client address cannot be determined") from None
    if not any(address in network for network in policy.allowed_networks):
        raise ForbiddenError(f"client address {address} is not in allowed_networks")


def _basic_credentials(authorization: str) -> bytes | None:
    """The ``user:password`` bytes of a Basic header; None for another scheme."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise AuthenticationError("malformed Basic Authorization header") from None


def check_credentials(policy: AccessPolicy, *, headers: Headers, query: Query) -> None:
    """AuthenticationError unless the query ``token`` or the Basic credentials are configured ones."""
    if not policy.requires_credentials:
        return
    token = _query(query).get("token") if policy.token_digests else None
    authorization = _headers(headers).get("Authorization", "")
    credentials = _basic_credentials(authorization) if policy.basic_digests else None
    matched = False
    if token is not None:
        matched |= any_digest_matches(policy.token_digests, _digest(token))
    if credentials is not None:
        matched |= any_digest_matches(policy.basic_digests, _digest(credentials))
    if matched:
        return
    if token is None and credentials is None:
        wanted = []
        if policy.token_digests:
            wanted.append("a token query parameter (?token=...)")
        if policy.basic_digests:
            wanted.append("Basic credentials (https://user:password@host/...)")
        raise AuthenticationError(
            f"missing credentials: the callback URL needs {' or '.join(wanted)}"
        )
    raise AuthenticationError("invalid token" if token is not None else "invalid Basic credentials")


def authenticate(
    policy: AccessPolicy, *, headers: Headers, query: Query, remote: str | None
) -> None:
    """Network first (403), then credentials (401): an outsider learns nothing about tokens."""
    check_network(policy, remote=remote)
    check_credentials(policy, headers=headers, query=query)


def basic_authorization(credential: str) -> str:
    """The ``Authorization`` header value for a ``user:password`` credential."""
    return "Basic " + base64.b64encode(credential.encode("utf-8")).decode("ascii")
