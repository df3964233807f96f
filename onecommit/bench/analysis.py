"""`invoke bench analysis`: release decisions simulated, no platform. Thousands of rollouts of a
challenger against its champion are run side by side under four policies, each deciding from
the counts a gateway would have at every look:

- (a) the policy before the sequential analysis: canary steps judged against absolute
  thresholds at the end of each step's pause, with the two-proportion z-test of the A/B
  strategy (`gateway.statistics`) looked at every step (reimplemented here over arrays, as the
  rollout judged until the analysis replaced it);
- (b) Flagger's: the weight stepped up every interval while the thresholds hold, a rollback after
  `threshold` failed checks (a check with no data fails, as Flagger's does);
- (c) Kayenta's fixed horizon: a 50/50 split until a sample sized for a 2-point difference at
  80 % power, then one z-test;
- (d) the new sequential policy: the real decision code of `onecommit.analysis` (the same
  sequential tests and `verdict.step_actions` a rollout runs), vectorised over rollouts.

Traffic is Poisson at the scenario's rate in slices of SLICE_S seconds; every answered request's
label arrives after the scenario's delay; the champion is right with probability CHAMPION and the
challenger with CHAMPION + the scenario's difference; no request fails (the error-rate guard is
judged all the same). Every policy looks every slice.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from onecommit.analysis.report import sequential_test
from onecommit.analysis.sequential import MeanComparison, ProportionBound, Sums
from onecommit.analysis.spec import AnalysisSpec, Limits, Metric
from onecommit.analysis.verdict import ABORT, ADVANCE, CONTINUE, INCONCLUSIVE, step_actions
from onecommit.bench.report import Target

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Flags = NDArray[np.bool_]

DOCS = Path("docs/bench")
# The scenarios of issue #27: the challenger's accuracy minus the champion's, the label delay,
# the request rate.
DIFFERENCES = (0.0, -0.01, -0.02, -0.05, 0.02)
DELAYS_S = (0, 30, 300)
RATES = (5, 50)
CHAMPION = 0.90
SLICE_S = 5
ALPHA = 0.05
MARGIN = 0.01
# Today's thresholds as a spec would set them: an accuracy floor five points under the
# champion, the default error rate and request minimum.
FLOOR, MAX_ERROR_RATE, MIN_REQUESTS = 0.85, 0.01, 50
CANARY_STEPS, PAUSE_S = (0.2, 0.5, 1.0), 60
# Flagger's canary analysis (its documented example): 60 s interval, step 10 up to 50 %,
# rollback after 5 failed checks.
FLAGGER_INTERVAL_S, FLAGGER_STEP, FLAGGER_MAX, FLAGGER_THRESHOLD = 60, 0.1, 0.5, 5
# Kayenta's sample: sized to detect 2 points at 80 % power (two-sided at ALPHA).
FIXED_DIFFERENCE, FIXED_POWER = 0.02, 0.8
# The new policy's limits: a step lasts at least MIN_DWELL_S; an hour without a decision is
# inconclusive.
MIN_DWELL_S, MAX_SECONDS = 10.0, 3600.0
PROMOTED, ROLLED_BACK, INCONCLUSIVE_END, OPEN = 1, -1, 0, 2
POLICIES = ("today", "flagger", "fixed_horizon", "sequential")


@dataclass(frozen=True)
class AnalysisBenchConfig:
    rollouts_per_cell: int = 350
    seed: int = 27
    name: str = "analysis"


def new_policy_spec() -> AnalysisSpec:
    """What policy (d) judges by: accuracy against the champion within one point (a gate),
    the error rate under 1 % (a guard)."""
    return AnalysisSpec(
        metrics=[Metric(measure="online_accuracy", judged="vs_champion", margin=MARGIN,
                        alpha=ALPHA),
                 Metric(measure="error_rate", judged="bound", bound=MAX_ERROR_RATE,
                        alpha=ALPHA)],
        limits=Limits(min_dwell_s=MIN_DWELL_S, min_requests=MIN_REQUESTS,
                      max_seconds=MAX_SECONDS))


def fixed_sample_per_arm(difference: float = FIXED_DIFFERENCE, power: float = FIXED_POWER,
                         alpha: float = ALPHA, base: float = CHAMPION) -> int:
    """Labelled requests per arm for a two-sided two-proportion z-test to detect `difference`
    with `power` (Fleiss, "Statistical methods for rates and proportions", eq. 4.14)."""
    p1, p2 = base, base - difference
    mean = (p1 + p2) / 2
    need = (norm.ppf(1 - alpha / 2) * np.sqrt(2 * mean * (1 - mean))
            + norm.ppf(power) * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / difference ** 2
    return int(np.ceil(need))


@dataclass(frozen=True)
class Cells:
    """One entry per simulated rollout: its scenario."""

    difference: Floats
    delay_slices: Ints
    rate: Floats
    cell: Ints

    @classmethod
    def grid(cls, per_cell: int) -> Cells:
        scenarios = [(d, delay, rate) for d in DIFFERENCES for delay in DELAYS_S for rate in RATES]
        index = np.repeat(np.arange(len(scenarios)), per_cell)
        table = np.array(scenarios, dtype=float)[index]
        return cls(difference=table[:, 0], delay_slices=(table[:, 1] // SLICE_S).astype(int),
                   rate=table[:, 2], cell=index)

    @property
    def size(self) -> int:
        return int(self.cell.size)


@dataclass
class Ends:
    """How each rollout ended, when (simulated seconds) and on how many labelled requests."""

    outcome: Ints
    seconds: Floats
    labelled: Floats

    @classmethod
    def open(cls, size: int) -> Ends:
        return cls(np.full(size, OPEN), np.full(size, np.nan), np.full(size, np.nan))

    def close(self, now: Flags, outcome: int | Ints, seconds: float, labelled: Floats) -> None:
        now = now & (self.outcome == OPEN)
        self.outcome = np.where(now, outcome, self.outcome)
        self.seconds = np.where(now, seconds, self.seconds)
        self.labelled = np.where(now, labelled, self.labelled)

    @property
    def running(self) -> Flags:
        return np.asarray(self.outcome == OPEN)


class Traffic:
    """Requests served slice by slice, and their labels arriving after each rollout's delay.
    Arm 0 is the champion, arm 1 the challenger."""

    def __init__(self, cells: Cells, rng: np.random.Generator, slices: int) -> None:
        self.cells, self.rng = cells, rng
        self.requests = np.zeros((2, cells.size, slices), dtype=np.int64)
        self.correct = np.zeros((2, cells.size, slices), dtype=np.int64)
        self.stratum = np.zeros((cells.size, slices), dtype=np.int64)
        self.labelled = np.zeros(cells.size)
        self._rows = np.arange(cells.size)

    def serve(self, t: int, weight: Floats, stratum: Ints) -> Ints:
        """This slice's requests, split by `weight` (the challenger's share); returns the
        requests per arm."""
        n = self.rng.poisson(self.cells.rate * SLICE_S)
        challenger = self.rng.binomial(n, weight)
        served: Ints = np.stack([n - challenger, challenger])
        accuracy = np.stack([np.full(self.cells.size, CHAMPION),
                             CHAMPION + self.cells.difference])
        self.requests[:, :, t] = served
        self.correct[:, :, t] = self.rng.binomial(served, accuracy)
        self.stratum[:, t] = stratum
        return served

    def labels(self, t: int) -> tuple[Ints, Ints, Ints, Ints]:
        """Labels arriving in slice t: per arm labelled and right answers, and the slice and
        stratum they were served in."""
        served_at = t - self.cells.delay_slices
        arrived = served_at >= 0
        at = np.maximum(served_at, 0)
        n = np.where(arrived, self.requests[:, self._rows, at], 0)
        right = np.where(arrived, self.correct[:, self._rows, at], 0)
        self.labelled += n.sum(axis=0)
        return n, right, served_at, self.stratum[self._rows, at]


def z_test_worse(labelled: Floats, right: Floats, alpha: float = ALPHA) -> Flags:
    """`gateway.statistics.two_proportion_test` over arrays: the challenger (arm 1)
    significantly less accurate than the champion (arm 0) by the pooled two-sided z-test."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = right / labelled
        pooled = right.sum(axis=0) / labelled.sum(axis=0)
        se = np.sqrt(pooled * (1 - pooled) * (1 / labelled[0] + 1 / labelled[1]))
        difference = p[1] - p[0]
        p_value = np.where(se > 0, 2 * norm.sf(np.abs(difference) / se),
                           np.where(difference == 0, 1.0, 0.0))
    both = (labelled > 0).all(axis=0)
    return np.asarray(both & (p_value < alpha) & (difference < 0))


