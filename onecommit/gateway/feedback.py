"""Per-variant outcomes: counts, errors, latency, and online accuracy from ground truth.

Responses are kept as raw bytes in a bounded window keyed by request id and only parsed when
feedback for that request arrives, so the inference path never decodes a response.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from onecommit.gateway.statistics import quantile, two_proportion_test

_BINARY_FORMATS = {"INT64": "q", "INT32": "i", "FP32": "f", "FP64": "d", "BOOL": "?"}


def predicted_label(body: bytes, header_length: int | None, output: str = "label") -> int | None:
    """The first element of the `label` output in a v2 response, JSON or binary-tensor."""
    header = json.loads(body[:header_length] if header_length else body)
    offset = header_length or 0
    for tensor in header.get("outputs", []):
        size = tensor.get("parameters", {}).get("binary_data_size")
        if tensor["name"] == output:
            if size is None:
                return int(tensor["data"][0])
            fmt = _BINARY_FORMATS[tensor["datatype"]]
            return int(struct.unpack_from(f"<{fmt}", body, offset)[0])
        offset += size or 0
    return None


@dataclass
class VariantOutcomes:
    requests: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def summary(self) -> dict[str, Any]:
        window = list(self.latencies_ms)
        return {
            "requests": self.requests, "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "latency_ms": {f"p{int(q * 100)}": quantile(window, q) for q in (0.5, 0.95, 0.99)},
            "feedback": self.labelled,
            "online_accuracy": self.correct / self.labelled if self.labelled else None,
        }


@dataclass(frozen=True)
class _Served:
    variant: str
    body: bytes
    header_length: int | None


class Outcomes:
    def __init__(self, window: int = 20_000) -> None:
        self._variants: dict[str, VariantOutcomes] = {}
        self._served: OrderedDict[str, _Served] = OrderedDict()
        self._window = window

    def _of(self, variant: str) -> VariantOutcomes:
        return self._variants.setdefault(variant, VariantOutcomes())

    def record(self, request_id: str, variant: str, status: int, latency_ms: float,
               body: bytes, header_length: int | None) -> None:
        outcome = self._of(variant)
        outcome.requests += 1
        outcome.latencies_ms.append(latency_ms)
        if status >= 500:
            outcome.errors += 1
        if status != 200:
            # Only answered requests can be judged against ground truth.
            return
        self._served[request_id] = _Served(variant, body, header_length)
        if len(self._served) > self._window:
            self._served.popitem(last=False)

    def feedback(self, request_id: str, label: int) -> tuple[str, bool] | None:
        """Join ground truth to a served request; None when the id is unknown or expired."""
        served = self._served.pop(request_id, None)
        if served is None:
            return None
        predicted = predicted_label(served.body, served.header_length)
        outcome = self._of(served.variant)
        outcome.labelled += 1
        outcome.correct += int(predicted == label)
        return served.variant, predicted == label

    def reset(self) -> None:
        self._variants.clear()
        self._served.clear()

    def analysis(self, alpha: float, required_per_arm: int) -> dict[str, Any]:
        report: dict[str, Any] = {"variants": {n: v.summary() for n, v in self._variants.items()}}
        champion, challenger = self._variants.get("champion"), self._variants.get("challenger")
        if champion and challenger and champion.labelled and challenger.labelled:
            test = two_proportion_test(champion.correct, champion.labelled, challenger.correct,
                                       challenger.labelled, alpha, required_per_arm)
            report["ab_test"] = test.__dict__
        return report
