"""The store-reading commands and ``send``, against a real store and a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.events import Event, EventData, utcnow
from eventrouter.store.sqlite import SQLiteStore

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def write_config(tmp_path: Path, port: int = 8080) -> Path:
    path = tmp_path / "eventrouter.toml"
    path.write_text(
        f"""
[server]
port = {port}
[store]
path = "events.db"
[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]
[sinks.fwd]
plugin = "http"
url = "http://127.0.0.1:9/never"
[sinks.other]
plugin = "http"
url = "http://127.0.0.1:9/never"
[[routes]]
sinks = ["fwd"]
"""
    )
    return path


def event(n: int) -> Event:
    now = utcnow()
    return Event(
        id=f"evt_{n}",
        source="demo",
        type="invoice.paid",
        time=now,
        provider="standard-webhooks",
        provider_type="invoice.paid",
        idempotency_key=f"msg_{n}",
        received_at=now,
        data=EventData(attributes={"token": "tok_secret_value"}),
        raw={"n": n, "token": "tok_secret_value"},
        sensitive=("token",),
    )


async def seed(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    for n in (1, 2):
        await store.ingest(event(n), ["fwd"])
    [delivery] = await store.claim("fwd", limit=1, lease=30)
    await store.dead_letter(delivery, error="HTTP 410: gone")
    await store.close()


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result


def test_events_dlq_and_replay(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed(tmp_path / "events.db"))

    result = run("events", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "evt_1 demo invoice.paid" in result.output
    assert "fwd: dead, 1 attempts — HTTP 410: gone" in result.output
    assert "fwd: pending, 0 attempts" in result.output

    result = run("events", "--config", str(config), "--json", "evt_2")
    [line] = result.output.splitlines()
    record = json.loads(line)
    assert record["event"]["id"] == "evt_2"
    assert record["deliveries"] == [
        {
            "sink": "fwd",
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": record["deliveries"][0]["next_attempt_at"],
            "last_error": None,
        }
    ]
    assert "tok_secret_value" not in result.output  # credentials are redacted in listings

    result = run("dlq", "list", "--config", str(config))
    assert result.exit_code == 0
    assert "evt_1 -> fwd (invoice.paid, 1 attempts): HTTP 410: gone" in result.output

    result = run("dlq", "retry", "--config", str(config), "--sink", "nope")
    assert result.exit_code == 1
    assert "--sink: no sink named 'nope'" in result.output
    result = run("dlq", "retry", "--config", str(config), "evt_1")
    assert (result.exit_code, result.output.strip()) == (
        0,
        "1 dead letters queued for delivery again",
    )
    assert run("dlq", "list", "--config", str(config)).output.strip() == "no dead letters"

    result = run("replay", "evt_2", "--config", str(config), "--sink", "other")
    assert (result.exit_code, result.stdout.strip()) == (0, "event evt_2 queued for 1 sinks")
    result = run("events", "--config", str(config), "evt_2")
    assert "other: pending, 0 attempts" in result.output
    result = run("replay", "evt_404", "--config", str(config))
    assert (result.exit_code, "no event evt_404 in the store" in result.output) == (1, True)
    result = run("events", "--config", str(config), "evt_404")
    assert result.exit_code == 1


def test_store_commands_need_no_source_or_sink_secrets(tmp_path, monkeypatch):
    """An operator looks at the store from a shell without the webhook secrets exported."""
    monkeypatch.delenv("DEMO_SECRET", raising=False)
    monkeypatch.delenv("SLACK_URL", raising=False)
    monkeypatch.setenv("STORE_FILE", "events.db")
    config = tmp_path / "eventrouter.toml"
    config.write_text(
        """
