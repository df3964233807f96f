"""Progress reports: plain lines off a terminal, a spinner and finished steps on one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from onecommit.progress import Progress


def test_off_a_terminal_every_report_is_one_plain_line(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    with Progress(Console(file=io.StringIO(), force_terminal=False)) as report:
        report("environment gateway: building from requirements/gateway.txt…")
        report("gateway: healthy at http://127.0.0.1:9000")
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in printed] == [
        "environment gateway: building from requirements/gateway.txt…",
        "gateway: healthy at http://127.0.0.1:9000"]


def test_on_a_terminal_only_finished_steps_stay_printed() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=100)
    with Progress(console) as report:
        report("mlflow: starting: mlflow…")
        report("mlflow: healthy at http://127.0.0.1:5000")
    console.print("after")
    shown = screen.getvalue()
    assert "✓ mlflow: healthy at http://127.0.0.1:5000" in shown
    # The spinner line is drawn, then erased: what stays is the finished step.
    assert shown.count("healthy at") == 1