def _today(cells: Cells, rng: np.random.Generator, slices: int) -> Ends:
    """Canary steps, each held PAUSE_S then judged every slice while waiting for traffic:
    error rate, the accuracy floor and the z-test over the step's window."""
    traffic, ends = Traffic(cells, rng, slices), Ends.open(cells.size)
    step, started = np.zeros(cells.size, dtype=np.int64), np.zeros(cells.size, dtype=np.int64)
    window_requests = np.zeros(cells.size)
    window_labelled, window_right = np.zeros((2, cells.size)), np.zeros((2, cells.size))
    for t in range(slices):
        weight = np.asarray(CANARY_STEPS)[step]
        served = traffic.serve(t, weight, step)
        window_requests += served[1]
        n, right, served_at, _ = traffic.labels(t)
        mine = served_at >= started
        window_labelled += np.where(mine, n, 0)
        window_right += np.where(mine, right, 0)
        held = (t + 1 - started) * SLICE_S >= PAUSE_S
        waited_out = (t + 1 - started) * SLICE_S > PAUSE_S * 4
        enough = window_requests >= MIN_REQUESTS
        with np.errstate(divide="ignore", invalid="ignore"):
            accuracy = window_right[1] / window_labelled[1]
        below_floor = (window_labelled[1] > 0) & (accuracy < FLOOR)
        # No errors are simulated: the error-rate threshold never trips.
        abort = held & enough & (below_floor | z_test_worse(window_labelled, window_right))
        passed = held & enough & ~abort
        now = float((t + 1) * SLICE_S)
        ends.close(ends.running & abort, ROLLED_BACK, now, traffic.labelled)
        ends.close(ends.running & held & ~enough & waited_out, ROLLED_BACK, now, traffic.labelled)
        last = step == len(CANARY_STEPS) - 1
        ends.close(ends.running & passed & last, PROMOTED, now, traffic.labelled)
        advance = ends.running & passed
        step = np.where(advance, step + 1, step)
        started = np.where(advance, t + 1, started)
        window_requests = np.where(advance, 0, window_requests)
        window_labelled = np.where(advance, 0, window_labelled)
        window_right = np.where(advance, 0, window_right)
        if not ends.running.any():
            break
    return ends


