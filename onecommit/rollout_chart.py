"""The rollout timeline as a picture: the challenger's share of traffic over time, each
decision marked on it, each pin change a dotted line. Drawn by `invoke proof` from the
timeline the gateway's rollout page shows (`onecommit.gateway.ui.timeline`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_DECISION_COLOURS = {"continue": "#2ca02c", "abort": "#d62728"}


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


def draw(path: Path, entries: Sequence[dict[str, Any]], title: str) -> None:
    """Write a PNG of `entries` (oldest first, each with `at`, `kind`, `weight`, `text`)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    start = entries[0]["at"]
    seconds = [e["at"] - start for e in entries]
    figure, axis = plt.subplots(figsize=(11, 4.2))
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
    axis.set_xlabel("seconds since the rollout started")
    axis.grid(alpha=0.3)
    axis.scatter([], [], color=_DECISION_COLOURS["continue"], label="decision: continue")
    axis.scatter([], [], color=_DECISION_COLOURS["abort"], label="decision: abort")
    axis.legend(loc="upper left", fontsize="small")
    axis.set_title(title, loc="left", fontsize="medium")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
