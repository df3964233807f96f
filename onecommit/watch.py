"""Watching a rollout from the terminal: `invoke watch` and the live part of
`invoke demo-commit`. It reads what the rollout page shows (the gateway's `/ui/rollout.json`)
and which deploy run and task Airflow is on, and changes nothing. It judges nothing either: the
variants' figures are shown as observed, and each metric's outcome, interval and the step's
action are the rollout's verdict as its notes recorded them.

On a terminal the view is redrawn in place (rich); anywhere else (a pipe, a CI log) the same
facts come as plain lines, each printed when it changes, so nothing redraws. `lines()` and
`view()` are pure: a snapshot in, lines or a rich renderable out.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.clients.gateway import Gateway, GatewayUnavailable
from onecommit.errors import OnecommitError
from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG
from onecommit.settings import Settings

# In plain lines, the variants' figures (which change with every request) are printed again
# at most this often; every other fact as soon as it changes.
FIGURES_EVERY_S = 10.0
# The rich view's interval over time: this many of each metric's latest intervals.
INTERVALS_SHOWN = 4
_OUTCOME_STYLES = {"pass": "green", "fail": "bold red"}


@dataclass(frozen=True)
class Snapshot:
    """What the watch saw at one moment; None where a component did not answer."""

    page: dict[str, Any] | None
    runs: list[dict[str, Any]]
    problem: str | None = None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _run_line(run: dict[str, Any]) -> str:
    tasks = ", ".join(run["tasks"]) or "none (between tasks)"
    return f"{run['dag_id']} run {run['run_id']}: {run['state']}; running tasks: {tasks}"


def _variant_line(variant: dict[str, Any]) -> str:
    return (f"{variant['alias']} v{variant['version']}: weight {_pct(variant['weight'])}, "
            f"{variant['rate_per_s']:.1f} req/s, {variant['requests']} requests, error rate "
            f"{_pct(variant['error_rate'])}, p50 {_ms(variant['p50_ms'])}, p95 "
            f"{_ms(variant['p95_ms'])}, online accuracy {_pct(variant['online_accuracy'])}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _interval(point: dict[str, Any]) -> str:
    return f"[{_num(point.get('lower'))}, {_num(point.get('upper'))}]"


def _metric_line(result: dict[str, Any]) -> str:
    role = "gate" if result.get("gate") else "guard"
    return (f"{result['metric']} ({role}): {result['outcome']}; {result['statistic']} "
            f"{_num(result.get('estimate'))} in {_interval(result)}, threshold "
            f"{_num(result.get('threshold'))}, {result['samples']} samples — {result['text']}")


def _look_line(analysis: dict[str, Any]) -> str:
    return f"{analysis['step']}: {analysis['action']} ({analysis['reason']})"


def lines(snapshot: Snapshot) -> list[tuple[str, str]]:
    """The plain view: (key, line) pairs; a key whose line changed is printed again. Keys
    starting with "figures" hold the per-request figures."""
    out = [("problem", snapshot.problem)] if snapshot.problem else []
    out += [(f"run {run['dag_id']}", _run_line(run)) for run in snapshot.runs]
    page = snapshot.page
    if page is None:
        return out
    weights = ", ".join(f"{alias} {_pct(share)}"
                        for alias, share in page["policy"]["weights"].items())
    decisions = [e for e in page["timeline"] if e["kind"] == "decision"]
    if decisions:
        out.append(("decision", f"decision: {decisions[-1]['text']}"))
    out += [("verdict", f"{page['model']}: {page['verdict']['text']}"),
            ("traffic", f"traffic: {page['policy']['strategy']}: {weights}")]
    analysis = page.get("analysis")
    if analysis:
        out.append(("look", f"analysis: {_look_line(analysis)}"))
        out += [(f"metric {m['metric']}", f"metric {_metric_line(m)}")
                for m in analysis["metrics"]]
    out += [(f"figures {v['alias']}", _variant_line(v)) for v in page["variants"]]
    return out


def _variants_table(page: dict[str, Any]) -> Table:
    table = Table(title="variants", title_justify="left", expand=False)
    for column in ("variant", "version", "weight", "req/s", "requests", "error rate", "p50",
                   "p95", "online accuracy"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v in page["variants"]:
        table.add_row(v["alias"], f"v{v['version']}", _pct(v["weight"]),
                      f"{v['rate_per_s']:.1f}", str(v["requests"]), _pct(v["error_rate"]),
                      _ms(v["p50_ms"]), _ms(v["p95_ms"]), _pct(v["online_accuracy"]))
    return table


def _over_time(points: list[dict[str, Any]]) -> Text:
    """A metric's latest intervals, oldest first, each in its outcome's colour."""
    text = Text()
    for point in points[-INTERVALS_SHOWN:]:
        style = _OUTCOME_STYLES.get(str(point.get("outcome")), "")
        text.append(_interval(point) + " ", style=style)
    return text


def _analysis_table(page: dict[str, Any]) -> Table:
    analysis = page["analysis"]
    table = Table(title=f"analysis: {_look_line(analysis)}", title_justify="left",
                  expand=False)
    for column in ("metric", "role", "estimate", "interval", "threshold", "outcome",
                   f"interval over time (last {INTERVALS_SHOWN})"):
        table.add_column(column, justify="left" if column in ("metric", "role") else "right")
    for m in analysis["metrics"]:
        style = _OUTCOME_STYLES.get(m["outcome"], "")
        table.add_row(m["metric"], "gate" if m.get("gate") else "guard", _num(m.get("estimate")),
                      _interval(m), _num(m.get("threshold")), Text(m["outcome"], style=style),
                      _over_time(page.get("intervals", {}).get(m["metric"], [])))
    return table


def view(snapshot: Snapshot) -> RenderableType:
    """The terminal view: the runs, the verdict and step, the traffic, the variants' figures,
    each metric as the rollout's latest look judged it (with its interval over time), and the
    latest decisions."""
    parts: list[RenderableType] = []
    if snapshot.problem:
        parts.append(Text(snapshot.problem, style="red"))
    parts += [Text(_run_line(run), style="cyan") for run in snapshot.runs]
    page = snapshot.page
    if page is not None:
        state = page["verdict"]["state"]
        style = {"promoted": "bold green", "rolled back": "bold red",
                 "aborted": "bold red", "held": "bold yellow"}.get(state, "bold")
        parts.append(Text(f"{page['model']}: {page['verdict']['text']}", style=style))
        weights = page["policy"]["weights"]
        bar = Text()
        for alias, share in weights.items():
            bar.append("█" * round(40 * share),
                       style={"champion": "blue", "challenger": "yellow"}.get(alias, "white"))
        bar.append("  " + ", ".join(f"{a} {_pct(s)}" for a, s in weights.items()))
        parts += [Text(f"traffic: {page['policy']['strategy']}"), bar,
                  _variants_table(page)]
        if page.get("analysis"):
            parts.append(_analysis_table(page))
        parts += [Text(f"{time.strftime('%H:%M:%S', time.localtime(e['at']))}  {e['text']}",
                       style="red" if e.get("decision") == "abort" else "")
                  for e in page["timeline"][-8:]]
    return Group(*parts)


class PlainPrinter:
    """Prints each line whose text changed since it was last printed; the figures at most
    every FIGURES_EVERY_S, and at once when anything else changed."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._shown: dict[str, str] = {}
        self._figures_at = 0.0

    def show(self, snapshot: Snapshot, now: float) -> None:
        current = lines(snapshot)
        facts_changed = any(self._shown.get(key) != text for key, text in current
                            if not key.startswith("figures"))
        figures_due = facts_changed or now - self._figures_at >= FIGURES_EVERY_S
        for key, text in current:
            if self._shown.get(key) == text or (key.startswith("figures") and not figures_due):
                continue
            self._say(text)
            self._shown[key] = text
            if key.startswith("figures"):
                self._figures_at = now


