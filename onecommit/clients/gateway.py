"""The gateway's admin API as the lifecycle, the loop and the proof use it: the one client.

A gateway that does not answer (restarting, its database busy, the version it must pin still
loading) is an infrastructure fault, not a verdict: calls are retried with a backoff until
`gateway_retry_s` has passed, and only then fail with GatewayUnavailable. Refusals (a 4xx) fail
at once with the gateway's own message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import httpx

from onecommit.analysis.report import Observations
from onecommit.errors import OnecommitError
from onecommit.secrets.local_store import gateway_client
from onecommit.settings import Settings


class GatewayRefused(OnecommitError):
    """The gateway refused a call; the message is its own."""


class GatewayUnavailable(OnecommitError):
    """The gateway did not answer within the retry budget."""


# Statuses that mean "not now" rather than "no".
_TRANSIENT = {502, 503, 504}


class GatewayClient:
    """The gateway as a whole: what holds for every model it serves."""

    def __init__(self, settings: Settings, retry_s: float | None = None) -> None:
        self._http = gateway_client(settings)
        self._retry_s = settings.gateway_retry_s if retry_s is None else retry_s

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self._retry_s
        delay = 0.2
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                if response.status_code not in _TRANSIENT:
                    break
                why = f"{response.status_code}: {_error(response)}"
            except httpx.TransportError as error:
                why = f"{type(error).__name__}"
            if time.monotonic() + delay > deadline:
                raise GatewayUnavailable(f"gateway {method} {path} did not succeed within "
                                         f"{self._retry_s:.0f} s ({why}): check `invoke status` "
                                         "and `invoke logs gateway`")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if response.status_code >= 400:
            raise GatewayRefused(f"gateway {method} {path} refused ({response.status_code}): "
                               f"{_error(response)}")
        return response.json()

    def models(self) -> dict[str, Any]:
        """Every model with desired state: its pins, strategy, revision and whether its
        champion is served now (`invoke status`)."""
        answer: dict[str, Any] = self._call("GET", "/models")
        return answer

    def rollout_pages(self) -> dict[str, dict[str, Any]]:
        """What the rollout page shows, per model (`invoke watch` draws one)."""
        pages: dict[str, dict[str, Any]] = self._call("GET", "/ui/rollout.json")["models"]
        return pages


class Gateway(GatewayClient):
    """One model's admin API: every call goes to `/models/{model}/...`."""

    def __init__(self, settings: Settings, model: str, retry_s: float | None = None) -> None:
        super().__init__(settings, retry_s)
        self.model = model
        self._prefix = f"/models/{model}"

    def reload(self, alias: str, expected_version: int) -> dict[str, Any]:
        """Pin the alias's version, compare-and-set: the gateway refuses (409, nothing pinned)
        when the alias points elsewhere by then. Returns what it pinned (the evidence)."""
        pinned: dict[str, Any] = self._call("POST", f"{self._prefix}/variant/{alias}/reload",
                                            params={"expected_version": expected_version})
        return pinned

    def unpin(self, alias: str) -> None:
        self._call("DELETE", f"{self._prefix}/variant/{alias}")

    def traffic(self, **policy: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("PUT", f"{self._prefix}/traffic", json=policy)
        return answer

    def reset_analysis(self) -> None:
        self._call("POST", f"{self._prefix}/analysis/reset")

    def analysis(self, alpha: float = 0.05, sample_size: int = 0) -> dict[str, Any]:
        report: dict[str, Any] = self._call("GET", f"{self._prefix}/analysis",
                                            params={"alpha": alpha, "sample_size": sample_size})
        return report

    def observations(self) -> Observations:
        """What the gateway observed of the champion and the challenger since the analysis
        window started, per traffic split: what `onecommit.analysis.analyse` judges."""
        return Observations.model_validate(
            self._call("GET", f"{self._prefix}/analysis/observations"))

    def note(self, kind: str, version: int, detail: dict[str, Any]) -> None:
        """Record a rollout's start or decision in desired state's history (the rollout page's
        timeline)."""
        self._call("POST", f"{self._prefix}/rollout/events",
                   json={"kind": kind, "version": version, "detail": detail})

    def rollout_page(self) -> dict[str, Any]:
        """What the rollout page shows for this model."""
        pages = self.rollout_pages()
        if self.model not in pages:
            raise GatewayRefused(f"the gateway has no rollout page for {self.model!r}: it has "
                                 "no desired state until its first deploy (models served: "
                                 f"{', '.join(pages) or 'none'})")
        return pages[self.model]

    def variants(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", f"{self._prefix}/variants")
        return answer

    def get_traffic(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", f"{self._prefix}/traffic")
        return answer


def on_every_worker(settings: Settings, path: str, holds: Callable[[dict[str, Any]], bool],
                    timeout_s: float = 30) -> None:
    """Until every gateway worker answers `path` with what `holds` accepts. Each worker follows
    desired state (and the enrichment file) on its own, within a poll interval of a change;
    asked on new connections, which the kernel hands to either, each names itself
    (`replica`)."""
    deadline = time.monotonic() + timeout_s
    agreed: set[str] = set()
    # No keep-alive: every request on a connection of its own, which either worker may accept.
    with httpx.Client(base_url=settings.gateway_url, timeout=10, verify=settings.gateway_verify(),
                      limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
        while len(agreed) < settings.gateway_workers:
            answer: dict[str, Any] = fresh.get(path).json()
            if holds(answer):
                agreed.add(answer["replica"])
            elif time.monotonic() > deadline:
                raise GatewayUnavailable(f"gateway worker {answer['replica']} has not taken "
                                         f"the change on {path} after {timeout_s:.0f} s: see "
                                         "`invoke logs gateway`")


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return response.text[:200]
