"""`invoke proof`: a record of what the platform did and where it stands, with the invariants
that must hold after any deploy, written as `proofs/<timestamp>/proof.json` and `proof.md`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from onecommit import gitops_remote, loop, rollout_chart, sync
from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.clients.gateway import Gateway
from onecommit.commits import checkout
from onecommit.lifecycle import registry
from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG, SENSOR_CHECK_DAG
from onecommit.lifecycle.evidence import CRITERIA, judge
from onecommit.lifecycle.notify import notifications_file
from onecommit.platform import profiles
from onecommit.secrets import local_store
from onecommit.settings import PROOFS_DIR, Settings
from onecommit.sync.status import describe, models_status
from onecommit.vocabulary import CHALLENGER, CHAMPION, PREVIOUS, TRITON_CONTROL_HEADER

DAGS = (DEPLOY_DAG, ROLLBACK_DAG, SENSOR_CHECK_DAG)
_RUNS_PER_DAG = 20
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


@dataclass(frozen=True)
class Invariant:
    name: str
    holds: bool
    detail: str


def _registry_state(settings: Settings, model: str) -> dict[str, Any]:
    client = registry.client(settings.url(settings.mlflow_port))
    aliases = {alias: registry.alias_version(client, model, alias)
               for alias in (CHAMPION, CHALLENGER, PREVIOUS)}
    versions = {}
    for version in client.search_model_versions(f"name = '{model}'"):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        versions[str(version.version)] = {
            "status": version.status, "tags": dict(version.tags),
            "metrics": {k: round(v, 4) for k, v in metrics.items()}}
    return {"model": model, "aliases": aliases, "versions": versions}


def _triton_models(settings: Settings) -> list[dict[str, Any]]:
    # Triton's repository index is part of its restricted model-control API.
    response = httpx.post(f"{settings.url(settings.triton_http_port)}/v2/repository/index",
                          json={}, timeout=10,
                          headers={TRITON_CONTROL_HEADER: local_store.triton_control_key(settings)})
    response.raise_for_status()
    models: list[dict[str, Any]] = response.json()
    return models


def _gateway_state(settings: Settings, model: str) -> dict[str, Any]:
    with Gateway(settings, model, retry_s=10) as gateway:
        page = gateway.rollout_page()
        return {"variants": gateway.variants(), "traffic": gateway.get_traffic(),
                "routed_version": loop.served_version(settings, model),
                # The latest rollout as the gateway's rollout page shows it.
                "rollout": {k: page.get(k) for k in ("rollout", "verdict", "timeline",
                                                     "analysis", "intervals")}}


def _model_state(settings: Settings, model: str) -> dict[str, Any]:
    """The registry's record of the model and, once a version of it was deployed, what the
    gateway serves of it."""
    known = _registry_state(settings, model)
    deployed = known["aliases"][CHAMPION] is not None
    return {"registry": known, "gateway": _gateway_state(settings, model) if deployed else None}


def _dag_runs(airflow: AirflowClient) -> dict[str, list[dict[str, Any]]]:
    runs = {}
    for dag_id in DAGS:
        runs[dag_id] = [
            {"run_id": r["dag_run_id"], "state": r["state"], "start": r.get("start_date"),
             "end": r.get("end_date"), "git_sha": r["conf"].get("git_sha"),
             "model": r["conf"].get("spec", {}).get("model") or r["conf"].get("model"),
             "tasks": airflow.task_states(dag_id, r["dag_run_id"])}
            for r in airflow.runs(dag_id, limit=_RUNS_PER_DAG)]
    return runs


def _notifications(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    path = notifications_file(settings.state_dir)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[-limit:]
    return [{k: record.get(k) for k in ("at", "event", "model", "version", "channel",
                                        "delivered")} | {"text": record["payload"]["text"]}
            for record in map(json.loads, lines)]


def gather(settings: Settings, models: list[str]) -> dict[str, Any]:
    """Everything the proof records, asked of the running platform, for every model."""
    airflow = platform_client(settings)
    try:
        runs = _dag_runs(airflow)
    finally:
        airflow.close()
    return {
        "written_at": datetime.now(UTC).isoformat(),
        "gitops": {"head": gitops_remote.head(settings), "syncs": sync.read_syncs(settings)[-10:],
                   # Per model, as Argo CD shows an application: sync, health, drift.
                   "status": models_status(settings)},
        "components": {n: s.as_dict() for n, s in profiles.of(settings).status(settings).items()},
        "triton": _triton_models(settings),
        "models": {model: _model_state(settings, model) for model in models},
        "dag_runs": runs,
        "notifications": _notifications(settings),
    }


def last_deploy(state: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The model's latest finished deploy run, with the version it registered (if any)."""
    finished = [r for r in state["dag_runs"][DEPLOY_DAG]
                if r["model"] == model and r["state"] in ("success", "failed")]
    if not finished:
        return None
    run = finished[0]
    versions = state["models"][model]["registry"]["versions"]
    version = next((v for v, info in versions.items()
                    if info["tags"].get("dag_run_id") == run["run_id"]), None)
    tags = versions[version]["tags"] if version else {}
    recorded = {c: json.loads(tags[f"evidence.{c}"]) for c in CRITERIA
                if f"evidence.{c}" in tags}
    return {**run, "version": version,
            "criteria": {c: tags.get(f"criterion.{c}") == "true" for c in CRITERIA}
            if version else {},
            # The recorded evidence judged again: a criterion holds only if both agree.
            "evidence": recorded,
            "judged": judge(int(version), recorded) if version else {},
            "rollout": json.loads(tags.get("rollout.decisions", "[]"))}


