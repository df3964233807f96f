"""The shared prediction log: every routed inference, every feedback and every shadow
comparison, written in batches off the hot path to the serving database that every gateway
replica shares. Rollout analysis and online metrics are computed from it, so they are the same
whichever replica served a request or received its feedback, and a restarted gateway keeps
the analysis window it was in.

Answering a request only appends a tuple. A timer on the event loop hands the pending rows to
the database thread, which extracts each answer's prediction (the response bytes are parsed
there, never on the hot path), inserts the batch, and writes the same requests as JSON lines
to the rotated request log (loguru's `kind=request` sink, set up in `__main__`).

A request is `infra` when it failed for a reason that is not the model's: the inference server
unreachable or timing out, or a version the desired state pins not loaded in it. Analysis
counts those apart, so a rollout pauses on them instead of judging the model by them.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from loguru import logger
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Double,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    insert,
    select,
    true,
)

from onecommit.analysis.report import Observations, ShadowCounts
from onecommit.gateway.statistics import quantile, two_proportion_test
from onecommit.gateway.strata import ARMS, Split, Tally, observed
from onecommit.serving.database import METADATA, Database, snapshot

prediction_rows = Table(
    "predictions", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("model", String(128), nullable=False),
    Column("variant", String(32), nullable=False),
    Column("version", Integer),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("infra", Boolean, nullable=False),
    # The first element of the answer's `label` (else `prediction`) output; null when nothing
    # was answered.
    Column("prediction", Double),
    Column("revision", BigInteger),
    Column("replica", String(128), nullable=False),
    # False: the request pinned a version; served, logged, never judged.
    Column("routed", Boolean, nullable=False, server_default=true()),
    # The answered class's probability (first row, as `prediction`), for a classifier that
    # answers class probabilities; null otherwise (regressors, errors, malformed answers).
    Column("confidence", Double),
    Index("ix_predictions_model_at", "model", "at"),
    Index("ix_predictions_request_id", "request_id"),
)
feedback_rows = Table(
    "feedback", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("request_id", Text, nullable=False, index=True),
    Column("label", Double, nullable=False),
    Column("replica", String(128), nullable=False),
)
shadow_rows = Table(
    "shadow_comparisons", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    # agree, disagree, or error (the challenger did not answer).
    Column("result", String(16), nullable=False),
    # What each variant answered (as `predictions.prediction`), so feedback to the mirrored
    # request judges both; null when a variant answered no prediction.
    Column("request_id", Text),
    Column("champion_prediction", Double),
    Column("challenger_prediction", Double),
    Index("ix_shadow_model_at", "model", "at"),
    Index("ix_shadow_request_id", "request_id"),
)

_BINARY_FORMATS = {"INT64": "q", "INT32": "i", "FP32": "f", "FP64": "d", "BOOL": "?"}
_request_log = logger.bind(kind="request")
# Latencies kept per variant for the quantiles of one analysis.
_LATENCY_WINDOW = 5000
# Latencies kept per arm and split for the comparison of the two (the most recent).
_ARM_LATENCIES = 2000


# The serving convention (`lifecycle/catalog.py`): classification models answer `label` (the
# class, an integer 0..k-1) and optionally `probabilities` ([rows, k], column j the class j),
# regression models `prediction`.
LABEL, PROBABILITIES = "label", "probabilities"
_PREDICTION_OUTPUTS = (LABEL, "prediction")
_PROBABILITY_FORMATS = {"FP16": "e", "FP32": "f", "FP64": "d"}
# More classes than this: no confidence is read (a bound on the work per logged answer).
_MAX_CLASSES = 10_000
# How far a row of class probabilities may sum from 1 (float32 rounding) and still be one.
_SUM_TOLERANCE = 1e-3
_MALFORMED = (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError,
              struct.error)

# An answer's output tensors by name: the tensor's header and where its bytes start in a
# binary-tensor answer (None: its data is in the JSON).
_Tensors = dict[str, tuple[dict[str, Any], int | None]]


def _tensors(body: bytes, header_length: int | None) -> _Tensors:
    header = orjson.loads(body[:header_length] if header_length else body)
    offset = header_length or 0
    found: _Tensors = {}
    for tensor in header.get("outputs", []):
        size = tensor.get("parameters", {}).get("binary_data_size")
        found[tensor["name"]] = (tensor, None if size is None else offset)
        offset += size or 0
    return found


def _element(body: bytes, tensor: dict[str, Any], offset: int | None, index: int,
             formats: dict[str, str]) -> float:
    """Element `index` of a tensor (row-major), from its JSON data or its binary bytes."""
    if offset is None:
        return float(tensor["data"][index])
    code = formats[tensor["datatype"]]
    width = struct.calcsize(f"<{code}")
    if (index + 1) * width > int(tensor["parameters"]["binary_data_size"]):
        raise IndexError("beyond the tensor's bytes")
    return float(struct.unpack_from(f"<{code}", body, offset + index * width)[0])


def _first_element(body: bytes, tensors: _Tensors) -> float | None:
    name = next((name for name in _PREDICTION_OUTPUTS if name in tensors), None)
    if name is None:
        return None
    tensor, offset = tensors[name]
    return _element(body, tensor, offset, 0, _BINARY_FORMATS)


def _confidence(body: bytes, tensors: _Tensors) -> float | None:
    """The first row's probability of the class its `label` answered; None unless the answer
    has both, the label is one of the row's classes and the row is a probability
    distribution."""
    if LABEL not in tensors or PROBABILITIES not in tensors:
        return None
    label = _element(body, *tensors[LABEL], 0, _BINARY_FORMATS)
    tensor, offset = tensors[PROBABILITIES]
    rows, classes = (int(n) for n in tensor["shape"])
    if (rows < 1 or not 2 <= classes <= _MAX_CLASSES or tensor["datatype"] not in
            _PROBABILITY_FORMATS or not label.is_integer() or not 0 <= label < classes):
        return None
    if offset is None and tensor["data"] and isinstance(tensor["data"][0], list):
        tensor = {**tensor, "data": tensor["data"][0]}  # nested JSON: its first row
    row = [_element(body, tensor, offset, j, _PROBABILITY_FORMATS) for j in range(classes)]
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in row) or abs(
            math.fsum(row) - 1) > _SUM_TOLERANCE:
        return None
    return row[int(label)]


def prediction(body: bytes, header_length: int | None) -> float | None:
    """The first element of the answer's `label` output, else of its `prediction`, in a v2
    response, JSON or binary-tensor; None when it has neither or is not a v2 answer."""
    try:
        return _first_element(body, _tensors(body, header_length))
    except _MALFORMED:
        return None  # The request still counts; it cannot be judged against ground truth.


def answer(body: bytes, header_length: int | None) -> tuple[float | None, float | None]:
    """The answer's prediction (as `prediction`) and its confidence: for a classifier
    answering `probabilities`, the probability of the class it answered (first row, as the
    label), which confidence-based performance estimation sums. The answered label's column
    rather than the row's maximum: the two are the same for a model answering its most
    probable class, and for one that does not (a tuned threshold) the answered class's
    probability is still the chance of that answer being right. None when the answer has no
    such probability or it is malformed (missing, a wrong shape, not a probability, a row not
    summing to 1): the request is logged all the same."""
    try:
        tensors = _tensors(body, header_length)
        predicted = _first_element(body, tensors)
    except _MALFORMED:
        return None, None
    try:
        return predicted, _confidence(body, tensors)
    except _MALFORMED:
        return predicted, None


class Served(NamedTuple):
    """One answered request, as the hot path hands it over."""

    at: float
    request_id: str
    model: str
    variant: str
    version: int | None
    status: int
    latency_ms: float
    infra: bool
    body: bytes
    header_length: int | None
    revision: int | None
    # Routed by the traffic policy (False: the request pinned a version); only routed
    # requests are judged by a rollout's analysis.
    routed: bool


class Mirrored(NamedTuple):
    """One request mirrored to the challenger (shadow), and what each variant answered."""

    at: float
    request_id: str
    model: str
    version: int
    result: str
    champion: float | None
    challenger: float | None


class _Answer(NamedTuple):
    model: str
    variant: str
    body: bytes
    header_length: int | None


class Judged(NamedTuple):
    """Feedback joined to the answer it judges."""

    model: str
    variant: str
    correct: bool
    # |prediction - label|; None when the answer had no prediction to judge.
    error: float | None


class PredictionLog:
    def __init__(self, database: Database, replica: str, interval_s: float = 0.1,
                 max_pending: int = 5000, retention_s: float = 86_400,
                 recent: int = 20_000) -> None:
        self._db = database
        self._replica = replica
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._retention_s = retention_s
        self._pending: list[Served] = []
        self._feedback: list[tuple[float, str, float]] = []
        self._shadow: list[Mirrored] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._pruned_at = 0.0
        # Answers this replica gave lately, so feedback it receives joins without a query.
        self._recent: OrderedDict[str, _Answer] = OrderedDict()
        self._recent_size = recent

    # -- hot path ---------------------------------------------------------------------------

    def add(self, served: Served) -> None:
        self._pending.append(served)
        if served.status == 200:
            self._recent[served.request_id] = _Answer(served.model, served.variant,
                                                      served.body, served.header_length)
            if len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)
        self._schedule()

    def add_shadow(self, mirrored: Mirrored) -> None:
        self._shadow.append(mirrored)
        self._schedule()

    def _schedule(self) -> None:
        if len(self._pending) >= self._max_pending:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s,
                                                                self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self.flush())
        # Keep a reference until done: the event loop only holds weak ones.
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    # -- writing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Hand everything pending to the database thread (which writes in arrival order)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._pending = self._pending, []
        answers, self._feedback = self._feedback, []
        shadows, self._shadow = self._shadow, []
        if rows or answers or shadows:
            try:
                await self._db.run(self._write, rows, answers, shadows)
            except Exception as error:  # A database fault must never take serving down.
                logger.warning(f"prediction log: {len(rows)} rows not written: {error}")

    def _write(self, rows: list[Served], answers: list[tuple[float, str, float]],
               shadows: list[Mirrored]) -> None:
        values = []
        for r in rows:
            predicted, confidence = (answer(r.body, r.header_length) if r.status == 200
                                     else (None, None))
            values.append({"at": r.at, "request_id": r.request_id, "model": r.model,
                           "variant": r.variant, "version": r.version, "status": r.status,
                           "latency_ms": r.latency_ms, "infra": r.infra,
                           "revision": r.revision, "replica": self._replica,
                           "routed": r.routed, "prediction": predicted,
                           "confidence": confidence})
        with self._db.engine.begin() as connection:
            if values:
                connection.execute(insert(prediction_rows), values)
            if answers:
                connection.execute(insert(feedback_rows), [
                    {"at": at, "request_id": rid, "label": label, "replica": self._replica}
                    for at, rid, label in answers])
            if shadows:
                connection.execute(insert(shadow_rows), [
                    {"at": m.at, "request_id": m.request_id, "model": m.model,
                     "version": m.version, "result": m.result,
                     "champion_prediction": m.champion, "challenger_prediction": m.challenger}
                    for m in shadows])
            self._prune(connection)
        if values:
            _request_log.info("\n".join(_line(v) for v in values))

    def _prune(self, connection: Any) -> None:
        now = time.time()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        horizon = now - self._retention_s
        connection.execute(delete(prediction_rows).where(prediction_rows.c.at < horizon))
        connection.execute(delete(feedback_rows).where(feedback_rows.c.at < horizon))
        connection.execute(delete(shadow_rows).where(shadow_rows.c.at < horizon))

    # -- feedback ---------------------------------------------------------------------------

    async def feedback(self, request_id: str, label: float,
                       wait_s: float = 0.5) -> Judged | None:
        """Join ground truth to a served request, whichever replica served it; None when no
        replica answered that request id (within the retention)."""
        answer = self._recent.get(request_id)
        if answer is not None:
            model, variant = answer.model, answer.variant
            predicted = prediction(answer.body, answer.header_length)
        else:
            # Another replica may not have flushed its batch yet: ask again for a moment.
            deadline = time.monotonic() + wait_s
            while (found := await self._db.read(self._lookup, request_id)) is None:
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(self._interval_s)
            model, variant, predicted = found
        self._feedback.append((time.time(), request_id, label))
        self._schedule()
        return Judged(model, variant, predicted == label,
                      None if predicted is None else abs(predicted - label))

    def _lookup(self, request_id: str) -> tuple[str, str, float | None] | None:
        with self._db.engine.connect() as connection:
            row = connection.execute(
                select(prediction_rows.c.model, prediction_rows.c.variant,
                       prediction_rows.c.prediction)
                .where(prediction_rows.c.request_id == request_id, prediction_rows.c.status == 200)
                .order_by(prediction_rows.c.id.desc()).limit(1)).one_or_none()
        return None if row is None else (row.model, row.variant, row.prediction)

    # -- analysis ---------------------------------------------------------------------------

    async def analysis(self, model: str, since: float, from_revision: int, alpha: float,
                       required_per_arm: int) -> dict[str, Any]:
        """Per variant since `since`: requests the model answered or failed, its errors,
        infrastructure failures apart, latency quantiles, online accuracy; the A/B test and
        the shadow agreement. Only requests routed under `from_revision` of desired state or
        later count: a replica that has not yet taken a change does not blur the window.
        This replica's pending rows are written first; other replicas' are at most one batch
        behind."""
        await self.flush()
        return await self._db.read(self._analysis, model, since, from_revision, alpha,
                                   required_per_arm)

    def _analysis(self, model: str, since: float, from_revision: int, alpha: float,
                  required_per_arm: int) -> dict[str, Any]:
        p = prediction_rows.c
        window = _routed(model, since, from_revision)
        with snapshot(self._db.engine) as connection:  # counts that agree: see _observations
            counts = connection.execute(
                select(p.variant, func.count(), _count(p.infra), _count(_MODEL_ERROR),
                       func.count(p.confidence), func.sum(p.confidence))
                .where(window).group_by(p.variant)).all()
            judged = connection.execute(
                select(p.variant, func.count(), _count(_CORRECT), func.avg(_ABS_ERROR))
                .select_from(_FEEDBACK).where(window, _JUDGED).group_by(p.variant)).all()
            latencies = {variant: _latencies(connection, and_(window, p.variant == variant),
                                             _LATENCY_WINDOW) for variant, *_ in counts}
            shadow = _shadow_results(connection, model, since)
        labelled = {variant: (int(n), int(correct or 0), mae)
                    for variant, n, correct, mae in judged}
        report: dict[str, Any] = {"since": since, "variants": {
            variant: _summary(int(total), int(infra or 0), int(errors or 0),
                              latencies[variant], *labelled.get(variant, (0, 0, None)),
                              int(scored), float(confidence or 0))
            for variant, total, infra, errors, scored, confidence in counts}}
        champion, challenger = labelled.get("champion"), labelled.get("challenger")
        if champion and challenger:
            report["ab_test"] = two_proportion_test(
                champion[1], champion[0], challenger[1], challenger[0], alpha,
                required_per_arm).__dict__
        compared = shadow.get("agree", 0) + shadow.get("disagree", 0)
        report["shadow_comparisons"] = compared
        report["shadow_errors"] = shadow.get("error", 0)
        report["shadow_agreement"] = shadow.get("agree", 0) / compared if compared else None
        return report


    async def observations(self, model: str, since: float,
                           windows: Sequence[Split]) -> Observations:
        """The typed observations of the window: per traffic split since `since` (`windows`,
        oldest first, the first starting at the window's revision), the champion's and the
        challenger's counts of routed requests, and the shadow comparisons. Written first as
        for `analysis`."""
        await self.flush()
        return await self._db.read(self._observations, model, since, windows)

    def _observations(self, model: str, since: float,
                      windows: Sequence[Split]) -> Observations:
        p = prediction_rows.c
        window = and_(_routed(model, since, windows[0].first), p.variant.in_(ARMS))
        by_revision = (p.revision, p.variant)
        # One snapshot: feedback that arrives between two queries must not judge requests the
        # first did not count (labelled would exceed requests).
        with snapshot(self._db.engine) as connection:
            counts = connection.execute(
                select(*by_revision, func.count(), _count(p.infra), _count(_MODEL_ERROR),
                       func.count(p.confidence), func.sum(p.confidence))
                .where(window).group_by(*by_revision)).all()
            judged = connection.execute(
                select(*by_revision, func.count(), _count(_CORRECT), func.sum(_ABS_ERROR),
                       func.sum(_ABS_ERROR * _ABS_ERROR))
                .select_from(_FEEDBACK).where(window, _JUDGED).group_by(*by_revision)).all()
            latencies = {(index, arm): _latencies(connection, and_(
                window, p.revision.between(split.first, split.last), p.variant == arm),
                _ARM_LATENCIES) for index, split in enumerate(windows) for arm in ARMS}
            shadow = _shadow_results(connection, model, since)
            paired = _shadow_pairs(connection, model, since)
        tallies: list[Tally] = [
            (int(revision), arm, {"requests": int(total) - int(infra or 0),
                                  "errors": int(errors or 0), "infra_errors": int(infra or 0),
                                  # Answers with the answered class's probability, and Σ of
                                  # those: the label-free estimate of accuracy (CBPE).
                                  "scored": int(scored),
                                  "confidence_sum": float(confidence or 0)})
            for revision, arm, total, infra, errors, scored, confidence in counts]
        tallies += [(int(revision), arm, {"labelled": int(n), "correct": int(correct or 0),
                                          "abs_error_sum": float(errors or 0),
                                          "abs_error_squares": float(squares or 0)})
                    for revision, arm, n, correct, errors, squares in judged]
        # `drift` stays empty: the log does not keep the requests' inputs.
        agree = shadow.get("agree", 0)
        return observed(windows, tallies, latencies, ShadowCounts(
            compared=agree + shadow.get("disagree", 0), agree=agree, **paired))


def _routed(model: str, since: float, from_revision: int) -> ColumnElement[bool]:
    """The model's requests the policy routed since `since`, under `from_revision` of
    desired state or later."""
    p = prediction_rows.c
    return and_(p.model == model, p.at >= since, p.revision >= from_revision,
                p.routed.is_(True))


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


_MODEL_ERROR = and_(prediction_rows.c.status >= 500, prediction_rows.c.infra.is_(False))
_CORRECT = prediction_rows.c.prediction == feedback_rows.c.label
_ABS_ERROR = func.abs(prediction_rows.c.prediction - feedback_rows.c.label)
_FEEDBACK = prediction_rows.join(feedback_rows,
                                 feedback_rows.c.request_id == prediction_rows.c.request_id)
# Each feedback judges one answer: the latest to its request id (ids may repeat).
_later = prediction_rows.alias("later")
_JUDGED = and_(prediction_rows.c.status == 200, ~select(_later.c.id).where(
    _later.c.request_id == prediction_rows.c.request_id, _later.c.status == 200,
    _later.c.id > prediction_rows.c.id).exists())


def _latencies(connection: Connection, where: ColumnElement[bool], limit: int) -> list[float]:
    """The most recent latencies of requests the infrastructure did not fail."""
    p = prediction_rows.c
    return [row[0] for row in connection.execute(
        select(p.latency_ms).where(where, p.infra.is_(False)).order_by(p.id.desc())
        .limit(limit))]


def _shadow_results(connection: Connection, model: str, since: float) -> dict[str, int]:
    s = shadow_rows.c
    return {result: int(n) for result, n in connection.execute(
        select(s.result, func.count()).where(s.model == model, s.at >= since)
        .group_by(s.result))}


def _shadow_pairs(connection: Connection, model: str, since: float) -> dict[str, int]:
    """Of the mirrored requests with feedback, which variant was right: both, the champion
    only, the challenger only, neither. Each feedback judges the latest mirror of its request
    id, as for answers."""
    s, f = shadow_rows.c, feedback_rows.c
    champion, challenger = s.champion_prediction == f.label, s.challenger_prediction == f.label
    later = shadow_rows.alias("later_shadow")
    row = connection.execute(
        select(_count(and_(champion, challenger)), _count(and_(champion, ~challenger)),
               _count(and_(~champion, challenger)), _count(and_(~champion, ~challenger)))
        .select_from(shadow_rows.join(feedback_rows, f.request_id == s.request_id))
        .where(s.model == model, s.at >= since, s.champion_prediction.is_not(None),
               s.challenger_prediction.is_not(None),
               ~select(later.c.id).where(later.c.request_id == s.request_id,
                                         later.c.id > s.id).exists())).one()
    return {name: int(n or 0) for name, n in zip(
        ("both_correct", "champion_only", "challenger_only", "neither_correct"), row,
        strict=True)}


def _summary(total: int, infra: int, errors: int, latencies: list[float], labelled: int,
             correct: int, mae: float | None, scored: int,
             confidence: float) -> dict[str, Any]:
    # Requests failed by infrastructure are not the model's sample: counted apart.
    requests = total - infra
    return {
        "requests": requests, "errors": errors, "infra_errors": infra,
        "error_rate": errors / requests if requests else 0.0,
        "latency_ms": {f"p{int(q * 100)}": quantile(latencies, q) for q in (0.5, 0.95, 0.99)},
        "feedback": labelled,
        "online_accuracy": correct / labelled if labelled else None,
        # Mean |prediction - label| over the judged answers (regression models' measure).
        "online_mae": None if mae is None else float(mae),
        # Label-free: the mean probability of the answered class over the answers that have
        # one (classifiers answering probabilities); right as far as the model is calibrated.
        "estimated_accuracy": confidence / scored if scored else None,
    }


def _line(row: dict[str, Any]) -> str:
    return orjson.dumps({
        "time": datetime.fromtimestamp(row["at"], UTC).isoformat(timespec="milliseconds"),
        "request_id": row["request_id"], "model": row["model"], "variant": row["variant"],
        "version": row["version"], "status": row["status"], "infra": row["infra"],
        "latency_ms": round(row["latency_ms"], 3), "replica": row["replica"]}).decode()
