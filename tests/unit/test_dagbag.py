from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow.dag_processing.dagbag import DagBag

from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG
from onecommit.settings import PROJECT_ROOT, Settings

# Parsing the DAG folder in a fresh interpreter (this one has MLflow imported already), after
# Airflow's own imports: the CPU seconds the DAG files themselves cost.
_PARSE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
started = time.process_time()
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"cpu_s": time.process_time() - started, "errors": bag.import_errors}))
"""


def parse_cost(folder: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", _PARSE, str(folder)], capture_output=True,
                            text=True, check=True, env={**os.environ, "AIRFLOW_HOME": str(
                                folder.parent / "airflow-home")})
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def test_dags_parse_without_errors_and_cheaply(tmp_path: Path) -> None:
    # CPU time, not wall-clock: a DAG file that imports MLflow or scikit-learn at the top costs
    # seconds of CPU on every parse (5.5 s here), while a busy machine only stretches the
    # wall-clock. Without such an import the three parse in about 0.2 s.
    folder = tmp_path / "dags"
    shutil.copytree(PROJECT_ROOT / "dags", folder)
    cost = parse_cost(folder)
    assert cost["errors"] == {}
    assert cost["cpu_s"] < 1.5, f"parsing the DAGs took {cost['cpu_s']:.2f} s of CPU"
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert set(bag.dag_ids) == {"ml_train_register_and_reload", "rollback_to_before_version",
                                "register_sensor_check"}
    for dag in bag.dags.values():
        assert not dag.catchup
        assert dag.doc_md
        assert "onecommit" in dag.tags


def test_deploy_dag_runs_models_side_by_side_and_rolls_back_only_after_publishing() -> None:
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["ml_train_register_and_reload"]
    # Models deploy side by side (the sync keeps each model's own runs one at a time), and no
    # task runs unbounded.
    assert dag.max_active_runs == Settings().deploy_max_active_runs > 1
    assert all(task.execution_timeout is not None for task in dag.tasks)
    rollback_upstream = dag.get_task("trigger_rollback").upstream_task_ids
    assert rollback_upstream == {"publish", "ready", "smoke", "reload", "rollout", "promote"}
    assert {"train", "register", "retire"} <= dag.get_task("notify_failure").upstream_task_ids
    # Unloading the old versions follows the promotion, and never rolls it back.
    assert dag.get_task("retire").upstream_task_ids == {"promote", "register"}


def test_the_rollback_gets_typed_versions_its_params_accept() -> None:
    """The deploy renders the rollback's conf to Python values: before_version null for a first
    model, the versions integers. (Rendered as text, "None" and "3" failed these params.)"""
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    deploy, rollback = bag.dags[DEPLOY_DAG], bag.dags[ROLLBACK_DAG]
    trigger = deploy.get_task("trigger_rollback")

    class Registered:
        def __init__(self, before: int | None) -> None:
            self.before = before

        def xcom_pull(self, task_ids: str) -> dict[str, Any]:
            assert task_ids == "register"
            return {"model": "iris", "version": 3, "before_version": self.before}

    for before in (None, 2):
        context = {"ti": Registered(before), "run_id": "commit-abc-dev-iris"}
        conf = trigger.render_template(trigger.conf, context, deploy.get_template_env())
        assert conf["before_version"] == before
        assert conf["failed_version"] == 3
        params = copy.deepcopy(rollback.params)
        params.update(conf)
        assert params.validate()["failed_version"] == 3