def _active_runs(airflow: AirflowClient) -> list[dict[str, Any]]:
    """The deploy DAG's latest run, and the rollback's if one is running, with the tasks
    each is running now."""
    found = []
    for dag_id in (DEPLOY_DAG, ROLLBACK_DAG):
        for run in airflow.runs(dag_id, limit=1):
            if dag_id == ROLLBACK_DAG and run["state"] not in ("queued", "running"):
                continue
            tasks = [t["task_id"] for t in airflow.task_instances(dag_id, run["dag_run_id"])
                     if t["state"] == "running"]
            queued = run.get("queued_at") or run.get("run_after")
            found.append({"dag_id": dag_id, "run_id": run["dag_run_id"],
                          "state": run["state"], "tasks": tasks,
                          "queued_at": datetime.fromisoformat(queued).timestamp()
                          if queued else 0.0})
    return found


def since(seen: Snapshot, started: float) -> Snapshot:
    """Only what began at `started` or later: demo-commit's view of its own commit, not the
    run and rollout before it."""
    runs = [run for run in seen.runs if run["queued_at"] >= started]
    page = seen.page
    if page is not None and (page["rollout"] or {}).get("started_at", 0) < started:
        page = {**page, "rollout": None, "timeline": [], "analysis": None, "intervals": {},
                "verdict": {"state": "idle", "text": "no rollout of this commit yet"}}
    return Snapshot(page, runs, seen.problem)


