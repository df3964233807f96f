"""Notifications: Slack incoming-webhook messages (Block Kit), or a JSONL sink when no webhook
is configured. Delivery is retried with backoff; a failed delivery never raises."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from loguru import logger


def slack_payload(event: str, text: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": f"[onecommit] {event}: {text}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"onecommit · {event}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()][:10]},
        ],
    }


def notify(state_dir: Path, webhook_url: str | None, event: str, text: str,
           fields: dict[str, Any], attempts: int = 3) -> bool:
    """Send one notification; True when delivered (to the webhook or the sink)."""
    payload = slack_payload(event, text, fields)
    if not webhook_url:
        sink = state_dir / "notifications.jsonl"
        sink.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": datetime.now(UTC).isoformat(), "event": event, "payload": payload}
        with sink.open("a") as out:
            out.write(json.dumps(record) + "\n")
        return True
    for attempt in range(attempts):
        try:
            response = httpx.post(webhook_url, json=payload, timeout=5)
            if response.status_code < 300:
                return True
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            reason = type(error).__name__
        logger.warning("notification {} not delivered (attempt {}): {}", event, attempt + 1,
                       reason)
        time.sleep(0.5 * 2**attempt)
    return False
