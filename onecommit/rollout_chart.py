"""The rollout timeline as a picture: the challenger's share of traffic over time, each
decision marked on it, each pin change a dotted line; below it, a panel per metric of its
interval over time (the band from lower to upper bound, the estimate, the threshold), as the
rollout's looks and decisions recorded it. Drawn by `invoke proof` from the timeline and the
intervals the gateway's rollout page shows (`onecommit.gateway.ui.timeline`, `intervals`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_DECISION_COLOURS = {"continue": "#2ca02c", "abort": "#d62728"}
_OUTCOME_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "undecided": "#7f7f7f"}


def _pin_changes(seconds: Sequence[float],
                 entries: Sequence[dict[str, Any]]) -> list[tuple[float, str]]:
    """Pin changes, those within a second of each other as one (a promotion or a rollback
    changes two or three pins at once): one label each, not a pile of them."""
    changes: list[tuple[float, str]] = []
    for at, entry in zip(seconds, entries, strict=True):
        if entry["kind"] != "pins":
            continue
        if changes and at - changes[-1][0] < 1.0:
            changes[-1] = (changes[-1][0], f"{changes[-1][1]}; {entry['text']}")
        else:
            changes.append((at, entry["text"]))
    return changes


def _interval_panel(axis: Any, metric: str, points: Sequence[dict[str, Any]],
                    start: float) -> None:
    """One metric's interval over time: the band where both bounds are known, the estimate,
    the threshold, each look coloured by its outcome."""
    seconds = [p["at"] - start for p in points]
    known = [(s, p) for s, p in zip(seconds, points, strict=True)
             if p.get("lower") is not None and p.get("upper") is not None]
    if known:
        axis.fill_between([s for s, _ in known], [p["lower"] for _, p in known],
                          [p["upper"] for _, p in known], step="post", alpha=0.25,
                          color="#4c78a8", label="interval")
    estimated = [(s, p) for s, p in zip(seconds, points, strict=True)
                 if p.get("estimate") is not None]
    if estimated:
        axis.step([s for s, _ in estimated], [p["estimate"] for _, p in estimated],
                  where="post", color="#4c78a8", label="estimate")
        axis.scatter([s for s, _ in estimated], [p["estimate"] for _, p in estimated], s=14,
                     zorder=3, color=[_OUTCOME_COLOURS.get(str(p.get("outcome")), "#7f7f7f")
                                      for _, p in estimated])
    thresholds = [p["threshold"] for p in points if p.get("threshold") is not None]
    if thresholds:
        axis.axhline(thresholds[-1], color="#d62728", linestyle="--", linewidth=1,
                     label="threshold")
    outcome = points[-1].get("outcome", "undecided")
    axis.set_title(f"{metric}: {outcome}", loc="left", fontsize="small")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper right", fontsize="x-small")


def draw(path: Path, entries: Sequence[dict[str, Any]], title: str,
         intervals: Mapping[str, Sequence[dict[str, Any]]] | None = None) -> None:
    """Write a PNG of `entries` (oldest first, each with `at`, `kind`, `weight`, `text`) and
    of `intervals` (per metric, oldest first, each with `at`, `estimate`, `lower`, `upper`,
    `threshold`, `outcome`), a panel per metric below the timeline."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    panels = {metric: points for metric, points in (intervals or {}).items() if points}
    start = entries[0]["at"]
    seconds = [e["at"] - start for e in entries]
    figure, axes = plt.subplots(1 + len(panels), 1, squeeze=False, sharex=True,
                                figsize=(11, 4.2 + 2.4 * len(panels)),
                                height_ratios=[4.2] + [2.4] * len(panels))
    axis = axes[0][0]
    # The weight holds from one change to the next: a step plot, drawn on to the last entry.
    axis.step(seconds, [100 * e["weight"] for e in entries], where="post", color="#f58518",
              label="challenger's share of traffic")
    for at, entry in zip(seconds, entries, strict=True):
        if entry["kind"] == "decision":
            axis.scatter([at], [100 * entry["weight"]], zorder=3, s=60,
                         color=_DECISION_COLOURS.get(entry["decision"], "#7f7f7f"))
            axis.annotate(entry["text"], (at, 100 * entry["weight"]), fontsize="x-small",
                          xytext=(4, 6), textcoords="offset points", rotation=12)
    for at, text in _pin_changes(seconds, entries):
        axis.axvline(at, color="#7f7f7f", linestyle=":", linewidth=1)
        axis.annotate(text, (at, 2), fontsize="x-small", rotation=90, xytext=(3, 0),
                      textcoords="offset points", color="#555555")
    axis.set_ylim(-2, 115)
    axis.set_ylabel("challenger traffic (%)")
    axis.grid(alpha=0.3)
    axis.scatter([], [], color=_DECISION_COLOURS["continue"], label="decision: continue")
    axis.scatter([], [], color=_DECISION_COLOURS["abort"], label="decision: abort")
    axis.legend(loc="upper left", fontsize="small")
    axis.set_title(title, loc="left", fontsize="medium")
    for row, (metric, points) in enumerate(sorted(panels.items()), start=1):
        _interval_panel(axes[row][0], metric, points, start)
    axes[-1][0].set_xlabel("seconds since the rollout started")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