def check(state: dict[str, Any], gitops_tree: Path) -> list[Invariant]:
    invariants = [_no_plaintext_secrets(gitops_tree)]
    for model in state["models"]:
        invariants += [_champion_served(state, model), _aliases_served(state, model),
                       _last_deploy_whole(state, model)]
    return invariants


def _champion_served(state: dict[str, Any], model: str) -> Invariant:
    name = f"{model}: champion is what the gateway routes to and Triton has READY"
    known = state["models"][model]
    if known["gateway"] is None:
        return Invariant(name, True, "no version deployed yet")
    champion = known["registry"]["aliases"][CHAMPION]
    gateway = known["gateway"]["variants"]["variants"].get(CHAMPION, {}).get("version")
    routed = known["gateway"]["routed_version"]
    ready = _triton_ready(state, model)
    holds = (champion is not None and champion == gateway and str(champion) == routed
             and champion in ready)
    return Invariant(name, holds, f"champion alias {champion}, gateway champion {gateway}, routed "
                     f"{routed}, Triton READY {sorted(ready)}")


def _triton_ready(state: dict[str, Any], model: str) -> set[int]:
    return {int(m["version"]) for m in state["triton"]
            if m["name"] == model and m.get("state") == "READY"}


def _aliases_served(state: dict[str, Any], model: str) -> Invariant:
    """Desired state pins exactly what the registry's aliases name, and Triton has each."""
    name = f"{model}: every alias is pinned by the gateway and loaded in Triton"
    known = state["models"][model]
    if known["gateway"] is None:
        return Invariant(name, True, "no version deployed yet")
    aliases = {a: v for a, v in known["registry"]["aliases"].items() if v is not None}
    pins = {a: v["version"] for a, v in known["gateway"]["variants"]["variants"].items()}
    unloaded = sorted(set(pins.values()) - _triton_ready(state, model))
    return Invariant(name, aliases == pins and not unloaded,
                     f"registry aliases {aliases}, gateway pins {pins}, pinned but not READY "
                     f"in Triton {unloaded or 'none'}")


