"""The lifecycle's Airflow DAGs by id: the sync triggers the deploy, a failed deploy triggers
the rollback, and the loop, the watch view and the proof follow their runs."""

from __future__ import annotations

DEPLOY_DAG = "ml_train_register_and_reload"
ROLLBACK_DAG = "rollback_to_before_version"
SENSOR_CHECK_DAG = "register_sensor_check"
