"""Every Secret the cluster's objects read must exist there: a dangling reference is a pod that
never starts.

References are read from what a cluster runs (argocd.Resolution): `secretKeyRef`, `envFrom`
`secretRef`, volume and projected secrets, secret key selectors (a ServiceMonitor's `tlsConfig`),
`imagePullSecrets` and an Ingress's TLS `secretName`, anywhere in rendered objects and in the
values of charts the lint cannot render (pod fragments such as `extraEnv` read alike), plus the
values of those charts that name a Secret (`existingSecret` and the like: VALUE_REFS). Each must
be defined in the same cluster and namespace: by a SealedSecret with the keys read, a
Certificate's `secretName`, or an entry of gitops/external-secrets.yaml (Secrets made outside
git). A finding names the object, the reference and the file that should define the Secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onecommit.lint import Finding
from onecommit.lint.argocd import ChartValues, Deployed, Resolution
from onecommit.secrets import catalog

EXTERNAL = Path("gitops") / "external-secrets.yaml"
BITNAMI_API = "bitnami.com/v1alpha1"  # SealedSecret
CERTIFICATE = "cert-manager.io/v1"
CERTIFICATE_KEYS = frozenset({"tls.crt", "tls.key", "ca.crt"})
ISSUER_ANNOTATIONS = ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer")


@dataclass(frozen=True)
class Ref:
    """A Secret something reads: its name, the keys read (none: all of it) and how."""

    name: str
    keys: tuple[str, ...]
    what: str
    tls: bool = False


@dataclass(frozen=True)
class ValueRef:
    """A chart value naming a Secret the chart reads. `parent` is a dotted path to the mapping
    holding the name (`x[]` walks a list); each key is (value naming it, relative to the parent,
    or "" for a fixed key; the chart's default). `when` is a boolean value it depends on."""

    parent: str
    name: str
    keys: tuple[tuple[str, str], ...] = ()
    when: str = ""


# Charts the lint cannot render (upstream, or dependencies left out), by chart name.
VALUE_REFS: dict[str, tuple[ValueRef, ...]] = {
    "airflow": (
        ValueRef("", "fernetKeySecretName", (("", "fernet-key"),)),
        ValueRef("", "apiSecretKeySecretName", (("", "api-secret-key"),)),
        ValueRef("", "jwtSecretName", (("", "jwt-secret"),)),
        ValueRef("", "webserverSecretKeySecretName", (("", "webserver-secret-key"),)),
        ValueRef("data", "metadataSecretName", (("", "connection"),)),
        ValueRef("data", "resultBackendSecretName", (("", "connection"),)),
        ValueRef("postgresql.auth", "existingSecret",
                 (("secretKeys.adminPasswordKey", "postgres-password"),), "postgresql.enabled"),
        ValueRef("postgresql.primary.initdb", "scriptsSecret", (), "postgresql.enabled"),
        ValueRef("registry", "secretName", (("", ".dockerconfigjson"),)),
        ValueRef("secret[]", "secretName", (("secretKey", "value"),)),
    ),
    "redis": (ValueRef("auth", "existingSecret", (("existingSecretPasswordKey",
                                                    "redis-password"),), "auth.enabled"),),
    "minio": (ValueRef("", "existingSecret", (("", "rootUser"), ("", "rootPassword"))),),
    "kube-prometheus-stack": (ValueRef("grafana.admin", "existingSecret",
                                       (("userKey", "admin-user"),
                                        ("passwordKey", "admin-password"))),),
}


@dataclass(frozen=True)
class Provider:
    """What defines a Secret: the file, and the keys (None: unknown, made outside git)."""

    what: str
    file: str
    keys: frozenset[str] | None


# ---------------------------------------------------------------- references
def _selector(value: Mapping[str, Any], what: str) -> Iterator[Ref]:
    if value.get("optional") is True or not value.get("name"):
        return
    keys: tuple[str, ...] = (str(value["key"]),) if value.get("key") else ()
    keys += tuple(str(i["key"]) for i in value.get("items") or [] if i.get("key"))
    yield Ref(str(value["name"]), keys, what)


def refs_in(node: Any, owner: str = "") -> Iterator[Ref]:
    """Secret references anywhere in a manifest or values tree. `owner` is the nearest enclosing
    name (an env variable, a volume, a container), for the finding."""
    if isinstance(node, list):
        for item in node:
            yield from refs_in(item, owner)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("name"), str):
        owner = node["name"]
    for key, value in node.items():
        if key == "secretKeyRef" and isinstance(value, dict):
            yield from _selector(value, f"secretKeyRef of {owner or 'an env variable'}")
        elif key == "secretRef" and isinstance(value, dict):
            yield from _selector(value, f"envFrom secretRef in {owner or 'a container'}")
        elif key == "secret" and isinstance(value, dict) and "secretName" in value:
            yield from _selector({**value, "name": value["secretName"]}, f"volume {owner}")
        elif key == "secret" and isinstance(value, dict):
            yield from _selector(value, f"secret of {owner or 'a selector'}")
        elif key == "imagePullSecrets" and isinstance(value, list):
            for entry in value:
                name = entry.get("name") if isinstance(entry, dict) else entry
                if name:
                    yield Ref(str(name), (), "imagePullSecrets")
        else:
            yield from refs_in(value, owner)


