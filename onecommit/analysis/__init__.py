"""Release decisions: anytime-valid comparisons of a challenger with its champion, and the one
verdict a rollout step ends in.

Pure code over counts (numpy and scipy; nothing of the rest of the project), so the gateway,
the rollout, `invoke watch`, the page and `invoke bench analysis` all judge with the same code:

- `boundaries`: Robbins' normal mixture and the beta-binomial mixture, vectorised.
- `sequential`: the sequential tests (two-sample means, one-sample means, proportions against a
  bound), each an object updated with counts that reports its confidence sequence, its e-value
  and its outcome at every look.
- `latency`, `shadow`, `labelfree`: Mann-Whitney U with the Hodges-Lehmann shift, McNemar's
  exact test, confidence-based performance estimation and input drift.
- `spec`: a spec's `analysis` as data, and today's threshold keys mapped onto it.
- `report`: the typed counts the gateway observes and the per-metric results.
- `verdict`: the one function that turns a report into a step's decision.
"""
