"""The presets of the ``signed`` source: each provider's scheme and mappings, as config keys.

docs/signed-webhooks.md shows each expansion as TOML; a test keeps the page and this file equal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

_CALL_ENDED = ("completed", "busy", "no-answer", "failed", "canceled")

PRESETS: dict[str, dict[str, Any]] = {
    "stripe": {
        "provider": "stripe",
        "signature_header": "Stripe-Signature",
        "signature_key": "v1",
        "timestamp_key": "t",
        "signed_content": "{timestamp}.{body}",
        "algorithm": "sha256",
        "signature_encoding": "hex",
        "secret_encoding": "utf-8",
        "tolerance": "5m",
        "event": {
            "type": "type",
            "id": "id",
            "time": "created",
            "idempotency_key": "id",
            "subject": "data.object.id",
        },
        "contact": {
            "email": "data.object.customer_email || data.object.receipt_email"
            " || data.object.email || data.object.billing_details.email",
            "name": "data.object.customer_name || data.object.name"
            " || data.object.billing_details.name",
            "phone": "data.object.customer_phone || data.object.phone"
            " || data.object.billing_details.phone",
            "external_id": "data.object.customer",
        },
    },
    "github": {
        "provider": "github",
        "signature_header": "X-Hub-Signature-256",
        "signature_prefix": "sha256=",
        "signed_content": "{body}",
        "algorithm": "sha256",
        "signature_encoding": "hex",
        "secret_encoding": "utf-8",
        "event": {
            "type": "header('X-GitHub-Event')",
            "id": "header('X-GitHub-Delivery')",
            "idempotency_key": "header('X-GitHub-Delivery')",
            "subject": "repository.full_name",
        },
    },
    "shopify": {
        "provider": "shopify",
        "signature_header": "X-Shopify-Hmac-Sha256",
        "signed_content": "{body}",
        "algorithm": "sha256",
        "signature_encoding": "base64",
        "secret_encoding": "utf-8",
        "event": {
            "type": "header('X-Shopify-Topic')",
            "id": "header('X-Shopify-Webhook-Id')",
            "time": "header('X-Shopify-Triggered-At')",
            "idempotency_key": "header('X-Shopify-Event-Id') || header('X-Shopify-Webhook-Id')",
            "subject": "admin_graphql_api_id",
        },
        "contact": {
            "email": "email || customer.email || contact_email",
            "phone": "phone || customer.phone || billing_address.phone",
            "name": "customer.first_name && join(' ', [customer.first_name,"
            " customer.last_name || ''])",
            "external_id": "customer.id",
        },
    },
    "slack": {
        "provider": "slack",
        "signature_header": "X-Slack-Signature",
        "signature_prefix": "v0=",
        "timestamp_header": "X-Slack-Request-Timestamp",
        "signed_content": "v0:{timestamp}:{body}",
        "algorithm": "sha256",
        "signature_encoding": "hex",
        "secret_encoding": "utf-8",
        "tolerance": "5m",
        "event": {
            "type": "event.type || type || command",
            "id": "event_id || trigger_id",
            "time": "event_time",
            "idempotency_key": "event_id || trigger_id",
            "subject": "event.channel || channel_id",
        },
    },
    "twilio": {
        "provider": "twilio",
        "signature_header": "X-Twilio-Signature",
        "signed_content": "{url}{form}",
        "algorithm": "sha1",
        "signature_encoding": "base64",
        "secret_encoding": "utf-8",
        "event": {
            "type": "CallStatus && join('.', ['call', CallStatus])"
            " || MessageStatus && join('.', ['message', MessageStatus]) || 'webhook'",
            "id": "CallSid || MessageSid",
            "idempotency_key": "header('I-Twilio-Idempotency-Token')",
            "subject": "CallSid || MessageSid",
        },
        "event_types": {f"call.{status}": "call.ended" for status in _CALL_ENDED},
        "contact": {
            "phone": "Direction == 'inbound' && From || To",
        },
        "call": {
            "id": "CallSid",
            "direction": "Direction",
            "status": "CallStatus",
            "answered_by": "AnsweredBy",
            "duration_seconds": "CallDuration || Duration",
            "recording_url": "RecordingUrl",
            "from_number": "From",
            "to_number": "To",
        },
    },
}
