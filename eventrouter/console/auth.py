"""Who is asking: login sessions (cookies), bearer tokens, roles and CSRF tokens.

Sessions live in this process's memory (a restart logs everyone out): nothing about them is
stored or signed, so there is no key to manage. A session carries its CSRF token; every POST
made with a session cookie must send it back (form field ``csrf_token`` or header
``X-CSRF-Token``). A bearer token is not sent by a browser on its own, so requests made with
one need no CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from attrs import define, field, frozen

from eventrouter.config import ConsoleConfig
from eventrouter.store import CONSOLE_ACTION

__all__ = [
    "COOKIE",
    "Identity",
    "Sessions",
    "authenticate",
    "check_csrf",
    "require_operator",
]

COOKIE = "eventrouter_console"
#: sessions kept at most; the oldest are dropped beyond it (a flood of logins cannot fill memory)
MAX_SESSIONS = 10_000


@frozen
class Identity:
    """A user (or token) and its role; ``name`` is what the logs and attempts record."""

    name: str
    role: str
    csrf: str | None = None

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    @property
    def trigger(self) -> str:
        """What an action by this identity is recorded as (``console:alice``): the start of the
        action ids its replays and retries leave on deliveries (their attempts' trigger is then
        ``console``)."""
        return f"{CONSOLE_ACTION}{self.name}"


@define
class _Session:
    identity: Identity
    expires: float


@define
class Sessions:
    """Logged-in sessions by random id."""

    lifetime: float
    _by_id: dict[str, _Session] = field(factory=dict, init=False)

    def create(self, name: str, role: str) -> str:
        if len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        session_id = secrets.token_urlsafe(32)
        identity = Identity(name=name, role=role, csrf=secrets.token_urlsafe(32))
        self._by_id[session_id] = _Session(identity, time.monotonic() + self.lifetime)
        return session_id

    def get(self, session_id: str | None) -> Identity | None:
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        if session.expires < time.monotonic():
            del self._by_id[session_id or ""]
            return None
        return session.identity

    def drop(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


def _token_identity(config: ConsoleConfig, header: str) -> Identity | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    found = None
    # every token is compared (in constant time), so timing tells nothing about which matched
    for role, tokens in (("operator", config.tokens), ("viewer", config.viewer_tokens)):
        for index, known in enumerate(tokens, start=1):
            if hmac.compare_digest(token.strip().encode(), known.encode()) and found is None:
                prefix = "token" if role == "operator" else "viewer-token"
                found = Identity(name=f"{prefix}-{index}", role=role)
    return found


def authenticate(
    request: web.Request, config: ConsoleConfig, sessions: Sessions
) -> tuple[Identity | None, str | None]:
    """The identity behind ``request`` (None: nobody), and a session id to set as a new cookie.

    Without any configured credential (a console on loopback only) everyone is the operator
    ``local``, with a session of its own for the CSRF token.
    """
    header = request.headers.get("Authorization")
    if header is not None:
        return _token_identity(config, header), None
    session_id = request.cookies.get(COOKIE)
    identity = sessions.get(session_id)
    if identity is not None or not config.open_access:
        return identity, None
    new_id = sessions.create("local", "operator")
    return sessions.get(new_id), new_id


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, session_id: str, config: ConsoleConfig
) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over TLS (or when configured)."""
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure or config.secure_cookies,
        path="/",
        max_age=int(config.session_lifetime),
    )


async def check_csrf(request: web.Request, identity: Identity) -> bool:
    """Whether a POST carries its session's CSRF token (requests with a bearer token need none)."""
    if identity.csrf is None:
        return True
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = str((await request.post()).get("csrf_token", ""))
    return sent is not None and hmac.compare_digest(sent.encode(), identity.csrf.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_operator(handler: Handler) -> Handler:
    """Mark a view as an action: only operators may call it (the middleware checks)."""
    handler.__dict__["operator_only"] = True
    return handler
