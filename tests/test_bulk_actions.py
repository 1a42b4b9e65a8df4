"""Bulk actions on a filter from the command line (``dlq retry``, ``replay``): plan,
confirmation, dry run, resume, the warning when no worker runs. Interruption and a worker
running beside them are store contract tests (tests/test_store_contract.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.store import DeliveryState
from eventrouter.store.sqlite import SQLiteStore
from tests.test_store_contract import dead_letters

# -- the command line --------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "eventrouter.toml"
    path.write_text(
        '[store]\npath = "events.db"\n'
        '[sinks.alpha]\nplugin = "http"\nurl = "http://127.0.0.1:9/never"\n'
        '[sinks.beta]\nplugin = "http"\nurl = "http://127.0.0.1:9/never"\n'
    )
    return path


async def seed(db: Path, *, heartbeat: bool = False) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        await dead_letters(store, 3, ["alpha"])
        await dead_letters(store, 2, ["beta"])
        if heartbeat:
            await store.heartbeat("worker-1", ttl=60)
    finally:
        await store.close()


async def depth(db: Path) -> dict[str, dict[str, int]]:
    store = SQLiteStore(db)
    await store.open()
    try:
        return await store.queue_depth()
    finally:
        await store.close()


def test_dlq_retry_prints_its_plan_asks_and_warns_when_no_worker_runs(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed(tmp_path / "events.db"))
    runner = CliRunner()

    dry = runner.invoke(cli, ["dlq", "retry", "--config", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "plan: retry 5 deliveries to alpha (3), beta (2)" in dry.stderr
    assert dry.stdout == ""
    declined = runner.invoke(cli, ["dlq", "retry", "--config", str(config)], input="n\n")
    assert declined.exit_code == 1
    assert "go ahead?" in declined.output
    assert asyncio.run(depth(tmp_path / "events.db")) == {"alpha": {"dead": 3}, "beta": {"dead": 2}}

    done = runner.invoke(
        cli, ["dlq", "retry", "--config", str(config), "--sink", "beta"], input="y\n"
    )
    assert done.exit_code == 0, done.output
    assert "plan: retry 2 deliveries to beta (2)" in done.stderr
    assert done.stdout.strip() == "2 dead letters queued for delivery again"
    assert (
        "delivery happens in a running `eventrouter serve` or `eventrouter worker`" in done.stderr
    )
    assert "warning: no serve or worker is delivering right now (none seen)" in done.stderr
    assert "--resume dlq_retry-" in done.stderr
    assert asyncio.run(depth(tmp_path / "events.db")) == {
        "alpha": {"dead": 3},
        "beta": {"pending": 2},
    }

    wrong = runner.invoke(cli, ["dlq", "retry", "--config", str(config), "--contact", "nobody"])
    assert wrong.exit_code == 1
    assert "--contact: 'nobody' is neither an email nor a phone number" in wrong.output
    assert "Traceback" not in wrong.output


def test_replay_on_a_filter_with_a_worker_seen_recently(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed(tmp_path / "events.db", heartbeat=True))
    runner = CliRunner()

    refused = runner.invoke(cli, ["replay", "--config", str(config), "--yes"])
    assert refused.exit_code == 1
    assert "give an EVENT_ID or at least one filter" in refused.output
    done = runner.invoke(
        cli, ["replay", "--config", str(config), "--sink", "alpha", "--since", "1h", "--yes"]
    )
    assert done.exit_code == 0, done.output
    assert "plan: replay 3 deliveries to alpha (3)" in done.stderr
    assert done.stdout.strip() == "3 deliveries queued again"
    assert "warning" not in done.stderr
    action_id = done.stderr.split("--resume ")[1].split(")")[0]
    resumed = runner.invoke(
        cli,
        [
            "replay",
            "--config",
            str(config),
            "--sink",
            "alpha",
            "--since",
            "1h",
            "--yes",
            "--resume",
            action_id,
        ],
    )
    assert resumed.stdout.strip() == "0 deliveries queued again"

    listed = runner.invoke(
        cli, ["events", "--config", str(config), "--state", "pending", "--json", "--limit", "2"]
    )
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["deliveries"][0]["state"] for line in listed.stdout.splitlines()] == [
        DeliveryState.PENDING
    ] * 2
    assert "more: --cursor " in listed.stderr
