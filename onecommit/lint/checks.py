"""The checks behind `run_lint`; this module needs the lint environment.

yamllint, helm lint/template of every chart with each env's values (charts with an upstream
dependency rendered without it, their values checked against its schema: upstream.py), Kubernetes
schemas (kubernetes-validate, pinned version) and upstream CRD schemas for every object, resources
on every workload container, no plaintext Secret, ApplicationSets (list and git files generators)
expanded and checked against their AppProjects and the tree, the optional layer's toggles, then
promtool and metric names (rules.py), Dockerfiles (dockerfiles.py), GitHub workflows
(workflows.py) and checkov over every rendered object (policy.py).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onecommit import gitops_toggle
from onecommit.lint import Finding, dockerfiles, policy, rules, upstream, workflows
from onecommit.lint.tools import ensure_promtool, ensure_tools

KUBERNETES_VERSION = "1.31"
YAMLLINT_CONFIG = Path(__file__).with_name("yamllint.yaml")
YAML_DIRS = ("charts", "gitops", "baseline", "kind", "optional", ".github")
MANIFEST_DIRS = ("gitops/bootstrap", "gitops/projects", "gitops/appsets", "baseline", "kind")
# Configuration files that look like manifests but are read by tools, not by Kubernetes.
NOT_KUBERNETES = {"kind.x-k8s.io/v1alpha4"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
BUILTIN_PROJECT = "default"  # exists in every Argo CD and allows every destination
_SECRET_LINE = re.compile(r"^kind:\s*[\"']?Secret[\"']?\s*$", re.MULTILINE)
_TEMPLATE_KEY = re.compile(r"\{\{\s*\.([\w.]+)\s*\}\}")
_SOURCE_COMMENT = re.compile(r"^# Source: (\S+)", re.MULTILINE)

Doc = dict[str, Any]


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


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


def _is_template(path: Path) -> bool:
    """A Helm template: under a chart's templates/ (not YAML until rendered)."""
    return any(parent.name == "templates" and (parent.parent / "Chart.yaml").is_file()
               for parent in path.parents)


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
        if _is_template(path):
            continue
        for problem in linter.run(path.read_text(), config, str(path)):
            findings.append(Finding(_rel(root, path), f"line {problem.line}",
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
        if _is_template(path) and _SECRET_LINE.search(path.read_text()):
            findings.append(Finding(_rel(root, path), "Secret", "plaintext Secret template: "
                                                               "use a SealedSecret"))
    return findings


# ---------------------------------------------------------------- helm
@dataclass(frozen=True)
class Render:
    chart_dir: Path
    env: str
    values: tuple[Path, ...]
    namespace: str

    @property
    def chart(self) -> str:
        return self.chart_dir.name

    @property
    def label(self) -> str:
        return f"chart {self.chart} ({self.env})"


def _renders(root: Path) -> list[Render]:
    """Our charts with their defaults and each env's values (+ overlays such as triton-gpu), and
    the baseline layer's own charts (rules and dashboards) in the baseline namespace."""
    renders = [Render(c.parent, "baseline", (), "onecommit-baseline")
               for c in sorted((root / "baseline").glob("*/Chart.yaml"))]
    for chart_yaml in sorted((root / "charts").glob("*/Chart.yaml")):
        chart_dir, chart = chart_yaml.parent, chart_yaml.parent.name
        renders.append(Render(chart_dir, "default", (), "onecommit-default"))
        for env_dir in sorted((root / "gitops" / "envs").glob("*/values")):
            base = env_dir / f"{chart}.yaml"
            if not base.is_file():
                continue
            env = env_dir.parent.name
            renders.append(Render(chart_dir, env, (base,), f"onecommit-{env}"))
            for overlay in sorted(env_dir.glob(f"{chart}-*.yaml")):
                renders.append(Render(chart_dir,
                                      f"{env}+{overlay.stem.removeprefix(chart + '-')}",
                                      (base, overlay), f"onecommit-{env}"))
    return renders


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def _helm_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.startswith(("==>", "[INFO]")) and "chart(s) linted" not in ln]
    return " | ".join(lines)[:600]


@dataclass
class Rendered:
    """One render's objects, each with the template file it came from, for the later checks."""

    label: str
    objects: list[tuple[str, Doc]] = field(default_factory=list)


def _render(root: Path, helm: Path, chart_dir: Path, render: Render,
            rendered: list[Rendered]) -> list[Finding]:
    flags = [a for v in render.values for a in ("-f", str(v))]
    file = _rel(root, render.values[-1] if render.values else render.chart_dir / "values.yaml")
    label = render.label
    findings: list[Finding] = []
    lint = _helm(helm, "lint", "--strict", str(chart_dir), *flags)
    if lint.returncode != 0:
        problem = _helm_error(lint.stdout + lint.stderr)
        findings.append(Finding(file, label, f"helm lint: {problem}"))
    release = f"{render.chart}-{render.env.split('+')[0]}"
    out = _helm(helm, "template", release, str(chart_dir), "--namespace", render.namespace,
                *flags)
    if out.returncode != 0:
        return [*findings, Finding(file, label, "helm template: " + _helm_error(out.stderr))]
    result = Rendered(label)
    for chunk in re.split(r"^---\s*$", out.stdout, flags=re.MULTILINE):
        doc = yaml.safe_load(chunk)
        if isinstance(doc, dict):
            source = _SOURCE_COMMENT.search(chunk)
            where = (_rel(root, render.chart_dir.parent / source.group(1)) if source
                     else _rel(root, render.chart_dir))
            result.objects.append((where, doc))
    rendered.append(result)
    return findings


def check_charts(root: Path, shared_dir: Path, helm: Path, schemas: Schemas, scratch: Path,
                 rendered: list[Rendered]) -> list[Finding]:
    """helm lint + template of every chart and env; charts with an upstream dependency render
    without it and have their dependency values checked against the upstream schema."""
    findings: list[Finding] = []
    for render in _renders(root):
        chart_dir = upstream.renderable(render.chart_dir, scratch)
        findings += upstream.check_values(root, shared_dir, render.chart_dir, render.values,
                                          render.label)
        findings += _render(root, helm, chart_dir, render, rendered)
    for result in rendered:
        for where, doc in result.objects:
            findings += check_object(doc, where, schemas, label=f"{result.label} ")
    return findings


# ---------------------------------------------------------------- Argo CD
@dataclass
class Project:
    name: str
    source_repos: list[str]
    destinations: list[tuple[str, str]]  # (server, namespace) globs


def _projects(manifests: list[tuple[str, Doc]]) -> dict[str, Project]:
    projects = {}
    for _, doc in manifests:
        if doc.get("kind") == "AppProject":
            spec = doc.get("spec") or {}
            projects[doc["metadata"]["name"]] = Project(
                doc["metadata"]["name"], list(spec.get("sourceRepos") or []),
                [(d.get("server", "*"), d.get("namespace", "*"))
                 for d in spec.get("destinations") or []])
    return projects


def _expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [p for alt in match.group(1).split(",") for p in _expand_braces(head + alt + tail)]


def check_application(root: Path, file: str, obj: str, spec: Doc,
                      projects: dict[str, Project]) -> list[Finding]:
    findings = []
    name = spec.get("project")
    project = projects.get(str(name))
    if name != BUILTIN_PROJECT and project is None:
        findings.append(Finding(file, obj, f"AppProject {name!r} does not exist in gitops/projects "
                                           f"(known: {', '.join(sorted(projects))})"))
    destination = spec.get("destination") or {}
    namespace = str(destination.get("namespace", ""))
    server = str(destination.get("server", destination.get("name", "")))
    if project is not None and not any(
        fnmatch.fnmatchcase(server, s) and fnmatch.fnmatchcase(namespace, n)
        for s, n in project.destinations
    ):
        allowed = ", ".join(n for _, n in project.destinations)
        findings.append(Finding(file, obj, f"destination namespace {namespace!r} is not allowed by "
                                           f"AppProject {name!r} (allowed: {allowed})"))
    sources = list(spec.get("sources") or []) + ([spec["source"]] if spec.get("source") else [])
    for source in sources:
        repo = str(source.get("repoURL", ""))
        allowed_repos = project.source_repos if project is not None else ["*"]
        if not any(fnmatch.fnmatchcase(repo, r) for r in allowed_repos):
            findings.append(Finding(file, obj, f"source repo {repo!r} is not in AppProject "
                                               f"{name!r} sourceRepos"))
        path = source.get("path")
        base = root
        if path is not None:
            base = (root / str(path)).resolve()
            if not base.is_dir() or not base.is_relative_to(root):
                findings.append(Finding(file, obj,
                                        f"source path {path!r} does not exist in the repo"))
                continue
            include = (source.get("directory") or {}).get("include")
            for pattern in _expand_braces(str(include)) if include else []:
                if not [p for p in base.rglob("*") if fnmatch.fnmatchcase(_rel(base, p), pattern)]:
                    findings.append(Finding(file, obj, f"directory.include {pattern!r} matches "
                                                       f"no file under {path}"))
        for value_file in (source.get("helm") or {}).get("valueFiles") or []:
            value_file = str(value_file)
            if value_file.startswith("$values/"):
                target = (root / value_file.removeprefix("$values/")).resolve()
            else:
                target = (base / value_file).resolve()
            if not target.is_file() or not target.is_relative_to(root):
                findings.append(Finding(file, obj, f"helm value file {value_file!r} does not exist "
                                                   f"in the repo"))
    return findings


def _render_template(node: Any, params: dict[str, Any], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {_render_template(k, params, problems): _render_template(v, params, problems)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_render_template(v, params, problems) for v in node]
    if isinstance(node, str) and "{{" in node:
        def substitute(match: re.Match[str]) -> str:
            value: Any = params
            for key in match.group(1).split("."):  # {{.path.basename}}: nested params
                if not isinstance(value, dict) or key not in value:  # missingkey=error
                    problems.append(f"map has no entry for key {key!r}")
                    return match.group(0)
                value = value[key]
            return str(value)
        rendered = _TEMPLATE_KEY.sub(substitute, node)
        if "{{" in rendered and not problems:
            problems.append(f"template {node!r} uses more than {{{{.key}}}}: not checked offline")
        return rendered
    return node


def _git_file_params(root: Path, pattern: str) -> list[Doc]:
    """Argo CD's git files generator over this tree: one parameter set per file, or per item of
    a file holding a list, plus the file's path parameters (goTemplate layout)."""
    params = []
    for path in sorted(root.glob(pattern)):
        data = yaml.safe_load(path.read_text())
        directory = path.parent.relative_to(root)
        location = {"path": str(directory), "basename": directory.name, "filename": path.name,
                    "basenameNormalized": re.sub(r"[^a-z0-9.-]", "-", directory.name.lower()),
                    "filenameNormalized": re.sub(r"[^a-z0-9.-]", "-", path.name.lower()),
                    "segments": list(directory.parts)}
        for item in data if isinstance(data, list) else [data or {}]:
            params.append({**item, "path": location})
    return params


def _generator_params(root: Path, generator: Doc) -> tuple[list[Doc], list[str]]:
    """Every parameter set the generator can yield. A selector is not applied: a toggle flip
    turns any of them into an Application, so all are checked; its keys must exist though."""
    if "list" in generator:
        params = [dict(e) for e in (generator["list"] or {}).get("elements") or []]
    elif "git" in generator and (generator["git"] or {}).get("files"):
        params = [p for f in generator["git"]["files"] if not f.get("exclude")
                  for p in _git_file_params(root, str(f.get("path", "")))]
        if not params:
            return [], [f"git files generator matches no file: {generator['git']['files']}"]
    else:
        return [], [f"generator {sorted(generator)} is neither a list nor a git files generator: "
                    "its Applications are not checked"]
    labels = ((generator.get("selector") or {}).get("matchLabels") or {})
    problems = [f"selector label {key!r} is missing from {p}" for p in params for key in labels
                if key not in p]
    return params, problems


def check_toggles(root: Path) -> list[Finding]:
    """The optional layer's toggles (gitops/envs/<env>/optional.yaml) are well-formed."""
    findings = []
    for path in sorted((root / "gitops" / "envs").glob("*/optional.yaml")):
        try:
            gitops_toggle.load(path)
        except gitops_toggle.ToggleError as error:
            findings.append(Finding(_rel(root, path), "optional layer toggle",
                                    str(error).replace(f"{path}: ", "")))
    return findings


def check_applicationset(root: Path, file: str, doc: Doc, schemas: Schemas,
                         projects: dict[str, Project]) -> list[Finding]:
    findings = []
    spec = doc.get("spec") or {}
    obj = _obj(doc)
    options = spec.get("goTemplateOptions") or []
    if spec.get("goTemplate") is not True or "missingkey=error" not in options:
        findings.append(Finding(file, obj, "needs goTemplate: true and goTemplateOptions "
                                           "[missingkey=error]"))
    template = spec.get("template") or {}
    for generator in spec.get("generators") or []:
        elements, generator_problems = _generator_params(root, generator)
        findings += [Finding(file, obj, p) for p in generator_problems]
        for element in elements:
            problems: list[str] = []
            rendered = _render_template(template, dict(element), problems)
            app_name = (rendered.get("metadata") or {}).get("name", "?")
            app_obj = f"{obj} -> Application/{app_name}"
            findings += [Finding(file, app_obj, p) for p in problems]
            app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {**(rendered.get("metadata") or {}),
                                "namespace": doc["metadata"].get("namespace", "argocd")},
                   "spec": rendered.get("spec") or {}}
            findings += [Finding(file, app_obj, p) for p in schemas.validate(app)]
            app_spec: Doc = rendered.get("spec") or {}
            findings += check_application(root, file, app_obj, app_spec, projects)
    return findings


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
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True,
                            check=False)
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
        rel, text = _rel(root, path), raw.decode("utf-8", errors="replace")
        findings += [Finding(rel, f"line {number}", f"{kind} in a tracked file: remove it from "
                             "git (and its history) and rotate it; keep credentials in "
                             "secrets.local.yaml and commit them sealed (`invoke seal`)")
                     for number, kind in _credential_lines(text)]
        top = Path(rel).parts[0] if Path(rel).parts else ""
        if path.suffix in (".yaml", ".yml") and top not in YAML_DIRS:
            findings += _plaintext_secrets_in(rel, text)
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
        if _is_template(path):
            continue  # rendered and checked with its chart
        try:
            docs = _load_docs(path)
        except yaml.YAMLError as error:
            findings.append(Finding(_rel(root, path), "(file)", f"not YAML: {error}"))
            continue
        manifests += [(_rel(root, path), d) for d in docs if _is_manifest(d)]
    return manifests, findings


