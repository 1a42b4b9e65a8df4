"""Console password hashes: the standard library's scrypt (memory-hard, no extra dependency).

A hash reads ``scrypt$N$r$p$salt$key`` (salt and key in base64), so the cost can be raised
later without invalidating the hashes already in config files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password"]

#: 2**14 rounds of 8 blocks: 16 MiB and tens of milliseconds per try (OWASP's scrypt minimum)
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def hash_password(password: str) -> str:
    """A new salted hash of ``password`` for ``[console.users.NAME] password_hash``."""
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, _N, _R, _P)
    encoded = (base64.b64encode(part).decode() for part in (salt, key))
    return "$".join(("scrypt", str(_N), str(_R), str(_P), *encoded))


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (False for a malformed hash, never an error)."""
    try:
        scheme, n, r, p, salt, key = hashed.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        actual = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
