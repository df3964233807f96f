"""Prometheus rules and Grafana dashboards of the baseline charts (`baseline/<chart>/`).

`rules/*.yaml` must pass `promtool check rules`, `tests/*.yaml` must pass `promtool test rules`,
and every series named by a rule, a rule test or a dashboard must be exported by something: the
gateway (read from its code), an exporter listed in the chart's `exporters.yaml`, or a recording
rule. A misspelt metric otherwise gives an alert that never fires and a panel that stays empty.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from onecommit.commands import run
from onecommit.lint import Finding

GATEWAY_METRICS = Path(__file__).resolve().parents[1] / "gateway" / "metrics.py"
# Series each prometheus_client type exposes (counters lose and regain `_total`).
_SUFFIXES = {"Counter": ("_total", "_created"), "Gauge": ("",),
             "Histogram": ("_bucket", "_count", "_sum", "_created"),
             "Summary": ("", "_count", "_sum", "_created")}
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


def series_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels excluded)."""
    text = _STRINGS.sub('""', expr)
    while _MATCHERS.search(text):  # innermost first: subqueries hold selectors
        text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m.group(1) for m in _IDENTIFIER.finditer(text)
            if not m.group(2) and m.group(1).lower() not in _KEYWORDS}


def gateway_series(source: Path = GATEWAY_METRICS) -> set[str]:
    """Series the gateway exports, from the metric constructors in its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _SUFFIXES and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            base = first.value.removesuffix("_total") if node.func.id == "Counter" else first.value
            names |= {base + suffix for suffix in _SUFFIXES[node.func.id]}
    return names


def _exporter_series(chart: Path) -> set[str]:
    inventory = chart / "exporters.yaml"
    if not inventory.is_file():
        return set()
    data = yaml.safe_load(inventory.read_text()) or {}
    return {str(s) for entry in data.values() for s in (entry or {}).get("series") or []}


def _rules(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text()) or {}
    return [r for g in data.get("groups") or [] for r in g.get("rules") or []]


def _rule_exprs(path: Path) -> Iterator[tuple[str, str]]:
    for rule in _rules(path):
        kind = "alert" if "alert" in rule else "record"
        yield f"{kind} {rule.get(kind)}", str(rule.get("expr", ""))


def _test_exprs(path: Path) -> Iterator[tuple[str, str]]:
    for test in (yaml.safe_load(path.read_text()) or {}).get("tests") or []:
        name = f"test {test.get('name', '?')!r}"
        for series in test.get("input_series") or []:
            yield name, str(series.get("series", ""))
        for check in test.get("promql_expr_test") or []:
            yield name, str(check.get("expr", ""))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # rows nest their panels


def _dashboard_exprs(path: Path) -> Iterator[tuple[str, str]]:
    board = json.loads(path.read_text())
    for panel in _panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            yield f"panel {panel.get('title', '?')!r}", str(target.get("expr", ""))
    for annotation in (board.get("annotations") or {}).get("list") or []:
        yield f"annotation {annotation.get('name', '?')!r}", str(annotation.get("expr", ""))
    for variable in (board.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for metric in _LABEL_VALUES.findall(text):
            yield f"variable {variable.get('name', '?')!r}", metric


def check_metric_names(root: Path, chart: Path) -> list[Finding]:
    rule_files = sorted((chart / "rules").glob("*.yaml"))
    recorded = {str(r["record"]) for f in rule_files for r in _rules(f) if "record" in r}
    known = gateway_series() | _exporter_series(chart) | recorded
    sources = [(f, _rule_exprs(f)) for f in rule_files]
    sources += [(f, _test_exprs(f)) for f in sorted((chart / "tests").glob("*.yaml"))]
    sources += [(f, _dashboard_exprs(f)) for f in sorted((chart / "dashboards").glob("*.json"))]
    findings = []
    for path, exprs in sources:
        for obj, expr in exprs:
            for name in sorted(series_names(expr) - known):
                findings.append(Finding(
                    str(path.relative_to(root)), obj,
                    f"series {name!r} is exported by nothing known (not the gateway's "
                    f"{GATEWAY_METRICS.name}, not {chart.name}/exporters.yaml, not a recording "
                    "rule): fix the name or add its exporter to exporters.yaml"))
    return findings


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([promtool, *args], timeout_s=120, check=False)


def _summary(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return " | ".join(lines)[:800]


def check_promtool(root: Path, chart: Path, promtool: Path) -> list[Finding]:
    findings = []
    for rule_file in sorted((chart / "rules").glob("*.yaml")):
        result = _promtool(promtool, "check", "rules", str(rule_file))
        if result.returncode != 0:
            findings.append(Finding(str(rule_file.relative_to(root)), "promtool check rules",
                                    _summary(result.stdout + result.stderr)))
    for test_file in sorted((chart / "tests").glob("*.yaml")):
        result = _promtool(promtool, "test", "rules", str(test_file))
        if result.returncode != 0:
            findings.append(Finding(str(test_file.relative_to(root)), "promtool test rules",
                                    _summary(result.stdout + result.stderr)))
    return findings


def check_baseline_charts(root: Path, promtool: Path) -> list[Finding]:
    findings: list[Finding] = []
    for chart in sorted(p.parent for p in (root / "baseline").glob("*/Chart.yaml")):
        if (chart / "rules").is_dir():
            findings += check_promtool(root, chart, promtool)
        findings += check_metric_names(root, chart)
    return findings
