"""The checks behind `run_lint`; this module needs the lint environment.

yamllint; the tree resolved as Argo CD would deploy it from the root Applications down, every
Application checked against its AppProject and the tree (argocd.py); helm lint/template of every
chart with its defaults and with the values each Application gives it (charts with an upstream
dependency rendered without it, their values checked against its schema: upstream.py);
Kubernetes schemas (kubernetes-validate, pinned version) and upstream CRD schemas for every
object, resources on every workload container, no plaintext Secret, every Secret reference
defined in its cluster and namespace (secretrefs.py), the repository named once; the optional
layer's toggles, then promtool and metric names (rules.py), Dockerfiles (dockerfiles.py), GitHub
workflows (workflows.py) and checkov over every rendered chart object (policy.py).
"""

from __future__ import annotations

import importlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onecommit import gitops_toggle
from onecommit.commands import run
from onecommit.lint import (
    Finding,
    argocd,
    compose,
    dockerfiles,
    policy,
    rules,
    secretrefs,
    trainer,
    upstream,
    workflows,
)
from onecommit.lint.helm import Helm, Render, Rendered, is_template, rel
from onecommit.lint.tools import ensure_promtool, ensure_tools

KUBERNETES_VERSION = "1.31"
YAMLLINT_CONFIG = Path(__file__).with_name("yamllint.yaml")
YAML_DIRS = ("charts", "gitops", "baseline", "kind", "optional", ".github", "compose")
MANIFEST_DIRS = ("gitops/bootstrap", "gitops/projects", "gitops/appsets", "baseline", "kind")
# Configuration files that look like manifests but are read by tools, not by Kubernetes.
NOT_KUBERNETES = {"kind.x-k8s.io/v1alpha4"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_SECRET_LINE = re.compile(r"^kind:\s*[\"']?Secret[\"']?\s*$", re.MULTILINE)

Doc = dict[str, Any]


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _obj(doc: Doc) -> str:
    meta = doc.get("metadata") or {}
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    return f"{doc.get('kind', '?')}/{name}"


def _yaml_files(root: Path, dirs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for top in dirs:
        base = root / top
        if base.is_dir():
            files += [p for p in base.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files)


# libyaml's loader: the upstream CRDs are megabytes of YAML, ten times slower in pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_LOADER) if isinstance(d, dict)]


def _is_manifest(doc: Doc) -> bool:
    return (isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)
            and doc["apiVersion"] not in NOT_KUBERNETES)


# ---------------------------------------------------------------- yamllint
def check_yamllint(root: Path, files: list[Path]) -> list[Finding]:
    config = _module("yamllint.config").YamlLintConfig(file=str(YAMLLINT_CONFIG))
    linter = _module("yamllint.linter")
    findings = []
    for path in files:
        if is_template(path):
            continue
        for problem in linter.run(path.read_text(), config, str(path)):
            findings.append(Finding(rel(root, path), f"line {problem.line}",
                                    f"yamllint {problem.level}: {problem.desc} ({problem.rule})"))
    return findings


# ---------------------------------------------------------------- schemas
def _close(schema: Any) -> Any:
    """CRD schemas prune unknown fields silently; make them errors (additionalProperties false)."""
    if isinstance(schema, list):
        return [_close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _close(v) for k, v in schema.items()}
    open_object = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not open_object:
        out["additionalProperties"] = False
    return out


@dataclass
class Schemas:
    crds: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def load(cls, shared_dir: Path) -> Schemas:
        validator_cls = _module("jsonschema").Draft7Validator
        schemas = cls()
        for path in sorted((shared_dir / "crds").rglob("*.yaml")):
            for crd in _load_docs(path):
                if crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec.get("versions", []):
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if schema is not None:
                        api_version = f"{spec['group']}/{version['name']}"
                        schemas.crds[(api_version, spec["names"]["kind"])] = validator_cls(
                            _close(schema))
        return schemas

    def validate(self, doc: Doc) -> list[str]:
        key = (doc["apiVersion"], doc["kind"])
        if key in self.crds:
            errors = sorted(self.crds[key].iter_errors(doc), key=lambda e: list(e.absolute_path))
            return [_describe(e, "CRD schema") for e in errors]
        kv = _module("kubernetes_validate")
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except kv.SchemaNotFoundError:
            return [f"no Kubernetes {KUBERNETES_VERSION} schema and no CRD in shared crds/ for "
                    f"{doc['apiVersion']} {doc['kind']}"]
        except kv.ValidationError as error:
            return [_describe(error, f"Kubernetes {KUBERNETES_VERSION} schema")]
        return []


def _describe(error: Any, what: str) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{what}: at {where}: {error.message}"


# ---------------------------------------------------------------- per-object checks
def check_object(doc: Doc, file: str, schemas: Schemas, label: str = "") -> list[Finding]:
    obj = label + _obj(doc)
    findings = [Finding(file, obj, problem) for problem in schemas.validate(doc)]
    if doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1":
        findings.append(Finding(file, obj, "plaintext Secret: commit a SealedSecret instead"))
    if doc.get("kind") in WORKLOAD_KINDS:
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for group in ("initContainers", "containers"):
            for container in pod.get(group) or []:
                resources = container.get("resources") or {}
                missing = [k for k in ("requests", "limits") if not resources.get(k)]
                if missing:
                    findings.append(Finding(file, obj, f"container {container.get('name')!r} has "
                                                       f"no resources {' and '.join(missing)}"))
    return findings


def check_secret_text(root: Path, files: list[Path]) -> list[Finding]:
    """Templates are not YAML; a `kind: Secret` line in any tracked file is enough to refuse."""
    findings = []
    for path in files:
        if is_template(path) and _SECRET_LINE.search(path.read_text()):
            findings.append(Finding(rel(root, path), "Secret", "plaintext Secret template: "
                                                               "use a SealedSecret"))
    return findings


# ---------------------------------------------------------------- helm
def _renders(root: Path, resolution: argocd.Resolution) -> list[Render]:
    """Every chart of charts/ with its defaults; every render an Application asks for; and each
    of those again with an overlay beside its last values file (<chart>-<overlay>.yaml, such as
    triton-gpu.yaml, which a GPU cluster adds)."""
    renders = [Render(c.parent, f"chart {c.parent.name} (default)", (), "onecommit-default",
                      f"{c.parent.name}-default")
               for c in sorted((root / "charts").glob("*/Chart.yaml"))]
    for render in resolution.renders:
        renders.append(render)
        last = render.values[-1] if render.values else None
        if last is None or last.stem != render.chart:
            continue
        for overlay in sorted(last.parent.glob(f"{render.chart}-*.yaml")):
            name = overlay.stem.removeprefix(render.chart + "-")
            renders.append(Render(render.chart_dir, render.label.replace(")", f"+{name})"),
                                  (*render.values, overlay), render.namespace, render.release,
                                  render.parameters, render.inline_values))
    return list(dict.fromkeys(renders))


def check_charts(root: Path, shared_dir: Path, helm: Helm, schemas: Schemas,
                 resolution: argocd.Resolution) -> list[Finding]:
    """helm lint + template of every render; charts with an upstream dependency render without
    it and have their dependency values checked against the upstream schema."""
    findings: list[Finding] = []
    for render in _renders(root, resolution):
        findings += upstream.check_values(root, shared_dir, render.chart_dir, render.values,
                                          render.label)
        findings += helm.lint(render)
        result = helm.template(render)
        if isinstance(result, Finding):
            findings.append(result)
            continue
        for where, doc in result.objects:
            findings += check_object(doc, where, schemas, label=f"{result.label} ")
    return findings


def check_repo_named_once(root: Path, resolution: argocd.Resolution,
                          files: list[Path]) -> list[Finding]:
    """The root Application names the repository; everything else is handed it, so pointing
    the tree at another git server is one change."""
    url = resolution.repo_url
    return [Finding(rel(root, path), "repository URL",
                    f"{url} is written out here: it is named once, in {resolution.root_file}, "
                    "and handed down (repo.url, $ARGOCD_APP_SOURCE_REPO_URL)")
            for path in files if url and rel(root, path) != resolution.root_file
            and url in path.read_text()]


def check_toggles(root: Path) -> list[Finding]:
    """The optional layer's toggles (gitops/envs/<env>/optional.yaml) are well-formed."""
    findings = []
    for path in sorted((root / "gitops" / "envs").glob("*/optional.yaml")):
        try:
            gitops_toggle.load(path)
        except gitops_toggle.ToggleError as error:
            findings.append(Finding(rel(root, path), "optional layer toggle",
                                    str(error).replace(f"{path}: ", "")))
    return findings


def _workload_renders(root: Path, rendered: list[Rendered]) -> list[Rendered]:
    """The renders policy scans: workload charts, not the tree's own Argo CD charts."""
    return [r for r in rendered if not r.render.chart_dir.is_relative_to(root / "gitops")]


# ---------------------------------------------------------------- credentials in tracked files
# A whole PEM block (header, at least a line of body, footer), also when indented in YAML or
# JSON-escaped; a lone header in code or docs is not a key.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\w+/=\s\\:,-]{64,}?-----END ")
# Formats with a recognisable shape; matches are never printed, only their kind and line.
_TOKENS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{50,})"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Slack webhook URL": re.compile(r"hooks\.slack\.com/services/T\w+/B\w+/\w+"),
    "JSON web token": re.compile(r"\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"),
    "Google API key": re.compile(r"\bAIza[\w-]{35}\b"),
}
# `adminToken: <value>`, `DB_PASSWORD=<value>`, `"api_key": "<value>"`: a credential-named key
# with a literal value of 20-200 URL/base64 characters (sealed values are longer).
_ASSIGNED = re.compile(
    r"""(?i)[\w.-]*(?:token|secret|password|passwd|api[_-]?key|access[_-]?key)["']?\s*[:=]\s*"""
    r"""["']?([\w+/-]{20,200}={0,2})(?:["',]|\s|$)""")
