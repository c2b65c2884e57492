"""Notifiers: where failed runs are reported. Logging always; a webhook when configured."""

import json
import logging
import os
import urllib.request
from typing import Any

import dagster as dg

log = logging.getLogger("ml_platform.notifications")
WEBHOOK_ENV = "ML_PLATFORM_WEBHOOK_URL"


class Notifier(dg.ConfigurableResource):
    """Logs every alert; also POSTs it as JSON to `webhook_url` (default:
    `$ML_PLATFORM_WEBHOOK_URL`, read when an alert is sent) when one is set."""

    webhook_url: str | None = None
    timeout_s: float = 5.0

    def notify(self, title: str, details: dict[str, Any]) -> None:
        log.error("%s: %s", title, json.dumps(details, default=str))
        url = self.webhook_url or os.environ.get(WEBHOOK_ENV)
        if not url:
            return
        request = urllib.request.Request(
            url, data=json.dumps({"text": title, **details}, default=str).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()