def _flagger(cells: Cells, rng: np.random.Generator, slices: int) -> Ends:
    """Every interval, the challenger's accuracy over the labels that arrived in it against
    the floor: a pass steps the weight up (promotion after a pass at the maximum), a failure
    (no data included) counts; the threshold's failure rolls back."""
    traffic, ends = Traffic(cells, rng, slices), Ends.open(cells.size)
    weight, failed = np.full(cells.size, FLAGGER_STEP), np.zeros(cells.size, dtype=np.int64)
    interval_labelled, interval_right = np.zeros(cells.size), np.zeros(cells.size)
    every = FLAGGER_INTERVAL_S // SLICE_S
    for t in range(slices):
        traffic.serve(t, weight, np.zeros(cells.size, dtype=np.int64))
        n, right, _, _ = traffic.labels(t)
        interval_labelled += n[1]
        interval_right += right[1]
        if (t + 1) % every:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (interval_labelled > 0) & (interval_right / interval_labelled >= FLOOR)
        failed += ~ok
        now = float((t + 1) * SLICE_S)
        ends.close(ends.running & (failed >= FLAGGER_THRESHOLD), ROLLED_BACK, now,
                   traffic.labelled)
        ends.close(ends.running & ok & (weight >= FLAGGER_MAX - 1e-9), PROMOTED, now,
                   traffic.labelled)
        weight = np.where(ok, np.minimum(weight + FLAGGER_STEP, FLAGGER_MAX), weight)
        interval_labelled[:], interval_right[:] = 0, 0
        if not ends.running.any():
            break
    return ends


def _fixed_horizon(cells: Cells, rng: np.random.Generator, slices: int) -> Ends:
    """A 50/50 split until both arms have the fixed sample, then one z-test."""
    traffic, ends = Traffic(cells, rng, slices), Ends.open(cells.size)
    need = fixed_sample_per_arm()
    labelled, right = np.zeros((2, cells.size)), np.zeros((2, cells.size))
    for t in range(slices):
        traffic.serve(t, np.full(cells.size, 0.5), np.zeros(cells.size, dtype=np.int64))
        n, correct, _, _ = traffic.labels(t)
        labelled += n
        right += correct
        done = (labelled >= need).all(axis=0)
        worse = z_test_worse(labelled, right)
        now = float((t + 1) * SLICE_S)
        ends.close(ends.running & done, np.where(worse, ROLLED_BACK, PROMOTED), now,
                   traffic.labelled)
        if not ends.running.any():
            break
    return ends


