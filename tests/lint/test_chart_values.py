"""Our charts' values: every setting described where it is set, and the gateway chart covering
every setting of the gateway that the local profile has."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from onecommit.gateway.settings import GatewaySettings
from onecommit.lint.upstream import dependencies
from onecommit.settings import PROJECT_ROOT, Settings

CHARTS = sorted(p.parent for p in (*PROJECT_ROOT.glob("charts/*/Chart.yaml"),
                                   *PROJECT_ROOT.glob("gitops/*/Chart.yaml"),
                                   *PROJECT_ROOT.glob("baseline/*/Chart.yaml")))
GATEWAY = PROJECT_ROOT / "charts" / "gateway"
# Gateway settings the serving-state work (issue 12) adds to the settings; the chart sets them
# already. Once they are fields, this set changes nothing.
COMING = {"ONECOMMIT_GATEWAY_WORKERS", "ONECOMMIT_SERVING_DB_URL", "ONECOMMIT_GATEWAY_STATE_POLL_S",
          "ONECOMMIT_GATEWAY_PREDICTION_RETENTION_S"}
_ENV_NAME = re.compile(r"^\s*- name: (ONECOMMIT_\w+)\s*$", re.MULTILINE)


def _leaves(node: yaml.Node, skip: set[str]) -> Iterator[yaml.Node]:
    """Keys holding a scalar, outside lists (described by their list's key) and `skip`."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if key.value in skip:
            continue
        if isinstance(value, yaml.ScalarNode):
            yield key
        else:
            yield from _leaves(value, set())


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: str(c.relative_to(PROJECT_ROOT)))
def test_every_value_is_described(chart: Path) -> None:
    text = (chart / "values.yaml").read_text()
    lines = text.splitlines()
    # A dependency's values are described by its own chart (and checked against its schema).
    skip = {d.key for d in dependencies(chart)}
    bare = [f"line {k.start_mark.line + 1}: {k.value}" for k in _leaves(yaml.compose(text), skip)
            if not lines[k.start_mark.line - 1].lstrip().startswith("#")]
    assert bare == []


def _chart_variables() -> set[str]:
    return set(_ENV_NAME.findall((GATEWAY / "templates" / "deployment.yaml").read_text()))


def test_the_chart_sets_every_gateway_setting() -> None:
    gateway_fields = set(GatewaySettings.model_fields) - set(Settings.model_fields)
    wanted = {f"ONECOMMIT_{name.upper()}" for name in gateway_fields | {"gateway_port"}}
    assert wanted - _chart_variables() == set()


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    known = {f"ONECOMMIT_{name.upper()}" for name in GatewaySettings.model_fields}
    assert _chart_variables() - known - COMING == set()