def _no_plaintext_secrets(tree: Path) -> Invariant:
    found = []
    for path in sorted(tree.rglob("*")):
        if not path.is_file() or ".git" in path.parts:
            continue
        text = path.read_text(errors="replace")
        if _PRIVATE_KEY.search(text):
            found.append(f"{path.relative_to(tree)}: private key")
        if path.suffix in (".yaml", ".yml"):
            found += [f"{path.relative_to(tree)}: Secret {d.get('metadata', {}).get('name')}"
                      for d in _documents(text) if d.get("kind") == "Secret"
                      and (d.get("data") or d.get("stringData"))]
    return Invariant("no plaintext secret in the gitops tree", not found,
                     "; ".join(found) or "only SealedSecrets")


def _documents(text: str) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def _last_deploy_whole(state: dict[str, Any], model: str) -> Invariant:
    """The model's last deploy either fully succeeded or was fully rolled back."""
    name = f"{model}: last deploy fully successful or fully rolled back"
    deploy = last_deploy(state, model)
    if deploy is None:
        return Invariant(name, True, "no deploy has finished yet")
    version = deploy["version"]
    known = state["models"][model]
    champion = known["registry"]["aliases"][CHAMPION]
    if deploy["state"] == "success":
        unsupported = [c for c in CRITERIA if not deploy["judged"].get(c)]
        holds = (all(deploy["criteria"].values()) and not unsupported
                 and str(champion) == version)
        return Invariant(name, holds, f"run {deploy['run_id']} promoted version {version}; "
                         f"criteria {deploy['criteria']}; without evidence: "
                         f"{unsupported or 'none'}; champion {champion}")
    if version is None:
        return Invariant(name, True, f"run {deploy['run_id']} failed before registering "
                         "anything (training refused it); nothing to roll back")
    tags = known["registry"]["versions"][version]["tags"]
    before = tags.get("before_version") or None
    rolled_back = [n for n in state["notifications"] if n["event"] == "rolled back"
                   and n["model"] == model and str(n["version"]) == str(version)]
    holds = (tags.get("status") == "rolled_back" and str(champion) == str(before)
             and bool(rolled_back))
    return Invariant(name, holds, f"run {deploy['run_id']} failed; version {version} status "
                     f"{tags.get('status')!r} ({tags.get('reason')}); champion {champion}, "
                     f"before_version {before}; rollback notifications {len(rolled_back)}")


def write(state: dict[str, Any], invariants: list[Invariant], root: Path) -> Path:
    directory = root / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory.mkdir(parents=True)
    document = {**state, "invariants": [i.__dict__ for i in invariants]}
    for model, known in document["models"].items():
        known["last_deploy"] = last_deploy(state, model)
        shown = known["gateway"]["rollout"] if known["gateway"] else {"timeline": []}
        if shown["timeline"]:
            chart = f"rollout-{model}.png"
            rollout_chart.draw(directory / chart, shown["timeline"],
                               f"{model}: {shown['verdict']['text']}", shown.get("intervals"))
            known["rollout_chart"] = chart
    (directory / "proof.json").write_text(json.dumps(document, indent=2, default=str))
    (directory / "proof.md").write_text(render(document))
    return directory


def _deploy_lines(deploy: dict[str, Any] | None) -> list[str]:
    if not deploy:
        return ["no deploy has finished yet"]
    lines = [f"run `{deploy['run_id']}` ({deploy['state']}), commit `{deploy['git_sha']}`, "
             f"version {deploy['version']}", ""]
    lines += [f"- criterion {c}: {'yes' if ok else 'NO'}"
              f"{'' if deploy['judged'].get(c) == ok else ' (its evidence disagrees)'} — "
              f"evidence: `{json.dumps(deploy['evidence'].get(c))}`"
              for c, ok in deploy["criteria"].items()]
    return lines + [f"- rollout {d['step']}: {d['decision']} ({d['reason']}, {d['seconds']} s)"
                    for d in deploy["rollout"]]


def _lineage(tags: dict[str, str]) -> str:
    """Where a version came from: trained here from a commit, or promoted from another env."""
    if tags.get("source_env"):
        return (f"promoted from {tags['source_env']} version {tags.get('source_version')} "
                f"(run {tags.get('source_run_id', '')[:12]}, commit "
                f"{tags.get('source_git_sha', '')[:12]})")
    return f"trained from commit {tags.get('git_sha', '')[:12]}"