def object_refs(doc: Mapping[str, Any]) -> Iterator[Ref]:
    yield from refs_in(doc)
    if doc.get("kind") == "Ingress":
        for tls in (doc.get("spec") or {}).get("tls") or []:
            if tls.get("secretName"):
                yield Ref(str(tls["secretName"]), (), "Ingress TLS", tls=True)


def _dig(node: Any, dotted: str) -> Any:
    for part in [p for p in dotted.split(".") if p]:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _parents(values: Any, dotted: str) -> Iterator[Any]:
    head, sep, tail = dotted.partition("[]")
    node = _dig(values, head)
    if not sep:
        yield node
        return
    for item in node if isinstance(node, list) else []:
        yield from _parents(item, tail.lstrip("."))


def value_refs(chart: str, values: Mapping[str, Any]) -> Iterator[Ref]:
    """References in the values of a chart that is not rendered: pod fragments and VALUE_REFS."""
    yield from refs_in(values)
    for ref in VALUE_REFS.get(chart, ()):
        if ref.when and _dig(values, ref.when) is False:
            continue
        for parent in _parents(values, ref.parent):
            name = parent.get(ref.name) if isinstance(parent, dict) else None
            if name:
                keys = tuple(str(_dig(parent, k) or default) if k else default
                             for k, default in ref.keys)
                where = f"{ref.parent}." if ref.parent else ""
                yield Ref(str(name), keys, f"value {where}{ref.name}")


# ---------------------------------------------------------------- what defines Secrets
def _external(root: Path) -> tuple[dict[tuple[str, str], Provider], list[Finding]]:
    path = root / EXTERNAL
    if not path.is_file():
        return {}, []
    entries = yaml.safe_load(path.read_text()) or []
    providers, findings = {}, []
    for entry in entries if isinstance(entries, list) else [entries]:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) and entry[k]
                                                for k in ("namespace", "name", "madeBy"))):
            findings.append(Finding(str(EXTERNAL), f"entry {entry!r}", "needs namespace, name "
                                    "and madeBy (who makes the Secret outside git)"))
            continue
        providers[(entry["namespace"], entry["name"])] = Provider(
            f"made outside git by {entry['madeBy']}", str(EXTERNAL), None)
    return providers, findings


def _provided(deployed: Deployed) -> tuple[str, Provider] | None:
    doc = deployed.doc
    if doc.get("apiVersion") == BITNAMI_API and doc.get("kind") == "SealedSecret":
        spec = doc.get("spec") or {}
        keys = set(spec.get("encryptedData") or {}) | set((spec.get("template") or {})
                                                          .get("data") or {})
        return str(doc["metadata"]["name"]), Provider("SealedSecret", deployed.file,
                                                      frozenset(keys))
    if doc.get("apiVersion") == CERTIFICATE and doc.get("kind") == "Certificate":
        name = (doc.get("spec") or {}).get("secretName")
        return (str(name), Provider("Certificate", deployed.file, CERTIFICATE_KEYS)) \
            if name else None
    return None


