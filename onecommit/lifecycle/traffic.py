"""A traffic generator: replays held-out rows through the gateway and posts their ground truth
as feedback, until told to stop or its request budget is spent. Targets the local gateway only."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray


class TrafficGenerator(threading.Thread):
    def __init__(self, gateway_url: str, admin_token: str, model: str, rows: NDArray[Any],
                 labels: NDArray[Any], max_requests: int = 100_000,
                 verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(daemon=True, name="onecommit-traffic")
        self._url = gateway_url
        self._token = admin_token
        self._model = model
        self._rows = rows.astype(np.float32)
        self._labels = labels
        self._max_requests = max_requests
        self._verify = verify
        self._stop_event = threading.Event()
        self.sent = 0
        self.failed = 0
        # When each failed request was sent (monotonic seconds), and why: an HTTP status, or
        # the transport error's name.
        self.failures: list[tuple[float, str]] = []

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(base_url=self._url, timeout=10, verify=self._verify) as client:
            while not self._stop_event.is_set() and self.sent < self._max_requests:
                index = self.sent % len(self._rows)
                row = self._rows[index: index + 1]
                body = {"inputs": [{"name": "X", "shape": list(row.shape), "datatype": "FP32",
                                    "data": row.flatten().tolist()}]}
                self.sent += 1
                sent_at = time.monotonic()
                try:
                    response = client.post(f"/v2/models/{self._model}/infer", json=body)
                    if response.status_code != 200:
                        self._failed(sent_at, str(response.status_code))
                    else:
                        client.post("/feedback", headers=headers, json={
                            "request_id": response.headers["x-request-id"],
                            "label": int(self._labels[index])})
                except httpx.HTTPError as error:
                    self._failed(sent_at, type(error).__name__)
                    # A gateway that is down refuses at once: do not spin.
                    self._stop_event.wait(0.05)
                self._stop_event.wait(0.01)

    def _failed(self, at: float, why: str) -> None:
        self.failed += 1
        if len(self.failures) < 100_000:
            self.failures.append((at, why))

    def failed_after(self, moment: float) -> int:
        """Requests sent after a monotonic moment that failed."""
        return sum(1 for at, _ in self.failures if at >= moment)
