"""Release decisions on the real platform: the challenger compared with its champion on the
same live traffic, by the anytime-valid tests of `onecommit.analysis`.

- Under a canary, a commit whose version answers a wrong class for a tenth of its requests
  (`faults.flip_rate`: it passes the offline gate and the smoke test, and serves without an
  error) is rolled back by the accuracy comparison, and its reason names the interval; a good
  commit is promoted once non-inferiority is shown.
- Under shadow, the mirrored requests' answers are judged against the feedback, and the paired
  test promotes the good commit and rolls the worse one back, no user having been served by
  either challenger.

The tests' seed lists no comparison (`conftest.gitops_seed_for_tests`): each test first
commits one, a change of the analysis alone, which deploys nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from onecommit import loop
from onecommit.clients.gateway import Gateway
from onecommit.lifecycle import registry
from onecommit.settings import Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION
from tests.conftest import TEST_ROLLOUT

# Second tier: four deploys judged on hundreds of labelled requests per arm.
pytestmark = [pytest.mark.e2e, pytest.mark.platform, pytest.mark.timeout(1800)]
MODEL = "breast-cancer"
# Comparisons need hundreds of labelled requests per arm: more than the test rollout's
# strategy-implied limits (a few seconds per step) allow.
LIMITS = {"max_seconds": 600}
CANARY_COMPARED = [{"measure": "online_accuracy", "judged": "vs_champion", "margin": 0.03}]
SHADOW = {"kind": "shadow", "pause_s": 3, "min_agreement": 0.5}
SHADOW_COMPARED = [{"measure": "shadow_correctness", "judged": "vs_champion", "margin": 0.03}]


def _analysed(platform: Settings, rollout: dict[str, Any],
              metrics: list[dict[str, Any]] | None, why: str,
              limits: dict[str, Any] = LIMITS) -> None:
    """Commit the model's rollout and comparisons (none: today's keys alone), unless the tip
    has them already; the served artifact is unchanged, so nothing deploys."""
    spec = loop.valid_spec(platform, MODEL)
    analysis = {k: v for k, v in spec["analysis"].items() if k not in ("metrics", "limits")}
    if metrics is not None:
        analysis |= {"metrics": metrics, "limits": limits}
    wanted = {**spec, "rollout": rollout, "analysis": analysis}
    if wanted == spec:
        return  # already so: nothing to commit
    sha = loop.push_specs(platform, {MODEL: wanted}, why)
    record = loop.wait_for_sync(platform, sha)
    # Another test's model may be broken at the tip: that is its own problem, not this one's.
    assert not [p for p in record.get("problems", []) if f"/{MODEL}.yaml" in p], record
    assert MODEL not in record.get("deploys", {}), record


@pytest.fixture(scope="module")
def champion(platform: Settings) -> Iterator[Settings]:
    """A served champion to compare with; the seed's rollout and analysis put back after."""
    if _champion(platform) is None:
        (first,) = loop.demo_commit(platform, "good", [MODEL])
        assert first.outcome == "promoted", first
    yield platform
    _analysed(platform, TEST_ROLLOUT, None, "Release-decision tests: back to the seed's rollout")


def _champion(platform: Settings) -> int | None:
    client = registry.client(platform.url(platform.mlflow_port))
    return registry.alias_version(client, MODEL, CHAMPION)


def _tags(platform: Settings, version: int | None) -> dict[str, str]:
    assert version is not None
    client = registry.client(platform.url(platform.mlflow_port))
    tags: dict[str, str] = client.get_model_version(MODEL, str(version)).tags
    return tags


def _deployed(platform: Settings, kind: loop.CommitKind) -> loop.CommitReport:
    (report,) = loop.demo_commit(platform, kind, [MODEL], say=lambda _: None)
    return report


def _rolled_back_worse(platform: Settings) -> str:
    """A `--worse` commit, rolled back with the champion unchanged; the reason recorded."""
    before = _champion(platform)
    worse = _deployed(platform, "worse")
    assert worse.outcome == "rolled_back", worse
    assert _champion(platform) == before
    return _tags(platform, worse.challenger_version)["reason"]


def test_canary_rolls_back_a_worse_version_and_promotes_a_good_one(champion: Settings) -> None:
    platform = champion
    _analysed(platform, TEST_ROLLOUT, CANARY_COMPARED, "Compare accuracy with the champion")
    reason = _rolled_back_worse(platform)
    assert "challenger accuracy from feedback" in reason, reason
    assert "lower than the champion's, 95 % anytime-valid bounds [" in reason, reason
    assert "margin 3.0 points" in reason, reason
    good = _deployed(platform, "good")
    assert good.outcome == "promoted", good
    assert _champion(platform) == good.challenger_version
    intervals = _tags(platform, good.challenger_version)["rollout.intervals"]
    assert "online_accuracy vs champion" in intervals
    assert '"outcome": "pass"' in intervals


def test_shadow_judges_both_answers_against_the_feedback(champion: Settings) -> None:
    platform = champion
    _analysed(platform, SHADOW, SHADOW_COMPARED, "Shadow: judge both answers by the feedback")
    good = _deployed(platform, "good")
    assert good.outcome == "promoted", good
    decisions = _tags(platform, good.challenger_version)["rollout.decisions"]
    assert "challenger accuracy on mirrored requests" in decisions, decisions
    reason = _rolled_back_worse(platform)
    assert "challenger accuracy on mirrored requests" in reason, reason
    assert "lower than the champion's" in reason, reason


def test_an_inconclusive_rollout_that_holds_leaves_its_challenger_for_a_person(
        champion: Settings) -> None:
    """A gate that cannot be shown within the limits (non-inferiority within a tenth of a
    point, in 20 s) ends inconclusive; its spec says hold: the challenger keeps its step's
    traffic, the champion stays, nothing is rolled back, and the next commit decides."""
    platform = champion
    undecidable = [{"measure": "online_accuracy", "judged": "vs_champion", "margin": 0.001,
                    "inconclusive": "hold"}]
    _analysed(platform, TEST_ROLLOUT, undecidable, "A gate that waits for a person",
              limits={"max_seconds": 20})
    before = _champion(platform)
    held = _deployed(platform, "good")
    assert held.outcome == "held", held
    assert _champion(platform) == before
    tags = _tags(platform, held.challenger_version)
    assert tags["status"] == "held"
    assert tags["reason"].startswith("rollout held at canary 50%: limits reached"), tags
    with Gateway(platform, MODEL) as gateway:
        assert gateway.get_traffic()["challenger_weight"] == 0.5
        assert gateway.rollout_page()["versions"][CHALLENGER] == held.challenger_version
        assert gateway.rollout_page()["verdict"]["state"] == "held"
    _analysed(platform, TEST_ROLLOUT, None, "Back to today's keys")
    decided = _deployed(platform, "good")
    assert decided.outcome == "promoted", decided
    with Gateway(platform, MODEL) as gateway:
        assert gateway.get_traffic()["challenger_weight"] == 0.0
