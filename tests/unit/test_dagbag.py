from __future__ import annotations

import time

from airflow.dag_processing.dagbag import DagBag

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
