"""`invoke status`'s line per model, from the gateway's `GET /models`."""

from __future__ import annotations

from onecommit.platform.health import describe_serving


def test_a_line_per_model_says_its_versions_strategy_and_whether_it_serves() -> None:
    models = {
        "zeta": {"champion": 3, "challenger": 4, "previous": 2, "strategy": "canary",
                 "serving": True, "revision": 9},
        "alpha": {"champion": 1, "challenger": None, "previous": None, "strategy": "shadow",
                  "serving": False, "revision": 2},
    }
    assert describe_serving({"models": models}) == [
        "model alpha: champion v1, shadow — NOT serving: the champion is not loaded "
        "(revision 2)",
        "model zeta: champion v3, challenger v4, previous v2, canary — serving (revision 9)"]


def test_no_model_and_no_answer_say_so() -> None:
    assert describe_serving({"models": {}}) == ["models: none deployed yet"]
    assert describe_serving({"models": {}, "error": "gateway GET /models did not succeed"}) == [
        "models: not known (gateway GET /models did not succeed)"]
