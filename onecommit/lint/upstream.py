"""Our charts that depend on an upstream chart (charts/airflow on the official Airflow chart).

Building a dependency needs its Helm repository, and vendoring it would copy upstream code into
the tree; so offline the chart is rendered from a scratch copy without its `dependencies`, and
the values handed to each dependency are validated against that chart's own values schema for the
pinned version, read from `<shared dir>/chart-schemas/<name>.values.schema.json`.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from onecommit.lint import Finding

_EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Dependency:
    name: str
    key: str  # the values key: alias, else name
    version: str
    repository: str


def dependencies(chart_dir: Path) -> list[Dependency]:
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
    return [Dependency(str(d.get("name")), str(d.get("alias") or d.get("name")),
                       str(d.get("version")), str(d.get("repository")))
            for d in meta.get("dependencies") or []]


def _vendored(chart_dir: Path, dep: Dependency) -> bool:
    charts = chart_dir / "charts"
    return (charts / dep.name).is_dir() or (charts / f"{dep.name}-{dep.version}.tgz").is_file()


def renderable(chart_dir: Path, scratch: Path) -> Path:
    """The chart itself if every dependency is vendored, else a copy without `dependencies`."""
    deps = dependencies(chart_dir)
    if all(_vendored(chart_dir, d) for d in deps):
        return chart_dir
    copy = scratch / chart_dir.name
    if not copy.is_dir():
        shutil.copytree(chart_dir, copy)
        meta = yaml.safe_load((copy / "Chart.yaml").read_text())
        meta.pop("dependencies")
        (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy


def merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of values files: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in override.items()}}
    return override


def _layers(chart_dir: Path, value_files: tuple[Path, ...]) -> list[tuple[Path, Any]]:
    files = (chart_dir / "values.yaml", *value_files)
    return [(f, yaml.safe_load(f.read_text()) or {}) for f in files]


def _merged(layers: list[tuple[Path, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = merge(merged, layer)
    return merged


def dependency_values(chart_dir: Path, value_files: tuple[Path, ...]
                      ) -> list[tuple[Dependency, list[tuple[Path, Any]]]]:
    """What each dependency that is not vendored gets (it is not rendered offline): per values
    file of the chart, in order, the part handed to the dependency."""
    deps = [d for d in dependencies(chart_dir) if not _vendored(chart_dir, d)]
    layers = _layers(chart_dir, value_files) if deps else []
    return [(d, [(f, layer.get(d.key) or {}) for f, layer in layers]) for d in deps]


def _without_required(schema: Any) -> Any:
    # Our files hold overrides only; the upstream values.yaml supplies what `required` asks for.
    if isinstance(schema, list):
        return [_without_required(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: _without_required(v) for k, v in schema.items()
            if not (k == "required" and isinstance(v, list))}


@functools.cache
def _validator(schema_file: Path) -> Any:
    import json

    import jsonschema

    schema = _without_required(json.loads(schema_file.read_text()))
    return jsonschema.validators.validator_for(schema)(schema)


def _defines(values: Any, path: list[str | int]) -> bool:
    node = values
    for part in path:
        in_map = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_map or in_list):
            return False
        node = node[part]
    return True


def _schema_file(shared_dir: Path, dep: Dependency) -> Path | None:
    """`<name>.values.schema.json`, or `<vendor>-<name>...` (bitnami-redis) after the repository's
    domain (charts.bitnami.com -> bitnami)."""
    host = (urlsplit(dep.repository).hostname or "").split(".")
    vendor = host[-2] if len(host) >= 2 else ""
    for stem in (dep.name, f"{vendor}-{dep.name}"):
        candidate = shared_dir / "chart-schemas" / f"{stem}.values.schema.json"
        if candidate.is_file():
            return candidate
    return None


def check_values(root: Path, shared_dir: Path, chart_dir: Path, value_files: tuple[Path, ...],
                 label: str) -> Iterator[Finding]:
    """Each dependency's values (chart defaults + env files) against its upstream schema."""
    layers = _layers(chart_dir, value_files)
    merged = _merged(layers)
    for dep in dependencies(chart_dir):
        obj = f"{label} dependency {dep.name}"
        chart_file = str((chart_dir / "Chart.yaml").relative_to(root))
        if not _EXACT_VERSION.match(dep.version):
            yield Finding(chart_file, obj, f"version {dep.version!r} is not an exact x.y.z pin")
        schema_file = _schema_file(shared_dir, dep)
        if schema_file is None:
            yield Finding(chart_file, obj, f"no values schema for {dep.name} in "
                                           f"{shared_dir / 'chart-schemas'}: add the upstream "
                                           f"chart's values.schema.json there (--shared-dir)")
            continue
        for error in _validator(schema_file).iter_errors(merged.get(dep.key) or {}):
            path = [dep.key, *error.absolute_path]
            where = next((f for f, layer in reversed(layers) if _defines(layer, path)),
                         layers[0][0])
            yield Finding(str(where.relative_to(root)), obj,
                          f"{dep.name} {dep.version} values schema: at "
                          f"{'.'.join(str(p) for p in path)}: {error.message[:240]}")
