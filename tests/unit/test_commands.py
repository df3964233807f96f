"""The one command runner and the one atomic writer: how a failure reads, and that a failed
write leaves the file as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onecommit.commands import CommandError, run
from onecommit.files import EXECUTABLE_FILE, replacing, write_file


def test_a_failure_names_the_command_and_the_tail_of_its_output() -> None:
    script = "import sys; print('\\n'.join(f'line {i}' for i in range(9)), file=sys.stderr); " \
             "sys.exit(3)"
    with pytest.raises(CommandError) as caught:
        run([sys.executable, "-c", script])
    message = str(caught.value)
    assert message.startswith(f"`{sys.executable} -c ")
    assert "failed (exit 3): line 5 | line 6 | line 7 | line 8" in message
    assert "line 4" not in message
    assert "\n" not in message
    assert caught.value.returncode == 3


def test_without_check_the_caller_reads_the_exit_code() -> None:
    result = run([sys.executable, "-c", "import sys; print('out'); sys.exit(1)"], check=False)
    assert (result.returncode, result.stdout) == (1, "out\n")


def test_env_adds_to_the_environment_unless_it_replaces_it() -> None:
    show = [sys.executable, "-c", "import os; print(os.environ.get('ONE'), 'PATH' in os.environ)"]
    assert run(show, env={"ONE": "1"}).stdout == "1 True\n"
    assert run(show, env={"ONE": "1"}, replace_env=True).stdout == "1 False\n"


def test_a_missing_program_and_a_timeout_are_command_errors() -> None:
    with pytest.raises(CommandError, match="could not start: no-such-program-here is not"):
        run(["no-such-program-here"])
    with pytest.raises(CommandError, match=r"did not finish within 0\.2 s"):
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)


def test_bytes_in_and_out() -> None:
    result = run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer"
                  ".read()[::-1])"], input=b"\x00\x01\xff", text=False)
    assert result.stdout == b"\xff\x01\x00"


def test_a_failed_replacement_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "tool"
    write_file(target, "old")

    def broken_copy() -> None:
        with replacing(target, EXECUTABLE_FILE) as out:
            out.write(b"half")
            raise RuntimeError("the copy broke")

    with pytest.raises(RuntimeError):
        broken_copy()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["tool"]
    with replacing(target, EXECUTABLE_FILE) as out:
        out.write(b"new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == EXECUTABLE_FILE