def _sequential(cells: Cells, rng: np.random.Generator, slices: int) -> Ends:
    """Policy (d): canary steps; at every look the spec's sequential tests and the verdict's
    rule; early advance once non-inferiority holds, abort once worse beyond the margin."""
    spec = new_policy_spec()
    accuracy_metric, error_metric = spec.metrics
    accuracy = sequential_test(accuracy_metric, len(CANARY_STEPS), True, (cells.size,))
    errors = sequential_test(error_metric, 1, True, (cells.size,))
    assert isinstance(accuracy, MeanComparison)
    assert isinstance(errors, ProportionBound)
    traffic, ends = Traffic(cells, rng, slices), Ends.open(cells.size)
    step, started = np.zeros(cells.size, dtype=np.int64), np.zeros(cells.size, dtype=np.int64)
    step_requests = np.zeros(cells.size)
    gates = np.array([metric.is_gate for metric in spec.metrics])
    for t in range(slices):
        served = traffic.serve(t, np.asarray(CANARY_STEPS)[step], step)
        step_requests += served[1]
        errors.update(served[1], np.zeros(cells.size))
        n, right, _, stratum = traffic.labels(t)
        accuracy.update(Sums.bernoulli(n[0], right[0]), Sums.bernoulli(n[1], right[1]),
                        stratum)
        outcomes = np.stack([accuracy.state().outcome, errors.state().outcome])
        step_s = (t + 1 - started) * SLICE_S
        now = float((t + 1) * SLICE_S)
        never = np.zeros(cells.size, dtype=bool)
        action = step_actions(outcomes, gates, never, step_requests >= spec.limits.min_requests,
                              step_s >= PAUSE_S, step_s >= spec.limits.min_dwell_s,
                              np.full(cells.size, now >= spec.limits.max_seconds))
        ends.close(ends.running & (action == ABORT), ROLLED_BACK, now, traffic.labelled)
        ends.close(ends.running & (action == INCONCLUSIVE), INCONCLUSIVE_END, now,
                   traffic.labelled)
        moves = ends.running & ((action == CONTINUE) | (action == ADVANCE))
        ends.close(moves & (step == len(CANARY_STEPS) - 1), PROMOTED, now, traffic.labelled)
        moves &= ends.running
        step = np.where(moves, step + 1, step)
        started = np.where(moves, t + 1, started)
        step_requests = np.where(moves, 0, step_requests)
        if not ends.running.any():
            break
    return ends


RUNNERS: dict[str, Callable[[Cells, np.random.Generator, int], Ends]] = {
    "today": _today, "flagger": _flagger, "fixed_horizon": _fixed_horizon,
    "sequential": _sequential}


def _median(values: Floats) -> float | None:
    return None if values.size == 0 else round(float(np.median(values)), 1)


