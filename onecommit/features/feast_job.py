"""The Feast side of the Optional layer, run as `python -m onecommit.features.feast_job` in the
`feast` environment (Feast needs numpy>=2; the platform's environment cannot import it).

Commands:
  prepare        write the offline file, apply the definitions, materialise into the online store
  training-set   point-in-time join of every patient's features, written as .npz for training

Paths come from ONECOMMIT_FEAST_DATA (and ONECOMMIT_FEAST_REDIS for the Redis store), the same
variables the committed feature_store*.yaml files expand.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import Entity, FeatureService, FeatureStore, FeatureView

from onecommit.features import dataset
from onecommit.files import replacing


def _store(repo: Path, yaml_file: Path) -> FeatureStore:
    return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml_file)


def _definitions(repo: Path) -> list[Any]:
    """The Feast objects `features.py` declares, as `feast apply` would collect them."""
    spec = importlib.util.spec_from_file_location("onecommit_feature_repo", repo / "features.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no features.py in {repo}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds = (Entity, FeatureView, FeatureService)
    return [value for value in vars(module).values() if isinstance(value, kinds)]


def write_offline(data_dir: Path) -> Path:
    """The offline source, rewritten atomically from the data set the platform trains on."""
    target = data_dir / dataset.OFFLINE_FILE
    with replacing(target) as out:
        pd.DataFrame(dataset.as_columns(dataset.patients())).to_parquet(out, index=False)
    return target


def prepare(repo: Path, yaml_file: Path) -> dict[str, float]:
    started = time.perf_counter()
    write_offline(Path(os.environ["ONECOMMIT_FEAST_DATA"]))
    store = _store(repo, yaml_file)
    store.apply(_definitions(repo))
    applied = time.perf_counter()
    # The window covers every observation; later runs rewrite the same keys (idempotent).
    store.materialize(dataset.OBSERVED_AT - timedelta(seconds=1), datetime.now(UTC))
    done = time.perf_counter()
    return {"apply_s": round(applied - started, 3), "materialize_s": round(done - applied, 3)}


def training_set(repo: Path, yaml_file: Path, out: Path) -> dict[str, float]:
    """Every patient's features as of now (a point-in-time join), labels from the data set."""
    started = time.perf_counter()
    rows = dataset.patients()
    entities = pd.DataFrame({dataset.ENTITY: rows.ids,
                             "event_timestamp": [datetime.now(UTC)] * len(rows.ids)})
    frame = _store(repo, yaml_file).get_historical_features(
        entity_df=entities, features=dataset.feature_refs()).to_df()
    frame = frame.sort_values(dataset.ENTITY)
    features = frame[dataset.feature_names()]
    if features.isna().to_numpy().any() or len(frame) != len(rows.ids):
        raise SystemExit("the offline store lacks features for some patients: run "
                         "`invoke optional --on` to rewrite and materialise it")
    np.savez(out, ids=frame[dataset.ENTITY].to_numpy(np.int64),
             features=features.to_numpy(np.float64), labels=rows.labels)
    return {"retrieve_s": round(time.perf_counter() - started, 3), "rows": float(len(frame))}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="feast_job")
    parser.add_argument("command", choices=["prepare", "training-set"])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--yaml", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        report = prepare(args.repo, args.yaml)
    else:
        if args.out is None:
            parser.error("training-set needs --out")
        report = training_set(args.repo, args.yaml, args.out)
    # One JSON line on stdout is the caller's result; Feast's own chatter goes to stderr.
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
