from __future__ import annotations

import time

from airflow.dag_processing.dagbag import DagBag

from onecommit.settings import PROJECT_ROOT


def test_dags_import_without_errors_and_fast() -> None:
    started = time.monotonic()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    elapsed = time.monotonic() - started
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"ml_train_register_and_reload", "rollback_to_before_version"}
    assert elapsed < 2 * len(bag.dag_ids)
    for dag in bag.dags.values():
        assert not dag.catchup
        assert dag.doc_md
        assert "onecommit" in dag.tags
