"""`invoke bench analysis`: today's rule reimplemented faithfully, the fixed horizon sized
right, and a short run end to end (the figures themselves come from the full run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onecommit.bench import analysis
from onecommit.gateway.statistics import two_proportion_test


def test_vectorised_z_test_is_the_gateways() -> None:
    rng = np.random.default_rng(1)
    labelled = rng.integers(1, 400, (2, 500)).astype(float)
    right = rng.binomial(labelled.astype(int), [[0.9], [0.86]]).astype(float)
    ours = analysis.z_test_worse(labelled, right)
    for i in range(labelled.shape[1]):
        test = two_proportion_test(int(right[0, i]), int(labelled[0, i]), int(right[1, i]),
                                   int(labelled[1, i]), alpha=analysis.ALPHA)
        assert ours[i] == (test.significant and test.difference < 0)


def test_fixed_horizon_has_its_power() -> None:
    """At the computed sample per arm, the z-test catches a 2-points-worse challenger in
    about 80 % of simulated tests."""
    n = analysis.fixed_sample_per_arm()
    rng = np.random.default_rng(2)
    right = np.stack([rng.binomial(n, 0.90, 4000), rng.binomial(n, 0.88, 4000)]).astype(float)
    power = analysis.z_test_worse(np.full((2, 4000), float(n)), right).mean()
    assert 0.77 <= power <= 0.83


def test_short_run_writes_every_policys_figures(tmp_path: Path) -> None:
    document = analysis.run(analysis.AnalysisBenchConfig(rollouts_per_cell=3, name="short"),
                            out=tmp_path)
    written = json.loads((tmp_path / "short.json").read_text())
    assert written == document
    assert (tmp_path / "short.png").stat().st_size > 10_000
    assert set(written["policies"]) == set(analysis.POLICIES)
    assert written["rollouts_per_policy"] == 3 * 30
    for rows in written["policies"].values():
        pooled = [r for r in rows if r["delay_s"] is None]
        assert len(pooled) == len(analysis.DIFFERENCES)
        for row in pooled:
            shares = (row["promoted"] + row["rolled_back"] + row["inconclusive"]
                      + row["undecided_at_horizon"])
            assert abs(shares - 1) <= 2e-4  # four shares, each rounded to 4 places
    assert next(t["name"] for t in written["targets"]).startswith("sequential: 2-points-worse")