def snapshot(gateway: Gateway, airflow: AirflowClient) -> Snapshot:
    page: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    problems = []
    try:
        page = gateway.rollout_page()
    except GatewayUnavailable as error:
        problems.append(f"gateway not answering ({error})")
    except OnecommitError as error:  # it answered: no page for the model (before its first deploy)
        problems.append(f"gateway: {error}")
    try:
        runs = _active_runs(airflow)
    except httpx.HTTPError as error:
        problems.append(f"Airflow not answering ({type(error).__name__})")
    return Snapshot(page, runs, "; ".join(problems) or None)


def watch(settings: Settings, model: str, until: Callable[[], bool] = lambda: False,
          console: Console | None = None, interval_s: float = 1.0, once: bool = False,
          started: float | None = None) -> None:
    """Show the model's rollout live until `until()` holds (or Ctrl-C, for the caller to
    catch); `once`: what it is now, then return; `started`: only what began then or later."""
    out = console or Console()
    with Gateway(settings, model, retry_s=1) as gateway, contextlib.closing(
            platform_client(settings)) as client:

        def snapshot_now() -> Snapshot:
            seen = snapshot(gateway, client)
            return seen if started is None else since(seen, started)
        if once:
            seen = snapshot_now()
            if out.is_terminal:
                out.print(view(seen))
            else:
                print("\n".join(line for _, line in lines(seen)))
            return
        if not out.is_terminal:
            printer = PlainPrinter(lambda line: print(line, flush=True))
            while not until():
                printer.show(snapshot_now(), time.monotonic())
                time.sleep(interval_s)
            return
        with Live(console=out, refresh_per_second=4) as live:
            while not until():
                live.update(view(snapshot_now()))
                time.sleep(interval_s)


@contextlib.contextmanager
def watching(settings: Settings, model: str) -> Iterator[None]:
    """The model's live view in a thread for as long as the block runs (demo-commit's)."""
    done = threading.Event()
    started = time.time()

    def view_until_done() -> None:
        # The view must never break the command it accompanies: a failure ends the view only.
        try:
            watch(settings, model, done.is_set, started=started)
        except Exception as error:
            print(f"live view stopped: {type(error).__name__}: {error}", flush=True)

    thread = threading.Thread(target=view_until_done, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)
