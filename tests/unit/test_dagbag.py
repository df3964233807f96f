from __future__ import annotations

import copy
import time
from typing import Any

from airflow.dag_processing.dagbag import DagBag

from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG
from onecommit.settings import PROJECT_ROOT


def test_dags_import_without_errors_and_fast() -> None:
    started = time.monotonic()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    elapsed = time.monotonic() - started
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"ml_train_register_and_reload", "rollback_to_before_version",
                                "register_sensor_check"}
    assert elapsed < 2 * len(bag.dag_ids)
    for dag in bag.dags.values():
        assert not dag.catchup
        assert dag.doc_md
        assert "onecommit" in dag.tags


def test_deploy_dag_runs_one_at_a_time_and_rolls_back_only_after_publishing() -> None:
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["ml_train_register_and_reload"]
    # Two commits pushed back to back must not race on the aliases.
    assert dag.max_active_runs == 1
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
