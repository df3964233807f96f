"""checkov over every rendered object and every Dockerfile, with zero unexplained failures.

Skips are explained or refused: tree-wide ones in checkov-skips.yaml (check id -> reason),
per-object ones as `checkov.io/skip<N>: <ID>=<reason>` annotations. checkov runs offline
(`--skip-download`) on the objects `helm template` produced, each written to a scratch file
named after its render, and failures are mapped back to the template and render they came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onecommit.lint import Finding

SKIPS_FILE = Path(__file__).with_name("checkov-skips.yaml")
_MIN_REASON = 20  # characters: a reason says why, an id or "n/a" does not
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


@dataclass(frozen=True)
class Scanned:
    """An object handed to checkov: where it came from, for the finding."""

    file: str
    label: str


def tree_skips(root: Path, skips_file: Path = SKIPS_FILE) -> tuple[dict[str, str], list[Finding]]:
    """The tree-wide skips (check id -> reason) and a finding per skip without a reason."""
    data = yaml.safe_load(skips_file.read_text()) or {}
    rel = os.path.relpath(skips_file, root)
    problems = [Finding(rel, check, f"skip without a reason of at least {_MIN_REASON} characters")
                for check, reason in data.items()
                if not isinstance(reason, str) or len(reason.strip()) < _MIN_REASON]
    return {str(k): str(v) for k, v in data.items()}, problems


def annotation_skips(file: str, label: str, doc: dict[str, Any]) -> Iterator[Finding]:
    annotations = ((doc.get("metadata") or {}).get("annotations")) or {}
    for key, value in annotations.items():
        if str(key).startswith("checkov.io/skip"):
            _, _, reason = str(value).partition("=")
            if len(reason.strip()) < _MIN_REASON:
                yield Finding(file, label, f"annotation {key}: {value!r} has no reason: write "
                                           "<CHECK_ID>=<why this object is an exception>")


def _documents(output: str) -> Iterator[dict[str, Any]]:
    """checkov's JSON output: one or more JSON values, each a report or a list of reports."""
    decoder, index = json.JSONDecoder(), 0
    while index < len(output):
        while index < len(output) and output[index].isspace():
            index += 1
        if index == len(output):
            return
        value, index = decoder.raw_decode(output, index)
        yield from value if isinstance(value, list) else [value]


def _resource_key(resource: str) -> tuple[str, str]:
    """checkov names Kubernetes resources Kind.namespace.name[...]: keep kind and name."""
    kind, _, rest = resource.partition(".")
    _, _, name = rest.partition(".")
    return kind, name


def run_checkov(root: Path, scratch: Path, objects: dict[str, list[tuple[Scanned, dict[str, Any]]]],
                skips: dict[str, str]) -> subprocess.Popen[str]:
    """Start checkov in the background on the rendered objects and docker/; see `findings`."""
    k8s = scratch / "checkov-k8s"
    k8s.mkdir()
    for name, docs in objects.items():
        (k8s / f"{name}.yaml").write_text(yaml.safe_dump_all([d for _, d in docs]))
    checkov = Path(sys.executable).with_name("checkov")
    command = [str(checkov), "-d", str(k8s), "--framework", "kubernetes", "-o", "json",
               "--quiet", "--compact", "--skip-download"]
    if (root / "docker").is_dir():
        command[3:3] = ["-d", str(root / "docker")]
        command.insert(command.index("kubernetes") + 1, "dockerfile")
    if skips:
        command += ["--skip-check", ",".join(sorted(skips))]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    # Not the command runner: checkov runs in the background while the other checks do, and
    # `findings` collects it.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def findings(process: subprocess.Popen[str], root: Path,
             objects: dict[str, list[tuple[Scanned, dict[str, Any]]]]) -> list[Finding]:
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode not in (0, 1) or not stdout.strip():
        return [Finding("onecommit/lint/policy.py", "checkov",
                        f"checkov failed (exit {process.returncode}): {stderr.strip()[-400:]}")]
    result: set[Finding] = set()
    for report in _documents(stdout):
        for failed in (report.get("results") or {}).get("failed_checks") or []:
            problem = f"checkov {failed['check_id']}: {failed['check_name']}"
            path = str(failed.get("file_path", "")).lstrip("/")
            if report.get("check_type") == "dockerfile":
                result.add(Finding(f"docker/{Path(path).name}", "Dockerfile", problem))
                continue
            resource = str(failed.get("resource", ""))
            matches = [(scanned, doc) for scanned, doc in objects.get(Path(path).stem, [])
                       if _is_resource(doc, *_resource_key(resource))]
            for scanned, doc in matches or objects.get(Path(path).stem, [])[:1]:
                what = _obj(doc) if matches else resource
                result.add(Finding(scanned.file, f"{scanned.label} {what}", problem))
    return sorted(result)


def _obj(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _is_resource(doc: dict[str, Any], kind: str, name: str) -> bool:
    """checkov's graph checks report a workload's pod as Pod.<ns>.<workload name>.<labels>."""
    own = str((doc.get("metadata") or {}).get("name", ""))
    if kind == "Pod" and doc.get("kind") in _WORKLOADS:
        return name == own or name.startswith(own + ".")
    return doc.get("kind") == kind and name == own