def providers(resolution: Resolution, cluster: str,
              external: Mapping[tuple[str, str], Provider]) -> dict[tuple[str, str], Provider]:
    """(namespace, Secret name) -> what defines it in the cluster of env `cluster`."""
    found = dict(external)
    for deployed in resolution.deployed:
        provided = _provided(deployed) if deployed.app.cluster == cluster else None
        if provided is not None:
            found[(deployed.namespace, provided[0])] = provided[1]
    return found


# ---------------------------------------------------------------- the check
def _where_to_define(root: Path, cluster: str, namespace: str, ref: Ref) -> str:
    layer = next((layer for layer in catalog.NAMESPACES
                  if catalog.namespace(cluster, layer) == namespace), None)
    if layer is None:
        return f"no Application of this tree deploys secrets to {namespace}"
    if ref.tls and layer == "core":
        certificates = catalog.env_dir(root, cluster) / "certificates.yaml"
        return f"a Certificate with secretName {ref.name} in {certificates.relative_to(root)}"
    path = catalog.sealed_path(root, cluster, ref.name, layer).relative_to(root)
    credential = catalog.producing(ref.name)
    how = (f"`invoke rotate {credential.name}`" if credential else
           "a credential in onecommit/secrets/catalog.py, then `invoke rotate`")
    return f"{path} ({how})"


def check_ref(root: Path, cluster: str, namespace: str, ref: Ref,
              known: Mapping[tuple[str, str], Provider]) -> list[str]:
    provider = known.get((namespace, ref.name))
    if provider is None:
        elsewhere = sorted(f"{p.what} in {ns}: {p.file}" for (ns, name), p in known.items()
                           if name == ref.name)
        hint = f" (there is a {elsewhere[0]})" if elsewhere else ""
        return [f"{ref.what} reads Secret {ref.name!r}, which nothing defines in namespace "
                f"{namespace}{hint}: define it in "
                f"{_where_to_define(root, cluster, namespace, ref)}"]
    if provider.keys is None:
        return []
    return [f"{ref.what} reads key {key!r} of Secret {ref.name!r}, which {provider.file} does "
            f"not define (its keys: {', '.join(sorted(provider.keys))})"
            for key in ref.keys if key not in provider.keys]


def _issued_twice(deployed: Deployed, known: Mapping[tuple[str, str], Provider]) -> list[str]:
    """An Ingress asking cert-manager's ingress-shim for a Secret a Certificate already makes."""
    annotations = (deployed.doc.get("metadata") or {}).get("annotations") or {}
    issuer = next((a for a in ISSUER_ANNOTATIONS if a in annotations), None)
    if deployed.doc.get("kind") != "Ingress" or issuer is None:
        return []
    return [f"TLS Secret {ref.name!r} is issued twice: by the Certificate in {provider.file} and "
            f"by this Ingress's {issuer} annotation; keep the Certificate, drop the annotation"
            for ref in object_refs(deployed.doc) if ref.tls
            for provider in [known.get((deployed.namespace, ref.name))]
            if provider is not None and provider.what == "Certificate"]


def _chart_value_findings(root: Path, values: ChartValues,
                          known: Mapping[tuple[str, str], Provider]) -> Iterator[Finding]:
    for ref in value_refs(values.chart, values.values):
        for problem in check_ref(root, values.app.cluster, values.app.namespace, ref, known):
            yield Finding(values.file_naming(ref.name), values.obj, problem)


def check(root: Path, resolution: Resolution) -> list[Finding]:
    external, findings = _external(root)
    by_cluster = {c: providers(resolution, c, external)
                  for c in {a.cluster for a in resolution.apps}}
    for deployed in resolution.deployed:
        known = by_cluster[deployed.app.cluster]
        for ref in object_refs(deployed.doc):
            findings += [Finding(deployed.file, deployed.obj, problem) for problem in check_ref(
                root, deployed.app.cluster, deployed.namespace, ref, known)]
        findings += [Finding(deployed.file, deployed.obj, p) for p in _issued_twice(deployed,
                                                                                     known)]
    for values in resolution.chart_values:
        findings += _chart_value_findings(root, values, by_cluster[values.app.cluster])
    return findings
