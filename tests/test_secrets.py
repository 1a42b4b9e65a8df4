"""Secrets never appear in logs, archives, error bodies, metrics or the CLI's listings.

A real ``eventrouter serve`` process (``--log-format json --log-level debug``) runs all four
sources (standard-webhooks, altur, exotel, pelcro), the csv archive and three sinks that fail
against a local endpoint which echoes the credentials it is sent back in its error bodies: an
``http`` sink whose headers hold a token, a Slack incoming webhook (the URL is the secret) and
the HubSpot CRM sink (a private-app token). Valid and invalid requests go in, among them a
Pelcro ``campaign.triggered`` carrying a ``magic_link_token``, bad signatures and an Exotel
token in the query string. Then every output is searched for every secret value: the log file,
every archive file, every HTTP answer body, /metrics, ``eventrouter events --json`` (and its
text form) and ``eventrouter dlq list`` (JSON and text).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from eventrouter.config import load_config
from eventrouter.plugins import Registry, create_plugin_manager
from tests.processes import WHSEC, EventRouterProcess, free_port, run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

ALTUR_SECRET = base64.b64encode(b"altur-signing-secret-9f8e7d").decode()
EXOTEL_TOKEN = "exo-token-5b1c9d2e7f3a4b6c8d0e"
#: a token whose characters a URL carries percent-encoded (the debug access log once kept them)
EXOTEL_ENCODED_TOKEN = "exo/tok+en 7d3e é~=9a0b1c2d"
EXOTEL_PASSWORD = "exo-basic-password-71c3"
PELCRO_SECRET = "pelcro-signing-secret-0c4d"
MAGIC_LINK_TOKEN = "MLT-5f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c"
HTTP_SINK_TOKEN = "fwd-bearer-token-2b7e151628aed2a6"
SLACK_SECRET_PATH = "T00000000/B00000000/XXslackXXsecretXXpath42"
HUBSPOT_TOKEN = "pat-na1-00000000-1111-2222-3333-444444444444"


class Remote:
    """The sinks' endpoints, all failing and echoing what they were sent in their error bodies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[tuple[str, str]] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def echo(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append((request.path, request.headers.get("Authorization", "")))
        if request.path.startswith("/hubspot"):
            # HubSpot's own 401 names the problem; this one also echoes the credential
            return web.json_response(
                {
                    "status": "error",
                    "message": f"Authentication credentials not found: {request.headers.get('Authorization')}",
                    "category": "INVALID_AUTHENTICATION",
                },
                status=401,
            )
        authorization = request.headers.get("Authorization", "")
        return web.Response(
            status=500,
            # the whole header, and the bare credential inside it
            text=f"rejected {request.path} with {authorization}; token {authorization[7:]}",
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def write_config(directory: Path, remote: Remote) -> Path:
    config = directory / "eventrouter.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"

[store]
path = "eventrouter.db"

[sources.demo]
plugin = "standard-webhooks"
secrets = ["${{DEMO_SECRET}}"]

[sources.altur]
plugin = "altur"
secrets = ["${{ALTUR_SECRET}}"]

[sources.exotel]
plugin = "exotel"
tokens = ["{EXOTEL_TOKEN}", "{EXOTEL_ENCODED_TOKEN}"]
basic_auth = ["exotel:{EXOTEL_PASSWORD}"]

[sources.pelcro]
plugin = "pelcro"
secrets = ["${{PELCRO_SECRET}}"]

[sinks.archive]
plugin = "csv"
directory = "archive"

[sinks.forward]
plugin = "http"
url = "{remote.url}/forward"
headers = {{ Authorization = "Bearer {HTTP_SINK_TOKEN}" }}
delivery = {{ retry_schedule = ["100ms", "100ms"], jitter = 0, circuit_failures = 0 }}

[sinks.alerts]
plugin = "slack"
webhook_url = "{remote.url}/slack/services/{SLACK_SECRET_PATH}"
min_interval = "10ms"
delivery = {{ retry_schedule = ["100ms", "100ms"], jitter = 0, circuit_failures = 0 }}

[sinks.crm]
plugin = "crm"
token = "${{HUBSPOT_TOKEN}}"
api_base = "{remote.url}/hubspot"
batch_window = "10ms"
delivery = {{ retry_schedule = ["100ms", "100ms"], jitter = 0 }}

[[routes]]
sinks = ["archive", "forward", "alerts", "crm"]
"""
    )
    return config


ENVIRONMENT = {
    "DEMO_SECRET": WHSEC,
    "ALTUR_SECRET": ALTUR_SECRET,
    "PELCRO_SECRET": PELCRO_SECRET,
    "HUBSPOT_TOKEN": HUBSPOT_TOKEN,
}


def secret_values(remote: Remote) -> dict[str, str]:
    """Every secret, and the parts of each that are secret on their own."""
    return {
        "standard-webhooks secret": WHSEC,
        "standard-webhooks key": WHSEC.removeprefix("whsec_"),
        "altur secret": ALTUR_SECRET,
        "exotel token": EXOTEL_TOKEN,
        "exotel token, as sent": EXOTEL_ENCODED_TOKEN,
        "exotel token, percent-encoded": quote(EXOTEL_ENCODED_TOKEN, safe=""),
        "exotel token, lower-case hex": quote(EXOTEL_ENCODED_TOKEN, safe="").lower(),
        "exotel token, form-encoded": quote_plus(EXOTEL_ENCODED_TOKEN, safe=""),
        "exotel basic password": EXOTEL_PASSWORD,
        "exotel basic credentials": base64.b64encode(f"exotel:{EXOTEL_PASSWORD}".encode()).decode(),
        "pelcro secret": PELCRO_SECRET,
        "pelcro magic link token": MAGIC_LINK_TOKEN,
        "http sink token": HTTP_SINK_TOKEN,
        "slack webhook url": f"{remote.url}/slack/services/{SLACK_SECRET_PATH}",
        "slack webhook path": SLACK_SECRET_PATH,
        "hubspot token": HUBSPOT_TOKEN,
    }


def fixture(plugin: str, name: str) -> dict[str, Any]:
    path = ROOT / "plugins" / f"eventrouter-{plugin}" / "tests" / "fixtures" / name
    return json.loads(path.read_text())


# The JSON log at debug level once carried the Exotel query token in clear: aiohttp's access
# log passes the request line as an ``extra`` field (``first_request_line``), which the log
# filter did not mask; this test found it.
async def test_no_secret_leaks_into_any_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRONMENT.items():  # for the server and the CLI commands alike
        monkeypatch.setenv(name, value)
    remote = Remote()
    await remote.start()
    config = write_config(tmp_path, remote)
    loaded = load_config(config, Registry.collect(create_plugin_manager()), environ=ENVIRONMENT)
    sources = loaded.sources
    server = EventRouterProcess(
        config=config, args=["--log-format", "json", "--log-level", "debug"]
    ).start()
    answers: list[str] = []
    accepted: list[str] = []

    async def post(
        session: aiohttp.ClientSession,
        source: str,
        body: bytes,
        *,
        signed: bool = True,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> int:
        signature = sources[source].sign(body, content_type=content_type) if signed else None
        all_headers = {"Content-Type": content_type, **(signature.headers if signature else {})}
        async with session.post(
            f"{server.url}/hooks/{source}",
            data=body,
            headers={**all_headers, **(headers or {})},
            params={**(signature.query if signature else {}), **(query or {})},
        ) as answer:
            text = await answer.text()
            answers.append(text)
            if answer.status == 200 and json.loads(text)["status"] == "accepted":
                accepted.append(json.loads(text)["event_id"])
            return answer.status

    try:
        async with aiohttp.ClientSession() as session:
            demo = json.dumps(
                {"type": "invoice.paid", "timestamp": "2026-06-08T18:00:00Z", "data": {"n": 1}}
            ).encode()
            altur = fixture("altur", "on_call_end.json")
            altur["event_id"] = f"evt-{uuid.uuid4().hex}"
            exotel = fixture("exotel", "call_status_completed.json")
            triggered = fixture("pelcro", "campaign_triggered.json")
            triggered["data"]["magic_link_token"] = MAGIC_LINK_TOKEN
            triggered["data"]["subscription"]["magicLinkToken"] = MAGIC_LINK_TOKEN
            pelcro = json.dumps(triggered).encode()

            # valid requests: every source, the Exotel token in the query and in Basic auth
            assert await post(session, "demo", demo) == 200
            assert await post(session, "altur", json.dumps(altur).encode()) == 200
            assert await post(session, "exotel", json.dumps(exotel).encode()) == 200
            for encoded in (
                quote_plus(EXOTEL_ENCODED_TOKEN, safe=""),
                quote(EXOTEL_ENCODED_TOKEN, safe="").lower(),
            ):
                exotel["call_sid"] = f"call_encoded_{len(accepted)}"
                url = f"{server.url}/hooks/exotel?token={encoded}"
                async with session.post(
                    URL(url, encoded=True),
                    data=json.dumps(exotel).encode(),
                    headers={"Content-Type": "application/json"},
                ) as answer:
                    answers.append(await answer.text())
                    assert answer.status == 200, answers[-1]
                    accepted.append(json.loads(answers[-1])["event_id"])
            exotel["call_sid"] = "call_basic_auth"
            basic = "Basic " + base64.b64encode(f"exotel:{EXOTEL_PASSWORD}".encode()).decode()
            assert (
                await post(
                    session,
                    "exotel",
                    json.dumps(exotel).encode(),
                    signed=False,
                    headers={"Authorization": basic},
                )
                == 200
            )
            assert await post(session, "pelcro", pelcro) == 200
            assert await post(session, "pelcro", pelcro) == 200  # a replay: duplicate

            # invalid requests: bad signatures, signatures of other bodies, bad payloads
            forged = {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time()))}
            forged["webhook-signature"] = "v1,Zm9yZ2Vk"
            assert await post(session, "demo", demo, signed=False, headers=forged) == 401
            assert await post(session, "demo", b"{not json", signed=True) == 400
            wrong = {"X-Altur-Signature": "sha256=" + "00" * 32}
            assert (
                await post(
                    session, "altur", json.dumps(altur).encode(), signed=False, headers=wrong
                )
                == 401
            )
            signature = sources["pelcro"].sign(b'{"type": "other"}')
            assert (
                await post(session, "pelcro", pelcro, signed=False, headers=signature.headers)
                == 401
            )
            half = pelcro[: len(pelcro) // 2]
            assert await post(session, "pelcro", half) == 400  # the token is in the half sent
            assert (
                await post(
                    session,
                    "exotel",
                    b"<xml/>",
                    content_type="application/xml",
                    query={"token": EXOTEL_TOKEN},
                    signed=False,
                )
                == 400
            )
            assert (
                await post(
                    session,
                    "exotel",
                    json.dumps(exotel).encode(),
                    signed=False,
                    query={"token": EXOTEL_TOKEN[:-1] + "X"},
                )
                == 401
            )
            wrong_basic = (
                "Basic " + base64.b64encode(f"exotel:{EXOTEL_PASSWORD}x".encode()).decode()
            )
            assert (
                await post(
                    session,
                    "exotel",
                    json.dumps(exotel).encode(),
                    signed=False,
                    headers={"Authorization": wrong_basic},
                )
                == 401
            )
            async with session.get(f"{server.url}/metrics") as answer:
                metrics_early = await answer.text()

            # let every failing sink give up on every event (forward and alerts after three
            # attempts, crm at once on its 401; crm skips events that name no contact)
            deadline = time.monotonic() + 30
            while True:
                async with session.get(f"{server.url}/metrics") as answer:
                    metrics = await answer.text()
                busy = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith("eventrouter_queue_depth{")
                    and ('state="pending"' in line or 'state="inflight"' in line)
                    and not line.endswith(" 0.0")
                ]
                if not busy:
                    break
                assert time.monotonic() < deadline, busy
                await asyncio.sleep(0.2)
            listed = await asyncio.to_thread(run_cli, config, "dlq", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            letters = [json.loads(line) for line in listed.stdout.splitlines()]
    finally:
        server.stop()
        await remote.stop()

    # the endpoints did get the credentials: they were there to leak
    assert any(HTTP_SINK_TOKEN in auth for path, auth in remote.seen if path == "/forward")
    assert any(HUBSPOT_TOKEN in auth for path, auth in remote.seen if path.startswith("/hubspot"))
    assert any(SLACK_SECRET_PATH in path for path, _ in remote.seen)
    dead = {
        sink: {x["event_id"] for x in letters if x["sink"] == sink}
        for sink in ("forward", "alerts", "crm")
    }
    assert dead["forward"] == dead["alerts"] == set(accepted)
    assert dead["crm"], "the crm sink never reached its endpoint"
    reasons = {letter["sink"]: letter["reason"] for letter in letters}
    # the endpoints' echoes of the credentials were masked before they were stored
    assert reasons["forward"] == (
        "gave up after 3 attempts: HTTP 500: rejected /forward with ***; token ***"
    )
    assert "Bearer [redacted]" in reasons["crm"]

    outputs: dict[str, str] = {"log": server.logs(), "metrics": metrics + metrics_early}
    outputs["answers"] = "\n".join(answers)
    for path in sorted((tmp_path / "archive").rglob("*")):
        if path.is_file():
            outputs[f"archive {path.name}"] = path.read_text(errors="replace")
    assert any(name.startswith("archive ") for name in outputs)
    for name, args in {
        "events --json": ("events", "--json", "--limit", "100"),
        "events": ("events", "--limit", "100"),
        "dlq list --json": ("dlq", "list", "--json"),
        "dlq list": ("dlq", "list"),
    }.items():
        result = await asyncio.to_thread(run_cli, config, *args)
        assert result.returncode == 0, result.stderr
        outputs[name] = result.stdout + result.stderr
    shown = [json.loads(line) for line in outputs["events --json"].splitlines()]
    assert {entry["event"]["id"] for entry in shown} == set(accepted)
    assert json.dumps(shown).count("[redacted]") >= 2  # both magic link tokens, in the listing

    leaks = [
        f"{what} in {where}"
        for what, value in secret_values(remote).items()
        for where, text in outputs.items()
        if value in text
    ]
    assert not leaks, leaks
    print(
        f"secrets: {len(secret_values(remote))} values searched in {len(outputs)} outputs "
        f"({sum(map(len, outputs.values()))} characters); {len(accepted)} events, "
        f"{len(letters)} dead letters; none found"
    )
