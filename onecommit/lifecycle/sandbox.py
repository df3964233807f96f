"""A commit's training in a sandbox: the user's code and every trainer fed the commit's data run
in a separate process that hands back an ONNX model and nothing else.

Locally the sandbox is bubblewrap (`bwrap`, Debian's `bubblewrap`): new PID, IPC, UTS and network
namespaces (no network: only a loopback that is down), a root of its own holding read-only
`/usr`, the platform's Python environment and the `onecommit` package, a read-only copy of the
commit's tree at `/tree`, the training rows at `/job`, a private `/tmp`, and one writable
folder, `/out`, for the answer. Nothing of the state dir (admin token, databases) and nothing of
the repository around the package is mounted. Its environment is empty but for PATH, HOME and
PYTHONPATH. It runs as `nobody` (uid 65534): dropped by `setpriv` inside the sandbox when the
platform runs as root (its user namespace would map the sandbox's user to root), mapped by a user
namespace otherwise. CPU seconds, address space, file size and process count are capped by
`prlimit`, the wall-clock time by the parent.

The parent reads `/out/model.onnx` (no link followed, size capped) or `/out/refusal.txt` (the
one-line reason training refused), checks the model as untrusted bytes (`export.checked`), and
evaluates, registers and publishes it as before. When the sandbox cannot start, training
refuses with one line naming the fix; it never runs unsandboxed.

`python -m onecommit.lifecycle.sandbox JOB TREE OUT` is the side inside the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onecommit.commands import CommandError, last_lines, run
from onecommit.errors import OnecommitError
from onecommit.lifecycle import export, training
from onecommit.lifecycle.data import Split
from onecommit.lifecycle.spec import ModelSpec, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings

NOBODY = 65534
# Where the sandbox sees its inputs and its answer.
JOB, TREE, OUT, PACKAGE_ROOT = Path("/job"), Path("/tree"), Path("/out"), Path("/opt/onecommit")
# The sandbox's own temporary folders: fresh tmpfs mounts no other process sees.
PRIVATE_TMP, PRIVATE_SHM = "/tmp", "/dev/shm"  # noqa: S108
MODEL, REFUSAL, LOG = "model.onnx", "refusal.txt", "log.txt"
# The child's exit code when training refused the commit (the reason is in REFUSAL); the code
# the runner records when it ended the child at the time limit.
REFUSED, TIMED_OUT = 3, 124
# The trainer container's spool: a job folder, its markers, how often both sides look.
_JOB_SUFFIX, _STARTED, _STATUS, _STDERR = ".job", "started", "status", "stderr.txt"
_HEARTBEAT, _HEARTBEAT_STALE_S, _POLL_S, _TRAINER_START_S = ".trainer-alive", 30, 0.5, 120
_REFUSAL_CHARS = 2000
_CPU_GRACE_S = 5
# One thread per library: the limits are per sandbox, and the machine is shared.
_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_FIX = "install bubblewrap (`apt-get install bubblewrap`; `make bootstrap` does it)"


class SandboxUnavailable(training.TrainingError):
    """The sandbox cannot start here; the message names the fix. Training never falls back to
    running unsandboxed."""


@dataclass(frozen=True)
class _Ending:
    """How the sandbox ended: its exit code (bwrap's 128 + N for a child ended by signal N),
    and what it printed before the training took over its output."""

    returncode: int
    stderr: str


def trained(settings: Settings, spec: ModelSpec, split: Split, tree: Path | None) -> bytes:
    """The spec's model trained on the split's training rows in the sandbox (bubblewrap here,
    the trainer container when ONECOMMIT_TRAINING_SPOOL names its spool), as checked ONNX
    bytes; TrainingError with the reason when training refused or broke a limit."""
    if settings.training_spool is not None:
        return _in_trainer(settings, spec, split, tree, settings.training_spool)
    bwrap = shutil.which("bwrap", path=_HOST_PATH)
    if bwrap is None:
        raise SandboxUnavailable(f"training runs in a sandbox and bwrap is missing: {INSTALL_FIX}")
    with tempfile.TemporaryDirectory(prefix="onecommit-train-") as scratch:
        root = Path(scratch)
        _prepare(root, settings, spec, split, tree)
        if os.geteuid() == 0:
            os.chown(root / "out", NOBODY, NOBODY)
        options = _bwrap_options(root / "job", root / "tree" if tree is not None else None,
                                 root / "out")
        argv: list[str | Path] = [*_limits(_job_limits(settings)), bwrap, *options,
                                  *_as_nobody(), sys.executable, "-s", "-m",
                                  "onecommit.lifecycle.sandbox", JOB, TREE, OUT]
        ending = _run(argv, {"PATH": _HOST_PATH}, settings.training_timeout_s)
        return _answer(settings, spec, root / "out", ending)


def _run(argv: list[str | Path], env: dict[str, str], timeout_s: float) -> _Ending:
    try:
        result = run(argv, env=env, replace_env=True, timeout_s=timeout_s, check=False)
    except CommandError as error:
        if error.returncode is None and "timed out" in str(error):
            return _Ending(TIMED_OUT, "")
        raise SandboxUnavailable(f"the training sandbox cannot start ({error}): "
                                 f"{INSTALL_FIX}") from None
    return _Ending(result.returncode, result.stderr[-_REFUSAL_CHARS:])


def _prepare(root: Path, settings: Settings, spec: ModelSpec, split: Split,
             tree: Path | None) -> None:
    """The job (training rows, never the holdout; the spec; the limits) and the tree's copy,
    readable by the sandbox's user, and the folder for its answer."""
    job = root / "job"
    job.mkdir(mode=0o755)
    np.savez(job / "rows.npz", x=split.x_train, y=split.y_train)
    (job / "job.json").write_text(json.dumps({"spec": spec.model_dump(mode="json"),
                                              "feature_names": split.feature_names,
                                              "limits": _job_limits(settings)}))
    for path in job.iterdir():
        path.chmod(0o644)
    if tree is not None:
        _readable_copy(tree, root / "tree")
    (root / "out").mkdir(mode=0o700)


def _job_limits(settings: Settings) -> dict[str, float]:
    return {"cpu_s": settings.training_cpu_s, "memory_mb": settings.training_memory_mb,
            "max_model_mb": settings.training_max_model_mb,
            "timeout_s": settings.training_timeout_s}


def _readable_copy(tree: Path, copy: Path) -> None:
    """A copy of the commit's tree the sandbox's user can read (links copied as links, never
    followed; the sync refuses a tree holding any)."""
    shutil.copytree(tree, copy, symlinks=True)
    for path in [copy, *copy.rglob("*")]:
        if not path.is_symlink():
            extra = 0o555 if path.is_dir() else 0o444
            path.chmod(stat.S_IMODE(path.stat().st_mode) | extra)


def _in_trainer(settings: Settings, spec: ModelSpec, split: Split, tree: Path | None,
                spool: Path) -> bytes:
    """Hand the job to the trainer container through the spool it shares with this one (and
    nothing else): `<id>.job/` appears whole (a rename), the trainer marks it started, trains,
    and writes its exit code to `out/status` last."""
    name = uuid.uuid4().hex
    staging, root = spool / f"{name}.tmp", spool / f"{name}{_JOB_SUFFIX}"
    try:
        staging.mkdir(mode=0o755)
        _prepare(staging, settings, spec, split, tree)
        (staging / "out").chmod(0o777)  # the trainer's user writes its answer there
        staging.rename(root)
        out = root / "out"
        if not _appears(out / _STARTED, _TRAINER_START_S):
            raise SandboxUnavailable(f"no trainer took the training job within "
                                     f"{_TRAINER_START_S} s: start the trainer container "
                                     "(`invoke up --profile compose`)")
        if not _appears(out / _STATUS, settings.training_timeout_s + _TRAINER_START_S):
            return _answer(settings, spec, out, _Ending(TIMED_OUT, ""))
        status = (_read_answer(out / _STATUS, 16) or b"").decode(errors="replace").strip()
        stderr = (_read_answer(out / _STDERR, _REFUSAL_CHARS) or b"").decode(errors="replace")
        code = int(status) if status.lstrip("-").isdigit() else 1
        return _answer(settings, spec, out, _Ending(code, stderr))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def _appears(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def serve(spool: Path) -> None:
    """The trainer container's loop: train each job that appears in the spool, one at a time,
    and beat a heartbeat its health check reads."""
    while True:
        (spool / _HEARTBEAT).touch()
        for root in sorted(spool.glob(f"*{_JOB_SUFFIX}")):
            if not (root / "out" / _STARTED).exists():
                _train_job(root)
        time.sleep(_POLL_S)


def _train_job(root: Path) -> None:
    out = root / "out"
    (out / _STARTED).touch()
    limits = json.loads((root / "job" / "job.json").read_text())["limits"]
    argv: list[str | Path] = [*_limits(limits), sys.executable, "-s", "-m",
                              "onecommit.lifecycle.sandbox",
                              root / "job", root / "tree", out]
    environment = {"PATH": _HOST_PATH, "HOME": PRIVATE_TMP,
                   "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                   "PYTHONDONTWRITEBYTECODE": "1", **dict.fromkeys(_THREADS, "1")}
    ending = _run(argv, environment, float(limits["timeout_s"]))
    (out / _STDERR).write_text(ending.stderr)
    (out / f"{_STATUS}.tmp").write_text(str(ending.returncode))
    (out / f"{_STATUS}.tmp").rename(out / _STATUS)


def alive(spool: Path) -> bool:
    """The trainer's health: its heartbeat is recent."""
    beat = spool / _HEARTBEAT
    return beat.exists() and time.time() - beat.stat().st_mtime < _HEARTBEAT_STALE_S


def _limits(limits: dict[str, float]) -> list[str]:
    # SIGXCPU at the limit; a process that handles it is killed a few seconds later.
    cpu_s = int(limits["cpu_s"])
    return ["prlimit", f"--cpu={cpu_s}:{cpu_s + _CPU_GRACE_S}",
            f"--as={int(limits['memory_mb']) * 2**20}",
            f"--fsize={int(limits['max_model_mb']) * 2**20}", "--nproc=256", "--core=0", "--"]


def _visible_parents(paths: list[Path]) -> list[str]:
    """bwrap creates a mount point's parents with the host's modes (/root: 0700): make each
    one traversable, so the sandbox's user reaches what is mounted and nothing more."""
    parents = sorted({parent for path in paths for parent in path.parents if parent != Path("/")},
                     key=lambda parent: len(parent.parts))
    return [option for parent in parents for option in ("--perms", "0755", "--dir", str(parent))]


def _system_dirs() -> list[str]:
    """/usr read-only, and the merged-/usr links (or the directories) beside it."""
    options = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/lib", "/lib64", "/sbin"):
        if Path(name).is_symlink():
            options += ["--symlink", os.readlink(name), name]
        elif Path(name).is_dir():
            options += ["--ro-bind", name, name]
    return options


def _bwrap_options(job: Path, tree: Path | None, out: Path) -> list[str]:
    python = [Path(sys.prefix), Path(sys.base_prefix)]
    mounts = [*python, PACKAGE_ROOT / "onecommit"]
    options = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session",
               *_system_dirs(), "--proc", "/proc", "--dev", "/dev",
               "--perms", "1777", "--tmpfs", PRIVATE_TMP,
               "--perms", "1777", "--tmpfs", PRIVATE_SHM,
               *_visible_parents(mounts)]
    for prefix in dict.fromkeys(python):
        options += ["--ro-bind", str(prefix), str(prefix)]
    options += ["--ro-bind", str(PROJECT_ROOT / "onecommit"), str(PACKAGE_ROOT / "onecommit"),
                "--ro-bind", str(job), str(JOB), "--bind", str(out), str(OUT)]
    if tree is not None:
        options += ["--ro-bind", str(tree), str(TREE)]
    options += ["--remount-ro", "/", "--chdir", PRIVATE_TMP, "--clearenv",
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", PRIVATE_TMP,
                "--setenv", "PYTHONPATH", str(PACKAGE_ROOT),
                "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    for variable in _THREADS:
        options += ["--setenv", variable, "1"]
    if os.geteuid() != 0:  # the user namespace maps the platform's user to nobody
        options += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    else:  # root keeps what setpriv needs to become nobody, and nothing else
        options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                    "--cap-add", "CAP_SETPCAP"]
    return [*options, "--"]


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _read_answer(path: Path, limit: int, tail: bool = False) -> bytes | None:
    """A file the sandbox wrote, read without following a link and never more than `limit`
    bytes (its last ones with `tail`); None when it is not there as a regular file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            return None
        if tail:
            handle.seek(max(0, status.st_size - limit))
        return handle.read(limit + 1)


def _answer(settings: Settings, spec: ModelSpec, out: Path, ending: _Ending) -> bytes:
    first = ending.stderr.strip().splitlines()[0] if ending.stderr.strip() else ""
    if ending.returncode != 0 and first.startswith(("bwrap:", "setpriv:", "prlimit:")):
        raise SandboxUnavailable(f"the training sandbox cannot start ({first[:300]}): "
                                 f"{INSTALL_FIX}, with user namespaces allowed")
    if ending.returncode == 0:
        limit = settings.training_max_model_mb * 2**20
        model = _read_answer(out / MODEL, limit)
        if model is None or len(model) > limit:
            raise training.TrainingError(
                f"training handed back no ONNX model of at most {settings.training_max_model_mb}"
                " MB (ONECOMMIT_TRAINING_MAX_MODEL_MB)")
        try:
            return export.checked(model, spec.task)
        except export.ExportError as error:
            raise training.TrainingError(f"training: the model cannot be served: {error}"
                                         ) from None
    if ending.returncode == TIMED_OUT:
        raise training.TrainingError(
            f"training: no model within {settings.training_timeout_s:g} s "
            "(ONECOMMIT_TRAINING_TIMEOUT_S): train on fewer rows or cheaper params, or have the "
            "operator raise the limit")
    if ending.returncode == REFUSED:
        reason = _read_answer(out / REFUSAL, _REFUSAL_CHARS) or b"training refused the commit"
        raise training.TrainingError(" ".join(reason.decode(errors="replace").split())
                                     [:_REFUSAL_CHARS])
    log = (_read_answer(out / LOG, _REFUSAL_CHARS, tail=True) or b"").decode(errors="replace")
    raise training.TrainingError(_broken(settings, ending, f"{ending.stderr}\n{log}"))


def _broken(settings: Settings, ending: _Ending, output: str) -> str:
    """Why the sandboxed training ended without an answer, in one line."""
    signalled = ending.returncode - 128 if ending.returncode > 128 else -ending.returncode
    if signalled == signal.SIGXCPU:
        return (f"training: past its CPU limit of {settings.training_cpu_s} s "
                "(ONECOMMIT_TRAINING_CPU_S): train on fewer rows or cheaper params")
    if "MemoryError" in output or "std::bad_alloc" in output:
        return (f"training: past its memory limit of {settings.training_memory_mb} MB "
                "(ONECOMMIT_TRAINING_MEMORY_MB)")
    if signalled > 0:
        return (f"training was killed by signal {signalled}: "
                f"{last_lines(output, 1)[:300]}")
    return f"training ended with exit code {ending.returncode}: {last_lines(output, 1)[:300]}"


def main(argv: list[str]) -> int:
    """`serve SPOOL` (the trainer container), `alive SPOOL` (its health check), or
    `JOB TREE OUT`: inside the sandbox, train on the job's rows (the user's code from the tree),
    write the ONNX model, or the reason training refused, to OUT."""
    if argv[0] == "serve":
        serve(Path(argv[1]))
    if argv[0] == "alive":
        return 0 if alive(Path(argv[1])) else 1
    job, tree, out = (Path(arg) for arg in argv)
    # What the training prints goes to a file the file-size limit caps, not to the parent.
    # Readable by the platform's user, which reads its tail when training breaks (compose).
    log = os.open(out / LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    meta = json.loads((job / "job.json").read_text())
    spec = parse_spec(meta["spec"])
    with np.load(job / "rows.npz", allow_pickle=False) as arrays:
        rows = training.TrainingData.of(spec, arrays["x"], arrays["y"], meta["feature_names"])
    try:
        model = training.exported(spec, rows, tree if tree.is_dir() else None)
    except OnecommitError as error:
        (out / REFUSAL).write_text(str(error)[:_REFUSAL_CHARS])
        return REFUSED
    (out / MODEL).write_bytes(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
