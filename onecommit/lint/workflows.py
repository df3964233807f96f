"""`.github/workflows/*.yml` against GitHub's workflow schema (SchemaStore's, as vendored in the
check-jsonschema wheel: no download at run time), plus the job-level rules the schema cannot
express: every job has a timeout and every `uses:` names a version.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from onecommit.lint import Finding

_SCHEMA = ("check_jsonschema", "builtin_schemas/vendor/github-workflows.json")


@functools.cache
def _validator() -> Any:
    package, name = _SCHEMA
    schema = json.loads(importlib.resources.files(package).joinpath(name).read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _workflow(path: Path) -> Any:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and True in data:
        data["on"] = data.pop(True)
    return data


def check_workflow(root: Path, path: Path) -> list[Finding]:
    rel = str(path.relative_to(root))
    try:
        data = _workflow(path)
    except yaml.YAMLError as error:
        return [Finding(rel, "(file)", f"not YAML: {error}")]
    findings = []
    for found in sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path)):
        # A oneOf failure describes the whole job; its best sub-error names the wrong key.
        best = jsonschema.exceptions.best_match(found.context) if found.context else found
        where = ".".join(str(p) for p in best.absolute_path) or "(root)"
        findings.append(Finding(rel, f"workflow at {where}",
                                f"GitHub workflow schema: {best.message[:240]}"))
    for name, job in ((data or {}).get("jobs") or {}).items():
        if not isinstance(job, dict):
            continue
        if "timeout-minutes" not in job and "uses" not in job:
            findings.append(Finding(rel, f"job {name}", "no timeout-minutes: a hung step would "
                                                        "hold a runner for 6 hours"))
        for step in job.get("steps") or []:
            uses = str(step.get("uses", "")) if isinstance(step, dict) else ""
            if uses and not uses.startswith(("./", "docker://")) and "@" not in uses:
                findings.append(Finding(rel, f"job {name}", f"action {uses!r} has no @version"))
    return findings


def check_workflows(root: Path) -> list[Finding]:
    directory = root / ".github" / "workflows"
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
    return [f for path in files for f in check_workflow(root, path)]
