"""A router with a console beside it, for the console's API and browser tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from attrs import define

from eventrouter.app import METRICS
from eventrouter.console import create_console_app, hash_password
from eventrouter.testing import RouterHarness

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALTUR_SECRET = "Y29uc29sZS10ZXN0cy1hbHR1ci1zZWNyZXQ="
PAYLOADS = Path(__file__).resolve().parent.parent / "examples" / "payloads"
OPERATOR_TOKEN = "operator-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
#: hashed once per test run: scrypt is slow on purpose
_HASHES = {name: hash_password(password) for name, password in PASSWORDS.items()}


def console_document(**console: Any) -> dict[str, Any]:
    """A demo source routed to a sink that always works and one that always fails."""
    return {
        "sources": {
            "demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]},
            "altur": {
                "plugin": "altur",
                "secrets": [ALTUR_SECRET],
                "secret_encoding": "base64",
                "phone_region": "MX",
            },
        },
        "sinks": {
            "good": {"plugin": "recording", "delivery": {"retry_schedule": [], "jitter": 0}},
            "flaky": {
                "plugin": "recording",
                "fail_times": 1000,
                "fail_with": "permanent",
                "delivery": {"retry_schedule": [], "jitter": 0},
            },
        },
        "routes": [
            {"sinks": ["good"], "types": ["invoice.*"]},
            {"sinks": ["good"], "sources": ["altur"]},
            {"sinks": ["flaky"], "types": ["order.*"]},
        ],
        "console": {
            "users": {
                "alice": {"password_hash": _HASHES["alice"], "role": "operator"},
                "bob": {"password_hash": _HASHES["bob"], "role": "viewer"},
            },
            "tokens": ["${CONSOLE_TOKEN}"],
            "viewer_tokens": ["${CONSOLE_VIEWER_TOKEN}"],
            **console,
        },
    }


ENVIRON = {"CONSOLE_TOKEN": OPERATOR_TOKEN, "CONSOLE_VIEWER_TOKEN": VIEWER_TOKEN}


def webhook(type_: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "timestamp": "2026-06-08T18:00:00-06:00", "data": data}


@define
class Console:
    router: RouterHarness
    client: TestClient[web.Request, web.Application]

    def bearer(self, token: str = OPERATOR_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def get_json(
        self, path: str, *, token: str = OPERATOR_TOKEN, **params: str
    ) -> tuple[int, Any]:
        async with self.client.get(path, params=params, headers=self.bearer(token)) as response:
            return response.status, await response.json()

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = OPERATOR_TOKEN,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = {**(self.bearer(token) if token else {}), **(headers or {})}
        async with self.client.post(
            path, data=json.dumps(body or {}), headers=all_headers
        ) as response:
            return response.status, await response.json()

    async def ingest(self, type_: str, **data: Any) -> str:
        status, body = await self.router.post("demo", webhook(type_, **data))
        assert status == 200, body
        return str(body["event_id"])

    async def call_ended(self, call_id: str, phone: str) -> str:
        """An Altur call.ended for ``phone`` (any format: the source normalises it)."""
        payload = json.loads((PAYLOADS / "altur-call-ended.json").read_text())
        payload["id"] = call_id
        payload["end_user"]["phone_number"] = phone
        payload["campaign_user"]["contact"] = phone
        status, body = await self.router.post("altur", payload)
        assert status == 200, body
        return str(body["event_id"])

    async def campaign_event(self, event_id: str, campaign: int) -> str:
        payload = json.loads((PAYLOADS / "altur-campaign-stalled.json").read_text())
        payload["event_id"] = event_id
        payload["data"]["campaign"]["id"] = campaign
        status, body = await self.router.post("altur", payload)
        assert status == 200, body
        return str(body["event_id"])

    async def settled(self, event_id: str, *, timeout: float = 5.0) -> None:
        """Wait until no delivery of the event is pending or in flight."""
        async with asyncio.timeout(timeout):
            while True:
                stored = await self.router.store.get_event(event_id)
                if stored and all(d.state in ("done", "dead") for d in stored.deliveries):
                    return
                await asyncio.sleep(0.02)


async def start_console(
    make_router: Callable[..., Any], document: Mapping[str, Any], *, host: str = "127.0.0.1"
) -> Console:
    router = await make_router(document, environ=ENVIRON)
    app = create_console_app(router.config, store=router.store, metrics=router.client.app[METRICS])
    client = TestClient(TestServer(app, host=host))
    await client.start_server()
    return Console(router=router, client=client)
