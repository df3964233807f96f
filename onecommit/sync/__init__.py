"""The sync: git is the desired state. Each pass records the commits pushed since the last one,
works out per env and model what the tip asks for (an inputs fingerprint), compares it with
what serves (Synced or OutOfSync), and starts a deploy of every OutOfSync model. The same code
runs in the local profile (the gitops remote's post-receive hook, the periodic resync, `invoke
sync`, the catch-up at `invoke up`) and on clusters (Argo CD's PostSync hook Job):

    python -m onecommit.sync --repo <path or URL> [--sha <commit>] [--env <env>]
                             [--model <model>] [--dry-run]

One job per module: `git` (commits, changes, checkout), `records` (the sync log and marker),
`validation` (bounded reading of a commit), `convergence` (desired against served), `prune`
(retiring a model whose spec is gone), `heal` (drift of serving, put back and noted), `status`
(what `invoke status` and the proof show per model), `run` (one pass).
"""

from onecommit.sync.records import SyncRecord, dag_run_id, read_syncs, record_failure, syncs_file
from onecommit.sync.run import sync
from onecommit.sync.validation import validate

__all__ = ["SyncRecord", "dag_run_id", "read_syncs", "record_failure", "sync", "syncs_file",
           "validate"]
