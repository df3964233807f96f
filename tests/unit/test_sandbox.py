"""The training sandbox (real bubblewrap): the churn example's own code trains in it and hands
back a model that passes its gate; code that spins past the CPU limit, or answers with a link to
a host file instead of a model, is refused in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onecommit.lifecycle import data, sandbox, training
from onecommit.lifecycle.spec import ModelSpec, load_spec
from onecommit.settings import PROJECT_ROOT, Settings

CHURN = PROJECT_ROOT / "examples" / "churn-own-code"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(CHURN, tmp_path / "tree")
    return tmp_path / "tree"


def _spec(tree: Path) -> ModelSpec:
    return load_spec(tree / "envs" / "dev" / "models" / "churn.yaml")


def _with_code(tree: Path, code: str) -> None:
    (tree / "training" / "churn.py").write_text(code)


def test_the_examples_own_code_trains_in_the_sandbox(tree: Path) -> None:
    spec = _spec(tree)
    split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
    onnx_bytes = sandbox.trained(Settings(), spec, split, tree)
    assert training.gate(spec, training.evaluate(onnx_bytes, split, spec.task), None) == []


def test_training_past_its_cpu_limit_is_refused(tree: Path) -> None:
    _with_code(tree, "def train(data, params):\n    while True:\n        pass\n")
    spec = _spec(tree)
    split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
    with pytest.raises(training.TrainingError) as refused:
        sandbox.trained(Settings(training_cpu_s=2), spec, split, tree)
    assert str(refused.value) == ("training: past its CPU limit of 2 s "
                                  "(ONECOMMIT_TRAINING_CPU_S): train on fewer rows or cheaper "
                                  "params")


def test_an_answer_that_links_to_a_host_file_is_refused(tree: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "host-secret"
    host_file.write_text("not for the sandbox")
    _with_code(tree, "import os\n\ndef train(data, params):\n"
                     f"    os.symlink({str(host_file)!r}, '/out/model.onnx')\n"
                     "    os._exit(0)\n")
    spec = _spec(tree)
    split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
    with pytest.raises(training.TrainingError) as refused:
        sandbox.trained(Settings(), spec, split, tree)
    assert str(refused.value) == ("training handed back no ONNX model of at most 256 MB "
                                  "(ONECOMMIT_TRAINING_MAX_MODEL_MB)")


def test_the_trainer_container_protocol_hands_back_the_model(tree: Path, tmp_path: Path) -> None:
    """The compose profile's runner: the job goes through the spool to the trainer's loop (here
    a process of its own, as in its container) and the model comes back the same way."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o1777)
    # Owned here and stopped below: the trainer's loop runs until it is stopped.
    trainer = subprocess.Popen([sys.executable, "-m", "onecommit.lifecycle.sandbox", "serve",
                                str(spool)], env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        spec = _spec(tree)
        split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
        onnx_bytes = sandbox.trained(Settings(training_spool=spool), spec, split, tree)
        assert training.gate(spec, training.evaluate(onnx_bytes, split, spec.task), None) == []
        assert sandbox.alive(spool)
        assert sorted(p.name for p in spool.iterdir()) == [".trainer-alive"]
    finally:
        trainer.terminate()
        trainer.wait(timeout=30)
