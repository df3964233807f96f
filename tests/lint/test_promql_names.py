"""Which metric names a PromQL expression selects, for the exported-metric check of the rules."""

from __future__ import annotations

import pytest

from onecommit.lint.rules import gateway_series, series_names


@pytest.mark.parametrize(("expr", "names"), [
    ("sum by (namespace, le) (rate(onecommit_gateway_request_seconds_bucket[5m]))",
     {"onecommit_gateway_request_seconds_bucket"}),
    ('a:b:rate5m > 0.05 and on (model) group_left (variant) c{x="y}z", le="+Inf"} offset 1h',
     {"a:b:rate5m", "c"}),
    ("max_over_time(up[5m:1m]) + 1e3 * Inf - time() < bool NaN", {"up"}),
    ('sum(rate(x{namespace=~"$namespace"}[$__rate_interval])) without (pod) / ignoring (a) y',
     {"x", "y"}),
    ("certmanager_certificate_expiration_timestamp_seconds - time() < 14 * 86400",
     {"certmanager_certificate_expiration_timestamp_seconds"}),
])
def test_series_names(expr: str, names: set[str]) -> None:
    assert series_names(expr) == names


def test_gateway_series_follow_the_client_library_naming() -> None:
    series = gateway_series()
    assert {"onecommit_gateway_requests_total", "onecommit_gateway_request_seconds_bucket",
            "onecommit_gateway_request_seconds_count", "onecommit_gateway_traffic_weight"} <= series
    assert "onecommit_gateway_requests" not in series  # a counter is exposed as <name>_total
