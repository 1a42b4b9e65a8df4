"""The Quickstart stays true: the example config validates and every sample payload is archived."""

from __future__ import annotations

import asyncio
import csv
import io
import tomllib
from pathlib import Path

from click.testing import CliRunner

from eventrouter.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCE_OF = {"altur": "altur", "exotel": "exotel", "pelcro": "pelcro", "standard": "webhooks"}


def test_example_config_validates():
    result = CliRunner().invoke(
        cli, ["check", "--config", str(EXAMPLES / "eventrouter.toml")], env={}
    )
    assert result.exit_code == 0, result.output
    assert "4 sources, 1 sinks, 1 routes, sqlite store" in result.output


async def test_every_sample_payload_is_accepted_and_archived(make_router, tmp_path):
    document = tomllib.loads((EXAMPLES / "eventrouter.toml").read_text())
    document["store"]["path"] = str(tmp_path / "events.db")
    document["sinks"]["archive"]["directory"] = str(tmp_path / "archive")
    router = await make_router(document, environ={})
    payloads = sorted((EXAMPLES / "payloads").iterdir())
    assert len(payloads) >= 8
    accepted = []
    for payload in payloads:
        source = SOURCE_OF[payload.name.split("-", 1)[0]]
        content_type = (
            "application/json" if payload.suffix == ".json" else "application/x-www-form-urlencoded"
        )
        status, answer = await router.post(source, payload.read_bytes(), content_type=content_type)
        assert (status, answer["status"]) == (200, "accepted"), (payload.name, answer)
        accepted.append(answer["event_id"])

    def archived() -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for path in (tmp_path / "archive").glob("*.csv"):
            text = path.read_text()
            if text.endswith("\n"):  # skip a file caught in the middle of an append
                rows.extend(csv.DictReader(io.StringIO(text)))
        return rows

    rows: list[dict[str, str]] = []
    for _ in range(200):  # at most 10 s
        rows = archived()
        if len(rows) >= len(accepted):
            break
        await asyncio.sleep(0.05)
    assert sorted(row["event_id"] for row in rows) == sorted(accepted)
    types = {row["type"] for row in rows}
    assert {
        "call.ended",
        "campaign.triggered",
        "campaign.completed",
        "campaign.cycle_completed",
        "invoice.paid",
    } <= types
    assert not any(
        "eyJhbGciOi" in value for row in rows for value in row.values()
    )  # Pelcro's magic link token
