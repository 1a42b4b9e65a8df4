"""The baseline eventrouter replaces: the Flask receiver of Altur's webhook docs, made durable.

The pattern the provider's receiver example documents (``X-Altur-Signature`` checked with an
HMAC over the compact JSON payload, then the event handled inline), with the handling an archive
needs: one CSV row appended and fsynced before the 200. ``bench/endtoend.py`` runs it under
``gunicorn -w 2`` and loads it exactly like eventrouter:

    ALTUR_SECRET=<base64> RECEIVER_CSV=/tmp/rows.csv gunicorn -w 2 -b 127.0.0.1:8000 \\
        --chdir bench flask_receiver:app
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import os

from flask import Flask, jsonify, request

__all__ = ["app"]

app = Flask(__name__)
KEY = base64.b64decode(os.environ["ALTUR_SECRET"])
CSV_PATH = os.environ["RECEIVER_CSV"]


def is_valid_signature(payload: object, signature: str | None) -> bool:
    """Altur's current scheme: base64 HMAC-SHA256 of the compact JSON, keyed by the decoded secret."""
    message = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    expected = base64.b64encode(hmac.new(KEY, message, hashlib.sha256).digest()).decode()
    return signature is not None and hmac.compare_digest(expected, signature)


@app.post("/webhooks/altur")
def on_call_end() -> tuple[object, int]:
    event = request.get_json()
    if not is_valid_signature(event, request.headers.get("X-Altur-Signature")):
        return jsonify(error="invalid signature"), 401
    row = io.StringIO()
    end_user = event.get("end_user") or {}
    csv.writer(row).writerow(
        [
            event["id"],
            event.get("event_type"),
            event.get("ended_at"),
            event.get("duration"),
            end_user.get("phone_number"),
            event.get("answered_by"),
        ]
    )
    # O_APPEND: the two workers' rows never interleave; fsync before the 200, like the CSV sink
    fd = os.open(CSV_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, row.getvalue().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return "", 200