_MAX_SCANNED_BYTES = 5 * 2**20


def _tracked_files(root: Path) -> list[Path]:
    """What git would publish (`git ls-files`); every file when root is not a git work tree."""
    listed = run(["git", "-C", root, "ls-files", "-z"], check=False, text=False)
    if listed.returncode == 0:
        return [root / name for name in listed.stdout.decode().split("\0") if name]
    return [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts]


def _looks_random(value: str) -> bool:
    """Generated credentials mix letters and digits over many symbols; names and prose do not."""
    return (len(set(value)) >= 10 and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value))


def _credential_lines(text: str) -> Iterator[tuple[int, str]]:
    for key in _PRIVATE_KEY.finditer(text):
        yield text.count("\n", 0, key.start()) + 1, "private key"
    for number, line in enumerate(text.splitlines(), 1):
        kinds = [kind for kind, pattern in _TOKENS.items() if pattern.search(line)]
        assigned = _ASSIGNED.search(line)
        if not kinds and assigned and _looks_random(assigned.group(1)):
            kinds.append("credential-looking value")
        yield from ((number, kind) for kind in kinds)


def check_tracked_credentials(root: Path) -> list[Finding]:
    """No private key, token-looking string or plaintext Secret in any tracked file."""
    findings = []
    for path in _tracked_files(root):
        try:
            raw = path.read_bytes()[:_MAX_SCANNED_BYTES]
        except OSError:
            continue  # listed but deleted in the work tree
        if b"\0" in raw[:8192]:
            continue  # binary
        file, text = rel(root, path), raw.decode("utf-8", errors="replace")
        findings += [Finding(file, f"line {number}", f"{kind} in a tracked file: remove it from "
                             "git (and its history) and rotate it; keep credentials in "
                             "secrets.local.yaml and commit them sealed (`invoke seal`)")
                     for number, kind in _credential_lines(text)]
        top = Path(file).parts[0] if Path(file).parts else ""
        if path.suffix in (".yaml", ".yml") and top not in YAML_DIRS:
            findings += _plaintext_secrets_in(file, text)
    return findings