[store]
path = "${STORE_FILE}"
[sources.demo]
plugin = "standard-webhooks"
secrets = ["${DEMO_SECRET}"]
[sinks.fwd]
plugin = "http"
url = "${SLACK_URL}"
[sinks.other]
plugin = "not-installed-anywhere"
[[routes]]
sinks = ["fwd"]
"""
    )
    asyncio.run(seed(tmp_path / "events.db"))

    result = run("events", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "fwd: dead, 1 attempts — HTTP 410: gone" in result.output
    result = run("dlq", "list", "--config", str(config))
    assert "evt_1 -> fwd (invoice.paid, 1 attempts): HTTP 410: gone" in result.output
    result = run("replay", "evt_2", "--config", str(config), "--sink", "other")
    assert (result.exit_code, result.stdout.strip()) == (0, "event evt_2 queued for 1 sinks")
    result = run("dlq", "retry", "--config", str(config), "--yes")
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        "1 dead letters queued for delivery again",
    )
    result = run("replay", "evt_2", "--config", str(config), "--sink", "nope")
    assert result.exit_code == 1
    assert "--sink: no sink named 'nope' (configured: fwd, other)" in result.output

    # serving and checking still need every secret, and say which is missing
    result = run("check", "--config", str(config))
    assert result.exit_code == 1
    assert "sources.demo.secrets[0]: environment variable DEMO_SECRET is not set" in result.output


def test_store_commands_still_check_the_store_table(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = tmp_path / "eventrouter.toml"
    config.write_text('[store]\nbackend = "redis"\nurl = "${REDIS_URL}"\n')
    result = run("dlq", "list", "--config", str(config))
    assert result.exit_code == 1
    assert "store.url: environment variable REDIS_URL is not set" in result.output

    config.write_text('[store]\nbackend = "sqlite"\npath = "x.db"\nbatch = 3\n[sinks]\nfwd = 1\n')
    result = run("events", "--config", str(config))
    assert result.exit_code == 1
    assert "store: unknown key 'batch'" in result.output
    result = run("events", "--config", str(tmp_path / "missing.toml"))
    assert (result.exit_code, "no such file" in result.output) == (1, True)


async def seed_odd(db: Path) -> None:
    """A dead letter for a sink the config no longer has, and one whose type holds escapes."""
    store = SQLiteStore(db)
    await store.open()
    await store.ingest(event(3), ["removed"])
    await store.ingest(event(4).evolve(type="evil\x1b]0;pwned\x07\x1b[2J"), ["fwd"])
    for sink in ("removed", "fwd"):
        [delivery] = await store.claim(sink, limit=1, lease=30)
        await store.dead_letter(delivery, error="HTTP 500: \x1b[31mred\x1b[0m")
    await store.close()


def test_dlq_retry_leaves_removed_sinks_and_listings_escape_control_characters(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed_odd(tmp_path / "events.db"))

    for args in (("dlq", "list"), ("events",)):
        result = run(*args, "--config", str(config))
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "\x07" not in result.output
        assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in result.output
        assert "HTTP 500: \\x1b[31mred\\x1b[0m" in result.output

    result = CliRunner().invoke(cli, ["dlq", "retry", "--config", str(config), "--yes"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 dead letters queued for delivery again"
    assert "dead letters of sinks no longer configured (removed)" in result.stderr
    [left] = run("dlq", "list", "--config", str(config), "--json").output.splitlines()
    assert json.loads(left)["sink"] == "removed"


async def test_send_signs_and_posts_to_a_running_server(
    make_router, basic_config, tmp_path, recorded
):
    router = await make_router(basic_config)
    config = write_config(tmp_path, port=router.client.port)
    payload = tmp_path / "invoice.json"
    payload.write_text(json.dumps({"type": "invoice.paid", "data": {"id": 7}}))
    # the CLI runs its own event loop: run it in a thread beside the test server's
    result = await asyncio.to_thread(
        run,
        "send",
        "demo",
        str(payload),
        "--config",
        str(config),
        "--url",
        f"{router.url.rstrip('/')}/hooks/demo",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith('200 {"status": "accepted"')
    [event] = await recorded.wait_for("recorder", 1)
    assert event.data.attributes == {"id": 7}

    result = await asyncio.to_thread(run, "send", "nope", str(payload), "--config", str(config))
    assert result.exit_code == 1
    assert "no source named 'nope'" in result.output
