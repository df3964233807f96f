"""A spec's data as a table of numeric features and a label column: read from a built-in data
set, a CSV or Parquet file in the commit's tree or on this machine, or an object store; checked
for what training needs; split into the training rows and the holdout every candidate and its
champion are judged on."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from onecommit.errors import OnecommitError
from onecommit.lifecycle.catalog import Task
from onecommit.lifecycle.spec import Data, ModelSpec

if TYPE_CHECKING:
    from minio import Minio


class DataError(OnecommitError):
    """The data cannot be used; the message names the source, the column and the fix."""


@dataclass(frozen=True)
class Table:
    features: NDArray[np.float32]
    labels: NDArray[Any]
    feature_names: list[str]


@dataclass(frozen=True)
class Split:
    x_train: NDArray[np.float32]
    x_holdout: NDArray[np.float32]
    y_train: NDArray[Any]
    y_holdout: NDArray[Any]
    feature_names: list[str]


def _builtin(name: str) -> pd.DataFrame:
    from sklearn import datasets  # not at import: the sync loads this module

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame.rename(columns=lambda column: str(column).replace(" ", "_"))


# What the object store's refusals mean for the user: the S3 error code → the fix.
_S3_REFUSALS = {
    "NoSuchKey": "no such object: upload it, or fix the key in data.source",
    "NoSuchBucket": "no such bucket: create it, or fix the bucket in data.source",
    "InvalidAccessKeyId": "the store does not know the access key: check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "the store refused the secret key: check AWS_SECRET_ACCESS_KEY",
    "AccessDenied": "access denied: give AWS_ACCESS_KEY_ID's user read access to the object",
}


def _object_store(uri: str) -> tuple[Minio, str]:
    """MinIO's client for the configured object store, and the store named by scheme, host
    and port only (an endpoint URL may carry credentials)."""
    from urllib.parse import urlparse

    from minio import Minio

    endpoint = os.environ.get("ONECOMMIT_S3_ENDPOINT_URL",
                              os.environ.get("MLFLOW_S3_ENDPOINT_URL", ""))
    if not endpoint:
        raise DataError(f"data.source {uri}: no object store configured: set "
                        "ONECOMMIT_S3_ENDPOINT_URL (and AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY)")
    where = urlparse(endpoint)
    if where.scheme not in ("http", "https") or not where.hostname:
        raise DataError(f"data.source {uri}: the object store's endpoint is no "
                        "http(s)://host[:port] URL: fix ONECOMMIT_S3_ENDPOINT_URL "
                        "(or MLFLOW_S3_ENDPOINT_URL)")
    host = f"{where.hostname}{f':{where.port}' if where.port else ''}"
    store = f"{where.scheme}://{host}"
    try:
        return Minio(host, access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                     secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                     secure=where.scheme == "https"), store
    except ValueError as error:  # an access key without its secret, say
        raise DataError(f"data.source {uri}: cannot use the object store {store}: "
                        f"{error}") from None


def _s3_bytes(uri: str) -> bytes:
    """The object's bytes, through MinIO's client: endpoint from ONECOMMIT_S3_ENDPOINT_URL
    (MLflow's MLFLOW_S3_ENDPOINT_URL otherwise), keys from the usual AWS variables. A failure
    is one line naming the cause and the fix; it never quotes a key, a response body or the
    object."""
    import urllib3
    from minio.error import InvalidResponseError, MinioException, S3Error

    client, store = _object_store(uri)
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        response = client.get_object(bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()
    except S3Error as error:
        why = _S3_REFUSALS.get(str(error.code), f"{error.code}: {error.message}")
        raise DataError(f"data.source {uri}: {store} refused it ({error.code}): {why}") from None
    except InvalidResponseError:  # no S3 error body: an anonymous request refused, say
        raise DataError(f"data.source {uri}: {store} refused it without an S3 error: is it an "
                        "S3 server, and are AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "set?") from None
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        raise DataError(f"data.source {uri}: cannot read it from {store} "
                        f"({type(error).__name__}): is the object store up at that address?"
                        ) from None


def _read(source: str, content: bytes | Path) -> pd.DataFrame:
    handle = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        if source.endswith(".parquet"):
            return pd.read_parquet(handle)
        return pd.read_csv(handle)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.source {source}: the file is empty: commit rows with a header "
                        "line") from None
    except (ValueError, OSError, UnicodeDecodeError) as error:
        kind = "Parquet" if source.endswith(".parquet") else "CSV"
        raise DataError(f"data.source {source}: not readable as {kind}: {error}") from None


def file_path(data: Data, tree: Path | None) -> Path | None:
    """The data file on disk: in the commit's tree (a relative source) or on this machine;
    None for built-in sets and object stores."""
    if data.builtin is not None or data.is_s3:
        return None
    if not data.in_repo:
        return Path(data.source)
    if tree is None:
        raise DataError(f"data.source {data.source} is a path in the gitops repository, which "
                        "is not checked out here")
    return tree / data.source


def read_frame(data: Data, tree: Path | None) -> pd.DataFrame:
    if data.builtin is not None:
        return _builtin(data.builtin)
    if data.is_s3:
        return _read(data.source, _s3_bytes(data.source))
    path = file_path(data, tree)
    assert path is not None
    if not path.is_file():
        where = "in the commit" if data.in_repo else "on this machine"
        raise DataError(f"data.source {data.source}: no such file {where}: commit it, or fix "
                        "the path (relative paths start at the gitops repository's root)")
    return _read(data.source, path)


def table(frame: pd.DataFrame, data: Data, task: Task) -> Table:
    """The columns the spec names, checked: the label present and suited to the task, the
    features present and numeric, at least a row per holdout."""
    columns = [str(c) for c in frame.columns]
    if data.label not in columns:
        raise DataError(f"data.label: no column {data.label!r} in {data.source}; its columns: "
                        f"{', '.join(columns[:20])}")
    names = data.features or [c for c in columns if c != data.label]
    missing = [name for name in names if name not in columns]
    if missing:
        raise DataError(f"data.features: {', '.join(map(repr, missing))} not in {data.source}")
    if len(frame) < 10:
        raise DataError(f"data.source {data.source}: {len(frame)} rows; training and a "
                        "holdout need at least 10")
    text = [name for name in names if not pd.api.types.is_numeric_dtype(frame[name])]
    if text:
        raise DataError(f"data.features: {', '.join(map(repr, text[:5]))} in {data.source} "
                        "are not numeric: encode them, or leave them out of data.features")
    labels = frame[data.label]
    # inf is numeric and no gap, yet no class or target either (int(inf) raises).
    if not pd.api.types.is_numeric_dtype(labels) or not np.isfinite(labels).all():
        raise DataError(f"data.label: column {data.label!r} in {data.source} must be finite "
                        "numbers without gaps (classes as integers 0..k-1)")
    unbounded = [name for name in names if np.isinf(frame[name]).any()]
    if unbounded:
        raise DataError(f"data.features: {', '.join(map(repr, unbounded[:5]))} in {data.source} "
                        "hold inf: replace it with a finite value, or leave the column out")
    if task != "regression":
        labels = _classes(labels, data, task)
    return Table(frame[names].to_numpy(dtype=np.float32), labels.to_numpy(), names)


def _classes(labels: pd.Series, data: Data, task: Task) -> pd.Series:
    classes = sorted(labels.unique())
    if any(float(c) != int(c) for c in classes) or classes != list(range(len(classes))):
        raise DataError(f"data.label: a {task} label must hold the classes as integers "
                        f"0..k-1; column {data.label!r} holds {classes[:10]}")
    if task == "binary" and len(classes) != 2:
        raise DataError(f"data.label: a binary task needs 2 classes, column {data.label!r} "
                        f"has {len(classes)}: use task: multiclass")
    return labels.astype(np.int64)


def split(rows: Table, data: Data, task: Task) -> Split:
    """The holdout is fixed by the spec's seed and size, so a candidate and its champion are
    judged on the same rows."""
    from sklearn.model_selection import train_test_split

    stratify = rows.labels if task != "regression" else None
    try:
        parts = train_test_split(rows.features, rows.labels, test_size=data.test_size,
                                 random_state=data.seed, stratify=stratify)
    except ValueError as error:  # a class too rare to be in both parts, say
        raise DataError(f"data: cannot split {data.source} into training rows and a holdout of "
                        f"{data.test_size}: {error}") from None
    x_train, x_holdout, y_train, y_holdout = parts
    return Split(x_train, x_holdout, y_train, y_holdout, rows.feature_names)


def load(data: Data, task: Task, tree: Path | None) -> Split:
    return split(table(read_frame(data, tree), data, task), data, task)


def of_spec(spec: ModelSpec, tree: Path | None = None) -> Split:
    """The spec's split (its holdout replayed as traffic by the loop, a bench or a test)."""
    if spec.data is None:
        raise DataError(f"{spec.model}: the spec names no data (a promotion without `data`): "
                        "add `data` to replay its holdout")
    return load(spec.data, spec.task, tree)