def _other_secrets(root: Path, files: list[Path], manifest_files: set[str]) -> Iterator[Finding]:
    """Secrets outside the manifest directories (values dirs, kind/, optional/, chart values)."""
    for path in files:
        rel = _rel(root, path)
        if _is_template(path) or rel in manifest_files:
            continue
        try:
            docs = _load_docs(path)
        except yaml.YAMLError:
            continue  # yamllint reports it
        for doc in docs:
            if doc.get("kind") == "Secret":
                yield Finding(rel, _obj(doc), "plaintext Secret: commit a SealedSecret instead")


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
    projects = _projects(manifests)
    findings += check_toggles(root)
    for file, doc in manifests:
        findings += check_object(doc, file, schemas)
        if doc.get("kind") == "Application":
            findings += check_application(root, file, _obj(doc), doc.get("spec") or {}, projects)
        elif doc.get("kind") == "ApplicationSet":
            findings += check_applicationset(root, file, doc, schemas, projects)
    helm = ensure_tools(state_dir) / "helm"
    rendered: list[Rendered] = []
    with tempfile.TemporaryDirectory(prefix="onecommit-lint-") as scratch:
        findings += check_charts(root, shared_dir, helm, schemas, Path(scratch), rendered)
        objects = {re.sub(r"\W+", "_", r.label).strip("_"):
                   [(policy.Scanned(where, r.label), doc) for where, doc in r.objects]
                   for r in rendered}
        skips, skip_problems = policy.tree_skips(root)
        findings += skip_problems
        for render in objects.values():
            for scanned, doc in render:
                findings += policy.annotation_skips(scanned.file, scanned.label, doc)
        checkov = policy.run_checkov(root, Path(scratch), objects, skips)  # slow: runs meanwhile
        findings += rules.check_baseline_charts(root, ensure_promtool(state_dir))
        findings += dockerfiles.check_dockerfiles(root)
        findings += workflows.check_workflows(root)
        findings += policy.findings(checkov, root, objects)
    return sorted(set(findings))
