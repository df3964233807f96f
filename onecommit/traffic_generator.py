"""A traffic generator: replays held-out rows through the gateway, shaped as the served model's
signature declares its input, and posts their ground truth as feedback, until told to stop or
its request budget is spent. Targets the local gateway only."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from numpy.typing import NDArray


@dataclass(frozen=True)
class ServedInput:
    """The input a served model takes, as its signature declares it (`GET /v2/models/<m>`)."""

    name: str
    datatype: str
    features: int

    def body(self, rows: NDArray[Any]) -> dict[str, Any]:
        return {"inputs": [{"name": self.name, "shape": list(rows.shape),
                            "datatype": self.datatype, "data": rows.flatten().tolist()}]}


def served_input(gateway_url: str, model: str,
                 verify: ssl.SSLContext | bool = True) -> ServedInput | None:
    """None while the gateway serves no version of the model."""
    try:
        response = httpx.get(f"{gateway_url}/v2/models/{model}", timeout=10, verify=verify)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    declared = response.json()["inputs"][0]
    return ServedInput(declared["name"], declared["datatype"], int(declared["shape"][-1]))


class TrafficGenerator(threading.Thread):
    def __init__(self, gateway_url: str, admin_token: str, model: str, rows: NDArray[Any],
                 labels: NDArray[Any], max_requests: int = 100_000,
                 verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(daemon=True, name="onecommit-traffic")
        self._url = gateway_url
        self._token = admin_token
        self.model = model
        self._rows = rows
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

    def _served_input(self) -> ServedInput | None:
        """The model's input as served, asked until the gateway answers (or told to stop)."""
        while not self._stop_event.is_set():
            served = served_input(self._url, self.model, self._verify)
            if served is not None:
                return served
            self._stop_event.wait(0.5)
        return None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        served = self._served_input()
        with httpx.Client(base_url=self._url, timeout=10, verify=self._verify) as client:
            while (served is not None and not self._stop_event.is_set()
                   and self.sent < self._max_requests):
                index = self.sent % len(self._rows)
                body = served.body(self._rows[index: index + 1])
                self.sent += 1
                sent_at = time.monotonic()
                try:
                    response = client.post(f"/v2/models/{self.model}/infer", json=body)
                    if response.status_code != 200:
                        self._failed(sent_at, str(response.status_code))
                    else:
                        client.post("/feedback", headers=headers, json={
                            "request_id": response.headers["x-request-id"],
                            "label": self._labels[index].item()})
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
