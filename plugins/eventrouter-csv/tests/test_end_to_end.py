"""A real router: a Standard Webhooks source posting into a csv sink, read back from disk."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime

import pandas as pd

from eventrouter_csv import DEFAULT_COLUMNS

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _rows_when(path, count, *, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # a reader can catch the file between its creation and the end of an append: only
        # parse it once it holds whole lines
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
            if len(frame) >= count:
                return frame
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} did not get {count} rows within {timeout}s")


async def test_webhooks_are_archived(make_router, tmp_path):
    router = await make_router(
        {
            "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
            "sinks": {
                "archive": {
                    "plugin": "csv",
                    "directory": "archive",
                    "path": "{source}/{date}.csv",
                    "delivery": {"concurrency": 16, "retry_schedule": ["50ms"], "jitter": 0},
                }
            },
            "routes": [{"sinks": ["archive"]}],
        }
    )
    payloads = [
        {"type": "invoice.paid", "timestamp": "2024-12-19T15:00:10Z", "data": {"id": 1}},
        {
            "type": "invoice.failed",
            "timestamp": "2024-12-19T15:00:11+05:30",
            "data": {"id": 2, "note": "=SUM(A1:A9)"},
        },
    ]
    accepted = []
    for payload in payloads:
        status, body = await router.post("demo", payload)
        assert status == 200, body
        accepted.append(body["event_id"])
    day = datetime.now(UTC).date().isoformat()
    path = tmp_path / "archive" / "demo" / f"{day}.csv"
    frame = await _rows_when(path, 2)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert sorted(frame["event_id"]) == sorted(accepted)
    # rows land in completion order; look at them in posting order
    frame = frame.set_index("event_id", drop=False).loc[accepted].reset_index(drop=True)
    assert list(frame["source"]) == ["demo", "demo"]
    assert list(frame["provider"]) == ["standard-webhooks", "standard-webhooks"]
    assert list(frame["type"]) == ["invoice.paid", "invoice.failed"]
    assert list(frame["provider_type"]) == ["invoice.paid", "invoice.failed"]
    assert list(frame["time"]) == ["2024-12-19T15:00:10+00:00", "2024-12-19T09:30:11+00:00"]
    assert [json.loads(cell) for cell in frame["attributes"]] == [p["data"] for p in payloads]
    assert all(cell.startswith(day) for cell in frame["received_at"])
    for column in DEFAULT_COLUMNS:
        if column.startswith(("contact_", "call_", "campaign_")) or column == "subject":
            assert list(frame[column]) == ["", ""], column
    assert path.read_text().splitlines()[0] == ",".join(DEFAULT_COLUMNS)


async def test_a_malformed_report_url_from_exotel_or_pelcro_keeps_its_row(make_router, tmp_path):
    """``http://[::1/x.csv`` once raised before the code that refuses bad URLs: the delivery was
    retried, then dead-lettered with a traceback, and the row never written."""
    router = await make_router(
        {
            "sources": {
                "exotel": {"plugin": "exotel", "insecure": True},
                "pelcro": {"plugin": "pelcro", "insecure": True},
            },
            "sinks": {
                "archive": {
                    "plugin": "csv",
                    "directory": "archive",
                    "download_reports": True,
                    "delivery": {"retry_schedule": ["50ms"], "jitter": 0},
                }
            },
            "routes": [{"sinks": ["archive"]}],
        }
    )
    exotel = {
        "campaign_sid": "camp_1",
        "status": "Completed",
        "date_updated": "2024-01-15T18:00:00+05:30",
        "report_url": "http://[::1/x.csv",
    }
    pelcro = {
        "type": "campaign.run_completed",
        "id": "evt_run_1",
        "created": 1704153600,
        "data": {
            "campaign": {
                "id": 123,
                "name": "Renewals",
                "run": {"id": 999, "date": 1704153600, "download_link": "http://a\\b:80/r.csv"},
            }
        },
    }
    for source, payload in (("exotel", exotel), ("pelcro", pelcro)):
        status, body = await router.post(source, payload)
        assert status == 200, body
    day = datetime.now(UTC).date().isoformat()
    frame = await _rows_when(tmp_path / "archive" / f"{day}.csv", 2)
    assert sorted(frame["campaign_report_url"]) == ["http://[::1/x.csv", "http://a\\b:80/r.csv"]
    assert list(frame["campaign_report_file"]) == ["", ""]
    assert await router.store.list_dead_letters() == []
    depth = await router.store.queue_depth()
    assert depth.get("archive", {}).get("pending", 0) == 0
