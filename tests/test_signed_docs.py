"""docs/signed-webhooks.md stays true: its presets are the code's, its worked example runs."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tomllib
from pathlib import Path

import pytest

from eventrouter.builtin.signed import PRESETS, SignedOptions

PAGE = Path(__file__).resolve().parent.parent / "docs" / "signed-webhooks.md"
BLOCK = re.compile(r"<!-- (\w+): (\w+) -->\n```\w+\n(.*?)```", re.S)


def blocks() -> dict[tuple[str, str], str]:
    return {(kind, name): text for kind, name, text in BLOCK.findall(PAGE.read_text())}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_shown_in_full(name):
    shown = tomllib.loads(blocks()[("preset", name)])["sources"][name]
    assert shown.pop("plugin") == "signed"
    assert shown == PRESETS[name]


def test_every_option_is_in_the_options_table():
    text = PAGE.read_text().split("## Options", 1)[1].split("### The signed content", 1)[0]
    for option in SignedOptions.__attrs_attrs__:
        assert f"`{option.name}`" in text or f"`[{option.name}]`" in text, option.name


async def test_the_worked_example_archives_normalised_contact_columns(make_router, tmp_path):
    document = tomllib.loads(blocks()[("example", "config")])
    document["store"] = {"path": str(tmp_path / "events.db")}
    document["sinks"]["archive"]["directory"] = str(tmp_path / "archive")
    router = await make_router(document, environ={})
    payload = blocks()[("example", "payload")].encode()
    status, answer = await router.post("chirp", payload)
    assert (status, answer["status"]) == (200, "accepted"), answer
    event_id = answer["event_id"]
    # the same request unsigned is refused
    status, answer = await router.post("chirp", payload, signed=False)
    assert status == 401, answer

    rows: list[dict[str, str]] = []
    for _ in range(200):  # at most 10 s
        rows = [
            row
            for path in (tmp_path / "archive").glob("*.csv")
            if path.read_text().endswith("\n")
            for row in csv.DictReader(io.StringIO(path.read_text()))
        ]
        if rows:
            break
        await asyncio.sleep(0.05)
    (row,) = rows
    assert row["event_id"] == event_id
    assert row["type"] == "call.ended"
    assert (row["contact_phone"], row["contact_email"]) == ("+14155550100", "ann@example.com")
    assert (row["contact_name"], row["contact_external_id"]) == ("Ann Lee", "L-77")
    assert (row["call_id"], row["call_status"]) == ("c-5521", "no_answer")
    assert json.loads(payload)["occurred_at"].startswith(row["time"][:10])
