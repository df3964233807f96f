"""Notifications: Slack incoming-webhook messages (Block Kit), delivered with retries and
backoff. Every notification is also recorded in `<state dir>/notifications.jsonl` with whether
and where it was delivered: with no webhook configured that file is the sink, and either way it
is what `invoke proof` reads. A failed delivery never raises."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from onecommit.settings import Settings


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(event: str, text: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message within Slack's limits (header 150 characters, section text 3000,
    at most 10 fields of 2000 each): longer values are clipped, never rejected."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": _clip(f"onecommit · {event}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", 2000)}
            for k, v in list(fields.items())[:10]]})
    return {"text": f"[onecommit] {event}: {text}", "blocks": blocks}


def notifications_file(state_dir: Path) -> Path:
    return state_dir / "notifications.jsonl"


def _deliver(webhook_url: str, payload: dict[str, Any], event: str, attempts: int) -> bool:
    for attempt in range(attempts):
        try:
            response = httpx.post(webhook_url, json=payload, timeout=5)
            if response.status_code < 300:
                return True
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            reason = type(error).__name__
        # The URL is a credential: log the event and the reason, never the URL.
        logger.warning("notification {} not delivered (attempt {} of {}): {}", event,
                       attempt + 1, attempts, reason)
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    return False


def notify(state_dir: Path, webhook_url: str | None, event: str, text: str,
           fields: dict[str, Any], attempts: int = 3, model: str | None = None,
           version: int | None = None) -> dict[str, Any]:
    """Send one notification; returns its delivery record (`delivered` is True when it
    reached the webhook, or the sink if none is configured). The record names the model and
    version it is about as fields, for readers (the proof) that must not parse its text."""
    payload = slack_payload(event, text, fields)
    delivered = _deliver(webhook_url, payload, event, attempts) if webhook_url else True
    record = {"at": datetime.now(UTC).isoformat(), "event": event, "model": model,
              "version": version, "channel": "slack-webhook" if webhook_url else "sink",
              "delivered": delivered, "payload": payload}
    sink = notifications_file(state_dir)
    sink.parent.mkdir(parents=True, exist_ok=True)
    with sink.open("a") as out:
        out.write(json.dumps(record, default=str) + "\n")
    return {k: record[k] for k in ("at", "event", "channel", "delivered")}


def send(settings: Settings, event: str, text: str, fields: dict[str, Any], *,
         model: str | None = None, version: int | None = None) -> dict[str, Any]:
    """Notify through the platform's configured webhook (or the sink); returns the delivery
    record, the evidence of criterion `notification_sent`. `model` and `version`: what the
    notification is about (none for a commit the sync rejected)."""
    webhook = settings.notify_webhook_url
    return notify(settings.state_dir, webhook.get_secret_value() if webhook else None, event,
                  text, fields, model=model, version=version)
