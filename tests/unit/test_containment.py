"""A commit's paths stay inside the commit: symlinks, `..`, absolute paths outside the data
roots are refused, naming the path and never a file's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecommit.lifecycle import containment
from onecommit.lifecycle.spec import Data, Training, parse_spec
from tests.conftest import DEV_SPEC

SECRET = "s3cret-token-value"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "data").mkdir(parents=True)
    (root / "data" / "rows.csv").write_text("x,target\n1,0\n")
    (root / "code").mkdir()
    (root / "code" / "train.py").write_text("def train(data, params): ...\n")
    secret = tmp_path / "admin_token"
    secret.write_text(SECRET)
    return root


def test_a_plain_tree_has_no_problems(tree: Path) -> None:
    assert containment.tree_problems(tree) == []
    data = Data(source="data/rows.csv")
    assert containment.data_file(data, tree, []) == tree / "data" / "rows.csv"
    entry = Training(entrypoint="code/train.py:train")
    assert containment.entrypoint_file(entry, tree) == tree / "code" / "train.py"


def test_every_symlink_in_the_tree_is_refused(tree: Path) -> None:
    (tree / "data" / "leak.csv").symlink_to(tree.parent / "admin_token")
    (tree / "linked").symlink_to(tree / "data")
    problems = containment.tree_problems(tree)
    assert problems == [
        "data/leak.csv: a symbolic link; the platform follows no links in a commit: commit "
        "the file itself",
        "linked: a symbolic link; the platform follows no links in a commit: commit the file "
        "itself"]
    assert SECRET not in "".join(problems)


@pytest.mark.parametrize("source", ["data/leak.csv", "linked/rows.csv"])
def test_a_data_file_through_a_symlink_is_refused(tree: Path, source: str) -> None:
    (tree / "data" / "leak.csv").symlink_to(tree.parent / "admin_token")
    (tree / "linked").symlink_to(tree / "data")
    with pytest.raises(containment.ContainmentError, match="is a symbolic link") as refused:
        containment.data_file(Data(source=source), tree, [])
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("entrypoint", ["../admin_token.py:train",
                                        "code/../../x.py:train",
                                        "/tmp/evil.py:train"])
def test_an_entry_point_outside_the_tree_is_refused(tree: Path, entrypoint: str) -> None:
    file = entrypoint.split(":")[0]
    with pytest.raises(containment.ContainmentError) as refused:
        containment.entrypoint_file(Training(entrypoint=entrypoint), tree)
    assert str(refused.value) == (
        f"training.entrypoint: {file} leaves the commit: name a file of the gitops repository "
        "by its path from the repository's root")


def test_a_data_path_that_is_a_folder_is_refused(tree: Path) -> None:
    (tree / "data" / "folder.csv").mkdir()
    with pytest.raises(containment.ContainmentError, match="not a regular file"):
        containment.data_file(Data(source="data/folder.csv"), tree, [])


def test_an_absolute_data_path_needs_a_data_root(tree: Path, tmp_path: Path) -> None:
    rows = tree / "data" / "rows.csv"
    with pytest.raises(containment.ContainmentError, match=r"outside the data roots \(none "):
        containment.data_file(Data(source=str(rows)), None, [])
    assert containment.data_file(Data(source=str(rows)), None, [tree / "data"]) == rows
    # A link under a root that points outside it resolves outside: refused.
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "leak.csv").symlink_to(tmp_path / "admin_token")
    with pytest.raises(containment.ContainmentError, match="outside the data roots"):
        containment.data_file(Data(source=str(tmp_path / "roots" / "leak.csv")), None,
                              [tmp_path / "roots"])


def test_built_in_and_object_store_sources_name_no_file(tree: Path) -> None:
    assert containment.data_file(Data(source="builtin:breast_cancer"), tree, []) is None
    assert containment.data_file(Data(source="s3://bucket/rows.csv"), tree, []) is None


def test_spec_problems_name_each_field(tree: Path) -> None:
    import yaml

    spec = yaml.safe_load(DEV_SPEC.read_text())
    spec.update(data={"source": "../rows.csv"}, training={"entrypoint": "/x.py:train"})
    assert containment.spec_problems(parse_spec(spec), tree, []) == [
        "data.source: ../rows.csv leaves the commit: name a file of the gitops repository by "
        "its path from the repository's root",
        "training.entrypoint: /x.py leaves the commit: name a file of the gitops repository by "
        "its path from the repository's root"]
