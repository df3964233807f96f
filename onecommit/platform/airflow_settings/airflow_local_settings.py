"""Airflow's local settings on the local profile: every Airflow process imports
`airflow_local_settings` at start (this folder is on their PYTHONPATH).

The scheduler runs each task in a process it forks (a LocalExecutor worker forks the task), so
what the scheduler has imported, every task starts with. Importing the lifecycle library here,
once, spares each task the seconds of CPU that MLflow, scikit-learn, skl2onnx and tritonclient
cost to import; the forked tasks share those pages with the scheduler until they write to them.
Only the scheduler does this: the API server, DAG processor and triggerer never run tasks.

The metadata database is SQLite locally, written by all four processes and every task: a
writer waits up to 30 s for another's transaction instead of SQLite's 5 s, after which a
trigger or a task's state update failed with "database is locked" under load
(`sql_alchemy_connect_args`, set by the local profile to `CONNECT_ARGS` below).
"""

from __future__ import annotations

import importlib
import sys

CONNECT_ARGS = {"timeout": 30}
# The lifecycle library the tasks run, what it imports only where used (the ONNX export and
# runtime, scikit-learn's metrics), and what MLflow imports only at a step's first call in
# every task that logs or loads a model: its ONNX flavour and GitPython (a run's source
# version). XGBoost and LightGBM stay out: only their models' training tasks need them.
PRELOADED = ("onecommit.lifecycle.flow", "onecommit.lifecycle.notify",
             "onecommit.lifecycle.rollout", "onnxruntime", "skl2onnx", "sklearn.metrics",
             "mlflow.onnx", "git")

if sys.argv[1:2] == ["scheduler"]:
    for module in PRELOADED:
        importlib.import_module(module)
