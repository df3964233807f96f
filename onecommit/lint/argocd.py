"""What Argo CD would deploy from this tree, worked out offline from the root Applications down.

The root Applications (`gitops/bootstrap/*.yaml`, the only objects applied by hand) are resolved
once per env of the tree, as that env's cluster applies them: their inline value `env` set to it.
Each Application's sources are rendered as Argo CD renders them: a chart of this tree with its
value files, inline values and parameters (build environment filled in), a directory with its
include and exclude globs, or a chart from a Helm repository (not rendered offline: its value
files must exist, and its values are kept for the checks that read them). Applications and
ApplicationSets in the output are resolved in turn; everything else is what the cluster runs.

Every Application is checked on the way: its AppProject exists and allows its destination, its
repositories and every object it deploys; its chart path, value files and includes exist; and
the only git repository is this one, named by the root and handed down.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onecommit.lint import Finding, upstream
from onecommit.lint.helm import Doc, Helm, Render, rel
from onecommit.secrets import catalog

BOOTSTRAP = Path("gitops") / "bootstrap"
BUILTIN_PROJECT = "default"  # exists in every Argo CD and allows every destination
# The root Application's inline value naming the env its cluster runs.
CLUSTER_ENV = "env"
ENV_LABEL = "onecommit.dev/env"
# What the lint renders at: no particular commit.
REVISION = "0" * 40
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_BUILD_VARIABLE = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")
_TEMPLATE_KEY = re.compile(r"\{\{\s*\.([\w.]+)\s*\}\}")
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                   "ClusterIssuer", "MutatingWebhookConfiguration", "StorageClass",
                   "ValidatingWebhookConfiguration", "PriorityClass", "PersistentVolume"}
_MAX_DEPTH = 8


def root_applications(root: Path) -> list[tuple[Path, Doc]]:
    """The Applications applied by hand: every Application document in gitops/bootstrap/*.yaml
    (the bootstrap chart's own files hold none)."""
    found = []
    for path in sorted((root / BOOTSTRAP).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Application":
                found.append((path, doc))
    return found


@dataclass(frozen=True)
class App:
    """An Application as the cluster would hold it, and where the tree defines it."""

    name: str
    spec: Doc
    labels: Mapping[str, str]
    file: str
    obj: str
    cluster: str  # the env of the cluster it was resolved for

    @classmethod
    def of(cls, doc: Doc, file: str, obj: str, cluster: str) -> App:
        meta = doc.get("metadata") or {}
        return cls(str(meta.get("name", "?")), doc.get("spec") or {}, meta.get("labels") or {},
                   file, obj, cluster)

    @property
    def namespace(self) -> str:
        return str((self.spec.get("destination") or {}).get("namespace", ""))

    @property
    def sources(self) -> list[Doc]:
        single = [self.spec["source"]] if self.spec.get("source") else []
        return list(self.spec.get("sources") or []) + single

    @property
    def label(self) -> str:
        """How findings name what it renders: by env for the env's own Applications."""
        env = self.labels.get(ENV_LABEL)
        return str(env) if env else f"{self.cluster}/{self.name}"


@dataclass(frozen=True)
class Deployed:
    """An object an Application puts on the cluster; `render` is None for a plain manifest."""

    app: App
    file: str
    doc: Doc
    render: Render | None

    @property
    def namespace(self) -> str:
        return str((self.doc.get("metadata") or {}).get("namespace") or self.app.namespace)

    @property
    def obj(self) -> str:
        meta = self.doc.get("metadata") or {}
        where = f"chart {self.render.chart} ({self.app.label})" if self.render else self.app.obj
        return f"{where} {self.doc.get('kind')}/{meta.get('name')}"


@dataclass(frozen=True)
class ChartValues:
    """Values of a chart the lint cannot render (from a Helm repository, or a dependency that is
    not vendored), for the checks that read them; `layers` are (file, what it sets), in order."""

    app: App
    chart: str
    values: Doc
    layers: tuple[tuple[str, Doc], ...]
    obj: str

    def file_naming(self, value: str) -> str:
        """The last file that writes this value: where a finding about it points."""
        return next((file for file, layer in reversed(self.layers) if value in _strings(layer)),
                    self.layers[-1][0] if self.layers else self.app.file)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


@dataclass
class Project:
    name: str
    source_repos: list[str]
    destinations: list[tuple[str, str]]  # (server, namespace) globs
    cluster_kinds: list[tuple[str, str]] | None
    namespaced_kinds: list[tuple[str, str]] | None

    @classmethod
    def of(cls, doc: Doc) -> Project:
        spec = doc.get("spec") or {}

        def kinds(key: str) -> list[tuple[str, str]] | None:
            listed = spec.get(key)
            return None if listed is None else [(str(k.get("group", "")), str(k.get("kind")))
                                                for k in listed]
        return cls(str(doc["metadata"]["name"]), list(spec.get("sourceRepos") or []),
                   [(d.get("server", "*"), d.get("namespace", "*"))
                    for d in spec.get("destinations") or []],
                   kinds("clusterResourceWhitelist"), kinds("namespaceResourceWhitelist"))

    def allows_namespace(self, server: str, namespace: str) -> bool:
        return any(fnmatch.fnmatchcase(server, s) and fnmatch.fnmatchcase(namespace, n)
                   for s, n in self.destinations)

    def allows_kind(self, doc: Doc, namespaced: bool) -> bool:
        group = str(doc.get("apiVersion", "")).rpartition("/")[0]
        listed = self.namespaced_kinds if namespaced else self.cluster_kinds
        if listed is None:  # Argo CD: namespaced kinds unrestricted, cluster kinds refused
            return namespaced
        return any(fnmatch.fnmatchcase(group, g) and fnmatch.fnmatchcase(str(doc.get("kind")), k)
                   for g, k in listed)


@dataclass
class Resolution:
    """Everything the roots lead to, per cluster env."""

    repo_url: str = ""
    root_file: str = ""
    apps: list[App] = field(default_factory=list)
    deployed: list[Deployed] = field(default_factory=list)
    chart_values: list[ChartValues] = field(default_factory=list)
    renders: list[Render] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def projects(self, cluster: str) -> dict[str, Project]:
        return {d.doc["metadata"]["name"]: Project.of(d.doc) for d in self.deployed
                if d.app.cluster == cluster and d.doc.get("kind") == "AppProject"}


def build_environment(app: App, source: Doc) -> dict[str, str]:
    """Argo CD's build environment of one source."""
    return {"ARGOCD_APP_NAME": app.name, "ARGOCD_APP_NAMESPACE": app.namespace,
            "ARGOCD_APP_REVISION": REVISION, "ARGOCD_APP_REVISION_SHORT": REVISION[:7],
            "ARGOCD_APP_SOURCE_PATH": str(source.get("path", "")),
            "ARGOCD_APP_SOURCE_REPO_URL": str(source.get("repoURL", "")),
            "ARGOCD_APP_SOURCE_TARGET_REVISION": str(source.get("targetRevision", ""))}


def substitute(value: str, environment: Mapping[str, str], problems: list[str]) -> str:
    """$VAR and ${VAR} from the build environment, $$ for a literal $ (as Argo CD does)."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            return "$"
        if name not in environment:
            problems.append(f"${name} is not in Argo CD's build environment")
            return match.group(0)
        return environment[name]
    return _BUILD_VARIABLE.sub(one, value)


def expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [p for alt in match.group(1).split(",") for p in expand_braces(head + alt + tail)]


def _matches(relative: str, pattern: str) -> bool:
    # Argo CD matches include/exclude against the path below the source path; * matches "/".
    return any(fnmatch.fnmatchcase(relative, p) for p in expand_braces(pattern))


class Resolver:
    """Walks from the roots down, collecting Applications, what they deploy and the findings."""

    def __init__(self, root: Path, helm: Helm) -> None:
        self.root, self.helm = root, helm
        self.out = Resolution()

    def finding(self, file: str, obj: str, problem: str) -> None:
        self.out.findings.append(Finding(file, obj, problem))

    # ------------------------------------------------------------ roots
    def resolve(self) -> Resolution:
        roots = root_applications(self.root)
        if not roots:
            self.finding(str(BOOTSTRAP), "(roots)", "no root Application in gitops/bootstrap")
            return self.out
        first_file, first = roots[0]
        self.out.root_file = rel(self.root, first_file)
        self.out.repo_url = str(((first.get("spec") or {}).get("source") or {}).get("repoURL", ""))
        for path, doc in roots:
            file = rel(self.root, path)
            app = App.of(doc, file, f"Application/{doc['metadata']['name']}", "")
            repos = {str(s.get("repoURL")) for s in app.sources}
            if repos != {self.out.repo_url}:
                self.finding(file, app.obj, f"root Applications read one repository "
                                            f"({self.out.repo_url}), not {sorted(repos)}")
                continue
            for env in catalog.envs(self.root):
                self._walk(self._as_cluster(doc, app, env), depth=0)
        self._check_projects()
        return self.out

    def _as_cluster(self, doc: Doc, app: App, env: str) -> App:
        """The root as the cluster of env applies it."""
        clustered = copy.deepcopy(doc)
        helm = ((clustered.get("spec") or {}).get("source") or {}).get("helm") or {}
        inline = helm.get("valuesObject")
        if not isinstance(inline, dict) or CLUSTER_ENV not in inline:
            self.finding(app.file, app.obj, f"the root needs helm.valuesObject.{CLUSTER_ENV}: the "
                                            "env its cluster runs")
        else:
            inline[CLUSTER_ENV] = env
        return App.of(clustered, app.file, app.obj, env)

    # ------------------------------------------------------------ one Application
    def _walk(self, app: App, depth: int) -> None:
        self.out.apps.append(app)
        if depth > _MAX_DEPTH:
            self.finding(app.file, app.obj, "Applications nest deeper than "
                                            f"{_MAX_DEPTH} levels: a cycle?")
            return
        for source in app.sources:
            for where, doc, render in self._source(app, source):
                self._output(app, where, doc, render, depth)

    def _source(self, app: App, source: Doc) -> Iterator[tuple[str, Doc, Render | None]]:
        repo = str(source.get("repoURL", ""))
        if repo != self.out.repo_url:
            if source.get("chart"):
                self._chart_values(app, source, str(source["chart"]))
            else:
                self.finding(app.file, app.obj, f"source repo {repo!r} is neither this "
                                                f"repository ({self.out.repo_url}, named by "
                                                f"{self.out.root_file}) nor a Helm repository")
            return
        if "path" not in source:
            if "ref" not in source:
                self.finding(app.file, app.obj, "source of this repository has no path")
            return
        path = str(source["path"])
        base = (self.root / path).resolve()
        if not base.is_dir() or not base.is_relative_to(self.root):
            self.finding(app.file, app.obj, f"source path {path!r} does not exist in the repo")
            return
        if (base / "Chart.yaml").is_file():
            yield from self._chart(app, source, base)
        elif source.get("helm"):
            self.finding(app.file, app.obj, f"source path {path!r} has helm settings but no "
                                            "Chart.yaml")
        else:
            yield from self._directory(app, source, base)

    def _value_files(self, app: App, source: Doc, base: Path) -> list[Path]:
        """The source's helm value files: relative to its path, or `$<ref>/...` of a source of
        this repository with that ref."""
        refs = {str(s["ref"]) for s in app.sources
                if s.get("ref") and str(s.get("repoURL")) == self.out.repo_url}
        files = []
        for value_file in (source.get("helm") or {}).get("valueFiles") or []:
            value_file = str(value_file)
            ref, _, rest = value_file.partition("/")
            if value_file.startswith("$") and ref[1:] not in refs:
                self.finding(app.file, app.obj, f"helm value file {value_file!r}: no source of "
                                                f"this repository has ref {ref[1:]!r}")
                continue
            target = (self.root / rest if value_file.startswith("$") else base / value_file)
            target = target.resolve()
            if not target.is_file() or not target.is_relative_to(self.root):
                self.finding(app.file, app.obj, f"helm value file {value_file!r} does not exist "
                                                "in the repo")
                continue
            files.append(target)
        return files

    def _inline_values(self, source: Doc) -> str:
        helm = source.get("helm") or {}
        if helm.get("valuesObject") is not None:
            return yaml.safe_dump(helm["valuesObject"])
        return str(helm.get("values") or "")

    def _chart(self, app: App, source: Doc, base: Path) -> Iterator[tuple[str, Doc, Render]]:
        helm = source.get("helm") or {}
        environment = build_environment(app, source)
        problems: list[str] = []
        parameters = tuple((str(p["name"]), substitute(str(p.get("value", "")), environment,
                                                       problems))
                           for p in helm.get("parameters") or [])
        for problem in problems:
            self.finding(app.file, app.obj, f"helm parameter: {problem}")
        values = tuple(self._value_files(app, source, base))
        render = Render(base, f"chart {base.name} ({app.label})", values, app.namespace,
                        str(helm.get("releaseName") or app.name), parameters,
                        self._inline_values(source))
        self.out.renders.append(render)
        for dep, layers in upstream.dependency_values(base, values):
            merged: Doc = {}
            for _, layer in layers:
                merged = upstream.merge(merged, layer)
            self.out.chart_values.append(ChartValues(
                app, dep.name, merged, tuple((rel(self.root, f), v) for f, v in layers),
                f"{render.label} dependency {dep.name}"))
        result = self.helm.template(render)
        if isinstance(result, Finding):
            self.out.findings.append(result)
            return
        yield from ((where, doc, render) for where, doc in result.objects)

    def _chart_values(self, app: App, source: Doc, chart: str) -> None:
        layers = [(rel(self.root, path), yaml.safe_load(path.read_text()) or {})
                  for path in self._value_files(app, source, self.root)]
        layers.append((app.file, yaml.safe_load(self._inline_values(source)) or {}))
        merged: Doc = {}
        for _, layer in layers:
            merged = upstream.merge(merged, layer)
        self.out.chart_values.append(ChartValues(app, chart, merged, tuple(layers),
                                                 f"{app.obj} chart {chart}"))

    def _directory(self, app: App, source: Doc, base: Path) -> Iterator[tuple[str, Doc, None]]:
        directory = source.get("directory") or {}
        include, exclude = directory.get("include"), directory.get("exclude")
        candidates = base.rglob("*") if directory.get("recurse") else base.glob("*")
        files = sorted(p for p in candidates if p.is_file() and p.suffix in MANIFEST_SUFFIXES
                       and (not include or _matches(rel(base, p), str(include)))
                       and not (exclude and _matches(rel(base, p), str(exclude))))
        for pattern in expand_braces(str(include)) if include else []:
            if not any(fnmatch.fnmatchcase(rel(base, p), pattern) for p in files):
                self.finding(app.file, app.obj, f"directory.include {pattern!r} matches no "
                                                f"file under {source['path']}")
        for path in files:
            file = rel(self.root, path)
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError:
                continue  # yamllint names it
            for doc in docs:
                if not (isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind")):
                    if doc is not None:
                        self.finding(file, app.obj, "not a Kubernetes object, yet the "
                                                    "Application's directory includes it")
                    continue
                yield file, doc, None

    def _output(self, app: App, where: str, doc: Doc, render: Render | None,
                depth: int) -> None:
        self.out.deployed.append(Deployed(app, where, doc, render))
        if not str(doc.get("apiVersion", "")).startswith("argoproj.io/"):
            return
        name = (doc.get("metadata") or {}).get("name", "?")
        if doc.get("kind") == "Application":
            self._walk(App.of(doc, where, f"Application/{name}", app.cluster), depth + 1)
        elif doc.get("kind") == "ApplicationSet":
            for obj, generated in self._expand(where, doc):
                self._walk(App.of(generated, where, obj, app.cluster), depth + 1)

    # ------------------------------------------------------------ ApplicationSets
    def _expand(self, file: str, doc: Doc) -> Iterator[tuple[str, Doc]]:
        spec = doc.get("spec") or {}
        obj = f"ApplicationSet/{doc['metadata'].get('name')}"
        options = spec.get("goTemplateOptions") or []
        if spec.get("goTemplate") is not True or "missingkey=error" not in options:
            self.finding(file, obj, "needs goTemplate: true and goTemplateOptions "
                                    "[missingkey=error]")
        template = spec.get("template") or {}
        for generator in spec.get("generators") or []:
            for element in self._generator_params(file, obj, generator):
                problems: list[str] = []
                rendered = render_template(template, dict(element), problems)
                meta = rendered.get("metadata") or {}
                app_obj = f"{obj} -> Application/{meta.get('name', '?')}"
                for problem in problems:
                    self.finding(file, app_obj, problem)
                yield app_obj, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                "metadata": {**meta,
                                             "namespace": doc["metadata"].get("namespace")},
                                "spec": rendered.get("spec") or {}}

    def _generator_params(self, file: str, obj: str, generator: Doc) -> list[Doc]:
        """Every parameter set the generator can yield. A selector is not applied: a toggle
        flip turns any of them into an Application, so all are checked; its keys must exist."""
        git = generator.get("git") or {}
        if "list" in generator:
            params = [dict(e) for e in (generator["list"] or {}).get("elements") or []]
        elif git.get("files"):
            if str(git.get("repoURL")) != self.out.repo_url:
                self.finding(file, obj, f"git generator reads {git.get('repoURL')!r}, not this "
                                        f"repository ({self.out.repo_url})")
            params = [p for f in git["files"] if not f.get("exclude")
                      for p in git_file_params(self.root, str(f.get("path", "")))]
            if not params:
                self.finding(file, obj, f"git files generator matches no file: {git['files']}")
        else:
            self.finding(file, obj, f"generator {sorted(generator)} is neither a list nor a git "
                                    "files generator: its Applications are not checked")
            return []
        labels = ((generator.get("selector") or {}).get("matchLabels") or {})
        for p in params:
            for key in labels:
                if key not in p:
                    self.finding(file, obj, f"selector label {key!r} is missing from {p}")
        return params

    # ------------------------------------------------------------ AppProjects
    def _check_projects(self) -> None:
        by_cluster = {cluster: self.out.projects(cluster)
                      for cluster in {a.cluster for a in self.out.apps}}
        for app in self.out.apps:
            for problem in check_application(app, by_cluster[app.cluster]):
                self.finding(app.file, app.obj, problem)
        for deployed in self.out.deployed:
            project = by_cluster[deployed.app.cluster].get(str(deployed.app.spec.get("project")))
            if project is not None:
                for problem in check_deployed(deployed, project):
                    self.finding(deployed.file, deployed.obj, problem)


def check_application(app: App, projects: Mapping[str, Project]) -> list[str]:
    """An Application against its AppProject: it exists, allows the destination and sources."""
    name = str(app.spec.get("project"))
    project = projects.get(name)
    if project is None:
        if name == BUILTIN_PROJECT:
            return []
        return [f"AppProject {name!r} is not deployed by this tree (known: "
                f"{', '.join(sorted(projects))})"]
    destination = app.spec.get("destination") or {}
    server = str(destination.get("server", destination.get("name", "")))
    problems = []
    if not project.allows_namespace(server, app.namespace):
        allowed = ", ".join(n for _, n in project.destinations)
        problems.append(f"destination namespace {app.namespace!r} is not allowed by AppProject "
                        f"{name!r} (allowed: {allowed})")
    for source in app.sources:
        repo = str(source.get("repoURL", ""))
        if not any(fnmatch.fnmatchcase(repo, r) for r in project.source_repos):
            problems.append(f"source repo {repo!r} is not in AppProject {name!r} sourceRepos")
    return problems


def check_deployed(deployed: Deployed, project: Project) -> list[str]:
    """An object an Application deploys against its AppProject: namespace and kind allowed."""
    doc = deployed.doc
    namespaced = (doc.get("metadata") or {}).get("namespace") is not None \
        or doc.get("kind") not in _CLUSTER_SCOPED
    problems = []
    if namespaced and not project.allows_namespace(
            str((deployed.app.spec.get("destination") or {}).get("server", "")),
            deployed.namespace):
        problems.append(f"namespace {deployed.namespace!r} is not a destination of AppProject "
                        f"{project.name!r}")
    if not project.allows_kind(doc, namespaced):
        which = "namespaceResourceWhitelist" if namespaced else "clusterResourceWhitelist"
        problems.append(f"kind {doc.get('kind')} ({doc.get('apiVersion')}) is not in AppProject "
                        f"{project.name!r} {which}")
    return problems


def render_template(node: Any, params: dict[str, Any], problems: list[str]) -> Any:
    """An ApplicationSet template with {{.key}} parameters filled in (missingkey=error)."""
    if isinstance(node, dict):
        return {render_template(k, params, problems): render_template(v, params, problems)
                for k, v in node.items()}
    if isinstance(node, list):
        return [render_template(v, params, problems) for v in node]
    if isinstance(node, str) and "{{" in node:
        def substitute_key(match: re.Match[str]) -> str:
            value: Any = params
            for key in match.group(1).split("."):  # {{.path.basename}}: nested params
                if not isinstance(value, dict) or key not in value:  # missingkey=error
                    problems.append(f"map has no entry for key {key!r}")
                    return match.group(0)
                value = value[key]
            return str(value)
        rendered = _TEMPLATE_KEY.sub(substitute_key, node)
        if "{{" in rendered and not problems:
            problems.append(f"template {node!r} uses more than {{{{.key}}}}: not checked offline")
        return rendered
    return node


def git_file_params(root: Path, pattern: str) -> list[Doc]:
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


def resolve(root: Path, helm: Helm) -> Resolution:
    return Resolver(root, helm).resolve()
