"""No process of the local platform outlives its parent.

Python imports `sitecustomize` at every interpreter start; this folder is on the PYTHONPATH of
every Python program the platform supervises (`components.py`), so it applies to them, to the
interpreters they start (MLflow's uvicorn, Airflow's workers) and, through a fork hook, to the
processes they fork (LocalExecutor workers and their tasks).

Why: supervisor restarts a program that died, but only the process it started. When that
process is killed (kill -9), its children would live on as orphans: MLflow's old uvicorn still
holding the port the restarted server needs, a LocalExecutor worker still running a task that
can no longer report (its log pipe went with the scheduler), all out of reach of `invoke down`.
Dying with the parent leaves the restarted program a clean slate: Airflow's restarted scheduler
finds the orphaned task and runs it again (`orphaned_tasks_check_interval`).
"""

from __future__ import annotations

import os
import signal
import threading
import time


def _die_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="onecommit-orphan-watch", daemon=True).start()


_die_with_parent()
# Fork hooks are inherited: children of children watch their own parent too.
os.register_at_fork(after_in_child=_die_with_parent)