def summarise(cells: Cells, ends: Ends) -> list[dict[str, Any]]:
    """Per difference (pooled over delays and rates), and per scenario cell: the share
    promoted, rolled back and inconclusive, and the medians to a decision."""
    rows = []
    for difference in DIFFERENCES:
        for delay in (None, *DELAYS_S):
            for rate in (None, *RATES):
                if (delay is None) != (rate is None):
                    continue
                pick = np.isclose(cells.difference, difference)
                if delay is not None:
                    pick &= (cells.delay_slices == delay // SLICE_S) & (cells.rate == rate)
                rows.append(_row(ends, pick, difference, delay, rate))
    return rows


def _row(ends: Ends, pick: Flags, difference: float, delay: int | None,
         rate: int | None) -> dict[str, Any]:
    outcome = ends.outcome[pick]
    decided = pick & (ends.outcome != OPEN) & (ends.outcome != INCONCLUSIVE_END)
    correct = pick & (ends.outcome == (ROLLED_BACK if difference < -MARGIN else PROMOTED))
    return {
        "difference_points": round(difference * 100, 1), "delay_s": delay, "rate_per_s": rate,
        "rollouts": int(pick.sum()),
        "promoted": round(float(np.mean(outcome == PROMOTED)), 4),
        "rolled_back": round(float(np.mean(outcome == ROLLED_BACK)), 4),
        "inconclusive": round(float(np.mean(outcome == INCONCLUSIVE_END)), 4),
        "undecided_at_horizon": round(float(np.mean(outcome == OPEN)), 4),
        "median_labelled_to_decision": _median(ends.labelled[decided]),
        "median_seconds_to_decision": _median(ends.seconds[decided]),
        "median_labelled_to_correct_decision": _median(ends.labelled[correct]),
    }


def _pooled(rows: list[dict[str, Any]], difference: float) -> dict[str, Any]:
    return next(r for r in rows if r["delay_s"] is None
                and r["difference_points"] == round(difference * 100, 1))


def targets(results: dict[str, list[dict[str, Any]]]) -> list[Target]:
    """The issue's "done when" figures for the new policy (d)."""
    sequential = results["sequential"]
    fixed_total = 2 * fixed_sample_per_arm()
    abort_median = _pooled(sequential, -0.05)["median_labelled_to_correct_decision"]
    return [
        Target("sequential: 2-points-worse promoted", _pooled(sequential, -0.02)["promoted"],
               ALPHA, "at_most", ""),
        Target("sequential: equal rolled back", _pooled(sequential, 0.0)["rolled_back"], ALPHA,
               "at_most", ""),
        Target("sequential: median labelled to abort 5-points-worse / fixed-horizon sample",
               (abort_median or float("inf")) / fixed_total, 0.5, "at_most", "x"),
    ]


def chart(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Promotion and rollback rates per difference, and labelled requests to a decision,
    each policy side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = [f"{d * 100:+.0f}" for d in DIFFERENCES]
    width = 0.2
    for index, policy in enumerate(POLICIES):
        pooled = [_pooled(results[policy], d) for d in DIFFERENCES]
        x = np.arange(len(DIFFERENCES)) + (index - 1.5) * width
        axes[0].bar(x, [r["promoted"] for r in pooled], width, label=policy)
        axes[1].bar(x, [r["rolled_back"] for r in pooled], width, label=policy)
        axes[2].bar(x, [r["median_labelled_to_decision"] or 0 for r in pooled], width,
                    label=policy)
    titles = ("promoted (share of rollouts)", "rolled back (share of rollouts)",
              "median labelled requests to a decision")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xticks(np.arange(len(DIFFERENCES)), labels)
        axis.set_xlabel("challenger accuracy - champion's (points)")
        axis.set_title(title)
    for axis in axes[:2]:
        axis.axhline(ALPHA, color="black", linestyle=":", linewidth=1)
    axes[0].legend()
    rollouts = sum(r["rollouts"] for r in results["today"] if r["delay_s"] is None)
    figure.suptitle(f"Release decisions over {rollouts:,} "
                    "simulated rollouts per policy (champion 90 % accurate, 1-point margin)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(config: AnalysisBenchConfig, out: Path = DOCS) -> dict[str, Any]:
    """Every policy over the scenario grid; writes <name>.json and <name>.png under `out`."""
    started = time.monotonic()
    cells = Cells.grid(config.rollouts_per_cell)
    slices = int((MAX_SECONDS + max(DELAYS_S)) // SLICE_S) + 1
    results, seconds = {}, {}
    for offset, (policy, runner) in enumerate(RUNNERS.items()):
        began = time.monotonic()
        ends = runner(cells, np.random.default_rng(config.seed + offset), slices)
        results[policy] = summarise(cells, ends)
        seconds[policy] = round(time.monotonic() - began, 1)
        print(f"{policy}: {cells.size} rollouts in {seconds[policy]} s", flush=True)
    judged = targets(results)
    document = {
        "benchmark": "analysis", "rollouts_per_policy": cells.size,
        "scenarios": {"differences_points": [d * 100 for d in DIFFERENCES],
                      "label_delays_s": list(DELAYS_S), "rates_per_s": list(RATES)},
        "settings": {"champion_accuracy": CHAMPION, "alpha": ALPHA, "margin": MARGIN,
                     "look_every_s": SLICE_S, "canary_steps": list(CANARY_STEPS),
                     "pause_s": PAUSE_S, "accuracy_floor": FLOOR,
                     "min_requests": MIN_REQUESTS, "min_dwell_s": MIN_DWELL_S,
                     "max_seconds": MAX_SECONDS,
                     "fixed_horizon_per_arm": fixed_sample_per_arm(),
                     "flagger": {"interval_s": FLAGGER_INTERVAL_S, "step": FLAGGER_STEP,
                                 "max_weight": FLAGGER_MAX, "threshold": FLAGGER_THRESHOLD}},
        "policies": results,
        "targets": [{"name": t.name, "measured": round(t.measured, 4), "limit": t.limit,
                     "kind": t.kind, "met": t.met} for t in judged],
        "run": {"seconds": round(time.monotonic() - started, 1), "per_policy_s": seconds,
                "seed": config.seed, "python": platform.python_version(),
                "cpus": os.cpu_count()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{config.name}.json").write_text(json.dumps(document, indent=2) + "\n")
    chart(results, out / f"{config.name}.png")
    for target in judged:
        print(target.line())
    return document