def _model_lines(model: str, known: dict[str, Any]) -> list[str]:
    lines = ["", f"## Model {model}", "", "### Last deploy", ""]
    lines += _deploy_lines(known["last_deploy"])
    if known.get("rollout_chart"):
        lines += ["", "### Rollout timeline", "",
                  f"{known['gateway']['rollout']['verdict']['text']}; the challenger's "
                  "share of traffic over time, each decision marked, and below it each metric's "
                  "interval over the rollout's looks:", "",
                  f"![rollout timeline]({known['rollout_chart']})"]
    registry_state = known["registry"]
    lines += ["", "### Registry", "", f"aliases: {registry_state['aliases']}", "",
              "| version | status | metrics | checksum | lineage | reason |",
              "|---|---|---|---|---|---|"]
    for version, info in sorted(registry_state["versions"].items(), key=lambda v: int(v[0])):
        tags, metrics = info["tags"], info["metrics"]
        shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if "_" not in k
                          or k in ("roc_auc", "f1_macro"))
        lines.append(f"| {version} | {tags.get('status', '')} | {shown} "
                     f"| {tags.get(registry.CHECKSUM, '')[:12]} | {_lineage(tags)} "
                     f"| {tags.get('reason', '')} |")
    gateway = known["gateway"]
    if gateway is None:
        return [*lines, "", "Not served: no version deployed yet"]
    return [*lines, "", f"Gateway variants: {gateway['variants']['variants']}",
            f"Gateway traffic: {gateway['traffic']}",
            f"Routed version: {gateway['routed_version']}"]


def render(document: dict[str, Any]) -> str:
    """The proof as a readable report."""
    lines = [f"# onecommit proof — {document['written_at']}", "",
             f"gitops head: `{document['gitops']['head']}`", "", "## Invariants", ""]
    lines += [f"- {'✅' if i['holds'] else '❌'} **{i['name']}** — {i['detail']}"
              for i in document["invariants"]]
    for model, known in document["models"].items():
        lines += _model_lines(model, known)
    lines += ["", "## Serving", "",
              "Triton: " + ", ".join(f"{m['name']} v{m.get('version')} {m.get('state')}"
                                     for m in document["triton"]), "", "## Components", ""]
    lines += [f"- {n}: {'healthy' if c['healthy'] else 'UNHEALTHY'}, version {c.get('version')}, "
              f"{c.get('memory_mb')} MB" for n, c in document["components"].items()]
    lines += ["", "## DAG runs", ""]
    for dag_id, runs in document["dag_runs"].items():
        lines += [f"- {dag_id} `{r['run_id']}`: {r['state']} — " + ", ".join(
            f"{t}={s}" for t, s in r["tasks"].items()) for r in runs]
    lines += ["", "## Sync status", ""]
    lines += describe(document["gitops"].get("status", {"error": "not recorded"}))
    lines += ["", "## Syncs", ""]
    lines += [f"- `{s['sha'][:12]}` {s['action']}"
              + (f" {s['model']}" if s.get("model") else "")
              + "".join(f" → {run}" for run in s.get("deploys", {}).values())
              + (f" ({'; '.join(s['problems'])})" if s["problems"] else "")
              for s in document["gitops"]["syncs"]]
    lines += ["", "## Notifications", ""]
    lines += [f"- {n['at']} {n['event']} via {n['channel']}: "
              f"{'delivered' if n['delivered'] else 'NOT delivered'} — {n['text']}"
              for n in document["notifications"]]
    return "\n".join(lines) + "\n"


def prove(settings: Settings, models: list[str],
          root: Path = PROOFS_DIR) -> tuple[Path, list[Invariant]]:
    state = gather(settings, models)
    with checkout(gitops_remote.remote_dir(settings), "HEAD") as tree:
        invariants = check(state, tree)
    return write(state, invariants, root), invariants