def _plaintext_secrets_in(rel: str, text: str) -> list[Finding]:
    """Secrets in YAML outside the directories the manifest checks cover (docs, examples)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []
    return [Finding(rel, _obj(d), "plaintext Secret: commit a SealedSecret instead")
            for d in docs if d.get("kind") == "Secret" and d.get("apiVersion") == "v1"]


# ---------------------------------------------------------------- entry point
def _manifests(root: Path) -> tuple[list[tuple[str, Doc]], list[Finding]]:
    manifests, findings = [], []
    for path in _yaml_files(root, MANIFEST_DIRS):
        if is_template(path):
            continue  # rendered and checked with its chart
        try:
            docs = _load_docs(path)
        except yaml.YAMLError as error:
            findings.append(Finding(rel(root, path), "(file)", f"not YAML: {error}"))
            continue
        manifests += [(rel(root, path), d) for d in docs if _is_manifest(d)]
    return manifests, findings


def _other_secrets(root: Path, files: list[Path], manifest_files: set[str]) -> Iterator[Finding]:
    """Secrets outside the manifest directories (values dirs, kind/, optional/, chart values)."""
    for path in files:
        file = rel(root, path)
        if is_template(path) or file in manifest_files:
            continue
        try:
            docs = _load_docs(path)
        except yaml.YAMLError:
            continue  # yamllint reports it
        for doc in docs:
            if doc.get("kind") == "Secret":
                yield Finding(file, _obj(doc), "plaintext Secret: commit a SealedSecret instead")


def run_all(root: Path, shared_dir: Path, state_dir: Path) -> list[Finding]:
    files = _yaml_files(root, YAML_DIRS)
    findings = check_yamllint(root, files)
    findings += check_secret_text(root, files)
    schemas = Schemas.load(shared_dir)
    if not schemas.crds:
        findings.append(Finding(str(shared_dir / "crds"), "(CRDs)", "no CustomResourceDefinition "
                                                                   "found: pass --shared-dir"))
    manifests, errors = _manifests(root)
    findings += errors
    findings += _other_secrets(root, files, {f for f, _ in manifests})
    findings += check_tracked_credentials(root)
    findings += check_toggles(root)
    for file, doc in manifests:
        findings += check_object(doc, file, schemas)
    with tempfile.TemporaryDirectory(prefix="onecommit-lint-") as scratch:
        helm = Helm(root, ensure_tools(state_dir) / "helm", Path(scratch))
        resolution = argocd.resolve(root, helm)
        findings += resolution.findings
        findings += [finding for deployed in resolution.deployed if deployed.render is None
                     for finding in check_object(deployed.doc, deployed.file, schemas)]
        findings += check_charts(root, shared_dir, helm, schemas, resolution)
        findings += secretrefs.check(root, resolution)
        findings += check_repo_named_once(root, resolution, files)
        objects = {re.sub(r"\W+", "_", r.label).strip("_"):
                   [(policy.Scanned(where, r.label), doc) for where, doc in r.objects]
                   for r in _workload_renders(root, helm.renders)}
        skips, skip_problems = policy.tree_skips(root)
        findings += skip_problems
        for render in objects.values():
            for scanned, doc in render:
                findings += policy.annotation_skips(scanned.file, scanned.label, doc)
        checkov = policy.run_checkov(root, Path(scratch), objects, skips)  # slow: runs meanwhile
        findings += rules.check_baseline_charts(root, ensure_promtool(state_dir))
        findings += dockerfiles.check_dockerfiles(root)
        findings += compose.check_compose(root)
        findings += trainer.check_trainer(helm.renders)
        findings += workflows.check_workflows(root)
        findings += policy.findings(checkov, root, objects)
    return sorted(set(findings))
